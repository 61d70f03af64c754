"""Fault tolerance: SIGKILL at any moment + exact resume, the non-finite guard, bad input.

Kill tests run tools/train.py in subprocesses (always bounded by a timeout and killed in a
`finally`); tests/harness.py (tools/train.py plus --kill_at, a `Hooks` of the trainer) makes
the process SIGKILL itself at a chosen point of a checkpoint save, including inside
TensorFlow's writer. NaN steps come from harness.NanAt, passed to `train(hooks=...)`.
"""

import glob
import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

import gin
import numpy as np
import pytest
import tensorflow as tf

from asvae_tf import cli
from conftest import ROOT, TINY_MODEL, idle_checkpoint_keys
from harness import NanAt, checkpoint_state, train_gin

MNIST_GIN = os.path.join(ROOT, "gin", "mnist.gin")
TRAIN_PY = os.path.join(ROOT, "tools", "train.py")
HARNESS_PY = os.path.join(ROOT, "tests", "harness.py")

# A tiny VAE (fast to trace) checkpointing every step: kills land in or between saves.
PROGRESS = re.compile(r"step \d+/\d+ \|")
KILL_RUN = TINY_MODEL + [
  "model.objective = 'vae'",
  "posterior.kind = 'gaussian'",
  "posterior.num_flows = 0",
  "train.strategy = 'default'",
  "train.num_steps = 60",
  "train.checkpoint_every = 1",
  "train.summary_every = 1",
  "train.validate_every = 0",
  "train.image_every = 0",
  "train.keep_checkpoints = 2",
  "generator/optimizer.learning_rate = 1e-2",
]
# A tiny AS-VAE (both optimizers) for the guard.
GUARD_RUN = TINY_MODEL + [
  "model.objective = 'asvae'",
  "posterior.kind = 'gaussian'",
  "posterior.num_flows = 0",
  "train.validate_every = 0",
  "train.image_every = 0",
  "train.summary_every = 1",
  "train.keep_checkpoints = 20",
  "generator/optimizer.learning_rate = 1e-2",
  "discriminator/optimizer.learning_rate = 1e-2",
]


def _train(model_dir, bindings, hooks=None):
  return train_gin(MNIST_GIN, model_dir, bindings, hooks)


_state = checkpoint_state  # every variable of a checkpoint (a prefix or a checkpoints dir)


def _assert_identical(a, b, skip=()):
  assert a.keys() == b.keys()
  for k in a:
    if not any(s in k for s in skip):
      assert np.array_equal(a[k], b[k]), k


def _env(extra=None):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
  env.update(extra or {})
  return env


def _args(model_dir, bindings, kill_at=None):
  tool = [HARNESS_PY, f"--kill_at={kill_at}"] if kill_at else [TRAIN_PY]
  return [sys.executable, *tool, f"--gin_file={MNIST_GIN}", f"--model_dir={model_dir}"] + [
    f"--gin_param={b}" for b in bindings
  ]


def _run(model_dir, bindings, kill_at=None, kill_after_first_step=None, timeout=120):
  """Runs the CLI; kill_at sets the test hook; kill_after_first_step=s SIGKILLs the
  process s seconds after its first progress line. Returns (returncode, stderr)."""
  env = _env()
  proc = subprocess.Popen(
    _args(model_dir, bindings, kill_at),
    cwd=ROOT,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
    start_new_session=True,
  )
  lines, stepped = [], threading.Event()

  def read():
    for line in proc.stderr:
      lines.append(line)
      if "actions.py" in line and PROGRESS.search(line):  # a training progress line
        stepped.set()

  reader = threading.Thread(target=read, daemon=True)
  reader.start()
  try:
    if kill_after_first_step is not None:
      deadline = time.monotonic() + timeout
      while not stepped.wait(0.05) and proc.poll() is None and time.monotonic() < deadline:
        pass  # a run with nothing left to train ends without a progress line
      if stepped.is_set():
        time.sleep(kill_after_first_step)
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout)
  finally:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGKILL)
      proc.wait()
    reader.join(10)
  return proc.returncode, "".join(lines)


def _resumed_from(stderr):
  for line in stderr.splitlines():
    if "resumed from" in line:
      return line.split("resumed from ")[1].split(" at step")[0]
  return None


def _latest_step(model_dir):
  latest = tf.train.latest_checkpoint(os.path.join(str(model_dir), "checkpoints"))
  return None if latest is None else int(latest.rsplit("-", 1)[1])


@pytest.mark.slow(57)
def test_sigkill_at_every_save_point_and_at_random_resumes_bit_identically(tmp_path):
  straight = tmp_path / "straight"
  _train(straight, KILL_RUN)
  ckdir = tmp_path / "killed" / "checkpoints"
  killed = tmp_path / "killed"

  # 1. Inside TF's checkpoint writer: shards of ckpt-3 written, not merged.
  rc, err = _run(killed, KILL_RUN, kill_at="mid_write:3")
  assert rc == -signal.SIGKILL, err[-3000:]
  assert os.path.isdir(str(ckdir / "ckpt-3_temp")), os.listdir(ckdir)
  assert glob.glob(str(ckdir / "ckpt-3_temp" / "*.data-*")), "kill did not land mid-write"
  assert not os.path.exists(str(ckdir / "ckpt-3.index"))
  assert _latest_step(killed) == 2

  # 2. ckpt-5 complete on disk but not yet recorded in the `checkpoint` state file.
  rc, err = _run(killed, KILL_RUN, kill_at="after_write:5")
  assert rc == -signal.SIGKILL, err[-3000:]
  assert _resumed_from(err).endswith("ckpt-2")
  assert os.path.exists(str(ckdir / "ckpt-5.index"))
  assert _latest_step(killed) == 4  # the partly recorded checkpoint is not picked up

  # 3. Trained to step 7, nothing of ckpt-7 written; 4. ckpt-9 fully saved.
  rc, err = _run(killed, KILL_RUN, kill_at="before_save:7")
  assert rc == -signal.SIGKILL and _resumed_from(err).endswith("ckpt-4"), err[-3000:]
  assert _latest_step(killed) == 6 and not glob.glob(str(ckdir / "ckpt-7*"))
  rc, err = _run(killed, KILL_RUN, kill_at="after_save:9")
  assert rc == -signal.SIGKILL and _resumed_from(err).endswith("ckpt-6"), err[-3000:]
  assert _latest_step(killed) == 9

  # 5. A kill at a random moment of training (a step, a save, a summary), after the first
  # progress line (each run draws another moment); the seed is in the failure message.
  seed = random.SystemRandom().randrange(2**31)
  delay = random.Random(seed).uniform(0.0, 0.5)
  before = _latest_step(killed)
  rc, err = _run(killed, KILL_RUN, kill_after_first_step=delay)
  # 50 steps, each with a checkpoint, are left: they outlast the delay.
  assert rc == -signal.SIGKILL, (seed, delay, err[-3000:])
  assert _resumed_from(err).endswith(f"ckpt-{before}"), (seed, delay, err[-3000:])
  # Whatever the moment, the recorded latest checkpoint is complete and readable.
  state = _state(str(ckdir))
  assert int(state["step/.ATTRIBUTES/VARIABLE_VALUE"]) == _latest_step(killed)

  rc, err = _run(killed, KILL_RUN)
  assert rc == 0, err[-3000:]
  assert _latest_step(killed) == 60
  a, b = _state(str(straight / "checkpoints")), _state(str(ckdir))
  _assert_identical(a, b)  # every variable, incl. optimizer moments, step and save counter
  assert int(a["step/.ATTRIBUTES/VARIABLE_VALUE"]) == 60


def _params(state):
  return {
    k: v
    for k, v in state.items()
    if "/_trainable_variables/" in k or ("optimizer/_variables/" in k) or "_iterations" in k
  }


@pytest.mark.slow(25)
def test_nan_step_changes_no_weight_moment_or_iteration(tmp_path):
  # Mirrored strategy over the 2 test devices: the verdict is all-reduced. Step 2 is NaN.
  result = _train(
    tmp_path,
    GUARD_RUN
    + [
      "train.strategy = 'mirrored'",
      "train.checkpoint_every = 1",
      "train.max_bad_steps = 3",
    ],
    hooks=NanAt((2,)),
  )
  assert result["guard"] == {"skipped_steps": 1, "rollbacks": 0}
  assert all(np.isfinite(v) for v in result["train"].values())
  ck = tmp_path / "checkpoints"
  s0, s1, s2 = (_state(str(ck / f"ckpt-{i}")) for i in range(3))
  p0, p1, p2 = _params(s0), _params(s1), _params(s2)
  assert len(p1) > 20 and any("discriminator_optimizer" in k for k in p1)
  _assert_identical(p1, p2)  # weights, Adam moments and both optimizers' iterations
  idle = idle_checkpoint_keys([MNIST_GIN], GUARD_RUN)  # never trained by construction
  assert len(idle) == 3
  assert all(
    not np.array_equal(p0[k], p1[k]) for k in p1 if "_trainable_variables/" in k and k not in idle
  )
  assert all(
    np.all(np.isfinite(v)) for k, v in s2.items() if v.dtype.kind == "f" and "best_metric" not in k
  )
  assert int(s2["step/.ATTRIBUTES/VARIABLE_VALUE"]) == 2  # the data position moved on
  tags = {}
  for path in glob.glob(str(tmp_path / "summaries" / "train" / "events.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for v in event.summary.value:
        if v.tag.startswith("guard/"):
          tags[(v.tag, event.step)] = float(tf.make_ndarray(v.tensor))
  assert tags[("guard/skipped_steps", 2)] == 1 and tags[("guard/skipped_steps", 1)] == 0
  assert tags[("guard/skipped_steps_total", 2)] == 1


@pytest.mark.slow(20)
def test_bad_streak_rolls_back_and_lowers_the_learning_rate(tmp_path):
  # Steps 3 and 4 are NaN (first pass only): rollback to ckpt-2 with lr x 0.5, then clean.
  result = _train(
    tmp_path,
    GUARD_RUN
    + [
      "train.strategy = 'default'",
      "train.num_steps = 6",
      "train.checkpoint_every = 2",
      "train.max_bad_steps = 2",
      "train.rollback_lr_factor = 0.5",
    ],
    hooks=NanAt((3, 4), passes=1),
  )
  assert result["step"] == 6
  assert result["guard"] == {"skipped_steps": 2, "rollbacks": 1}
  ck = tmp_path / "checkpoints"
  s2, s6 = _state(str(ck / "ckpt-2")), _state(str(ck / "ckpt-6"))
  for opt in ("generator_optimizer", "discriminator_optimizer"):
    key = f"{opt}/_learning_rate/.ATTRIBUTES/VARIABLE_VALUE"
    assert s2[key] == np.float32(1e-2) and s6[key] == np.float32(5e-3), (s2[key], s6[key])
  assert int(s6["rollbacks/.ATTRIBUTES/VARIABLE_VALUE"]) == 1
  # After the rollback the 4 remaining updates of each optimizer all happened.
  assert int(s6["generator_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"]) == 6
  assert int(s6["discriminator_optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"]) == 6

  # A resumed run takes its learning rates from gin (x 0.5 per rollback done), not from
  # the checkpoint: lowering them and rerunning (the diverged message's advice) works.
  _train(
    tmp_path,
    GUARD_RUN
    + [
      "train.strategy = 'default'",
      "train.num_steps = 8",
      "train.checkpoint_every = 2",
      "train.rollback_lr_factor = 0.5",
      "generator/optimizer.learning_rate = 4e-3",
      "discriminator/optimizer.learning_rate = 6e-3",
    ],
  )
  s8 = _state(str(ck / "ckpt-8"))
  assert s8["generator_optimizer/_learning_rate/.ATTRIBUTES/VARIABLE_VALUE"] == np.float32(2e-3)
  assert s8["discriminator_optimizer/_learning_rate/.ATTRIBUTES/VARIABLE_VALUE"] == np.float32(3e-3)


def test_persistent_nan_exhausts_rollbacks_and_exits_2(tmp_path, capsys):
  gin.clear_config()
  try:
    code = cli.run_training(
      [MNIST_GIN],
      GUARD_RUN
      + [
        "train.strategy = 'default'",
        "train.num_steps = 8",
        "train.checkpoint_every = 2",
        "train.max_bad_steps = 2",
        "train.max_rollbacks = 2",
      ],
      str(tmp_path),
      hooks=NanAt((3, 4, 5, 6, 7, 8)),
    )
  finally:
    gin.clear_config()
  err = capsys.readouterr().err
  assert code == 2
  lines = [line for line in err.splitlines() if line.strip()]
  assert len(lines) == 1 and lines[0].startswith("asvae_tf: error: training diverged"), err
  assert "max_rollbacks=2" in lines[0] and "Traceback" not in err
  # Nothing non-finite was saved; the last checkpoint is the good ckpt-2.
  assert _latest_step(tmp_path) == 2
  for path in glob.glob(str(tmp_path / "checkpoints" / "ckpt-*.index")):
    state = _state(path[: -len(".index")])
    assert all(
      np.all(np.isfinite(v))
      for k, v in state.items()
      if v.dtype.kind == "f" and "best_metric" not in k
    )  # (inf = none yet)
    assert int(state["rollbacks/.ATTRIBUTES/VARIABLE_VALUE"]) == 0


# ---- bad input: exit 2, one line, model_dir untouched --------------------------------

BAD_BASE = TINY_MODEL + [
  "model.objective = 'vae'",
  "posterior.kind = 'gaussian'",
  "posterior.num_flows = 0",
  "train.strategy = 'default'",
  "train.validate_every = 0",
  "train.image_every = 0",
]


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("trained")
  _train(path, BAD_BASE)
  return path


def _tree_hashes(root):
  out = {}
  for dirpath, _, files in os.walk(root):
    for name in files:
      path = os.path.join(dirpath, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
  return out


def _bad_local_dirs(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  corrupt = tmp_path / "corrupt"
  corrupt.mkdir()
  (corrupt / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b not gzip at all")
  return str(empty), str(corrupt)


BAD_CASES = [
  ("missing_gin", [], "does/not/exist.gin", "gin file not found"),
  ("unknown_binding", ["train.no_such_parameter = 1"], MNIST_GIN, "no_such_parameter"),
  ("unknown_dataset", ["dataset.name = 'no_such_data'"], MNIST_GIN, "no_such_data"),
  (
    "empty_local_dir",
    ["dataset.name = 'mnist'", "dataset.local_dir = '{empty}'"],
    MNIST_GIN,
    "holds none of the files",
  ),
  (
    "corrupt_local_dir",
    ["dataset.name = 'mnist'", "dataset.local_dir = '{corrupt}'"],
    MNIST_GIN,
    "unreadable",
  ),
  (
    "missing_local_dir",
    ["dataset.name = 'mnist'", "dataset.local_dir = '{empty}/nope'"],
    MNIST_GIN,
    "does not exist",
  ),
  ("num_steps_zero", ["train.num_steps = 0"], MNIST_GIN, "num_steps"),
  ("num_steps_negative", ["train.num_steps = -3"], MNIST_GIN, "num_steps"),
  (
    "wrong_image_shape",
    ["dataset.synthetic_image_shape = (32, 32, 3)"],
    MNIST_GIN,
    "does not match the configured model",
  ),
  (
    "other_architecture",
    ["mlp_encoder.hidden_units = (24,)"],
    MNIST_GIN,
    "does not match the configured model",
  ),
  (
    "other_objective",
    ["model.objective = 'asvae'"],
    MNIST_GIN,
    "does not match the configured model",
  ),
  (
    "other_posterior",
    ["posterior.kind = 'planar'", "posterior.num_flows = 2"],
    MNIST_GIN,
    "does not match the configured model",
  ),
  (
    "conv_model_on_28x28_data",
    ["dataset.synthetic_image_shape = (28, 28, 1)"],
    os.path.join(ROOT, "gin", "cifar10.gin"),
    "does not fit images of shape (28, 28, 1)",
  ),
]


def _bad_setup(tmp_path, trained_dir, params):
  empty, corrupt = _bad_local_dirs(tmp_path)
  model_dir = tmp_path / "model"
  subprocess.run(["cp", "-a", str(trained_dir), str(model_dir)], check=True)
  before = _tree_hashes(model_dir)
  assert any(k.startswith("checkpoints/ckpt-2") for k in before)
  params = [p.format(empty=empty, corrupt=corrupt) for p in params]
  return model_dir, before, BAD_BASE + ["train.num_steps = 4"] + params


def _one_error_line(stderr, needle):
  assert "Traceback" not in stderr, stderr[-3000:]
  lines = [
    line
    for line in stderr.splitlines()
    if line.strip() and not line.startswith(("W0", "I0", "E0", "WARNING:", "INFO:"))
  ]
  errors = [line for line in lines if "error" in line.lower()]
  assert len(errors) == 1 and errors[0].startswith("asvae_tf: error:"), stderr[-3000:]
  assert needle in errors[0], errors[0]


@pytest.mark.parametrize("case,params,gin_file,needle", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_exits_2_with_one_line_and_leaves_model_dir_intact(
  tmp_path, trained_dir, capsys, case, params, gin_file, needle
):
  # cli.run_training is what tools/train.py returns as its exit code.
  model_dir, before, bindings = _bad_setup(tmp_path, trained_dir, params)
  capsys.readouterr()
  gin.clear_config()
  try:
    code = cli.run_training([gin_file], bindings, str(model_dir))  # raises = traceback
  finally:
    gin.clear_config()
  assert code == 2, case
  _one_error_line(capsys.readouterr().err, needle)
  assert _tree_hashes(model_dir) == before  # same files, same bytes


@pytest.mark.parametrize("case", ["unknown_dataset", "wrong_image_shape"])
def test_bad_input_through_tools_train_py(tmp_path, trained_dir, case):
  _, params, gin_file, needle = next(c for c in BAD_CASES if c[0] == case)
  model_dir, before, bindings = _bad_setup(tmp_path, trained_dir, params)
  r = subprocess.run(
    [sys.executable, TRAIN_PY, f"--gin_file={gin_file}", f"--model_dir={model_dir}"]
    + [f"--gin_param={b}" for b in bindings],
    cwd=ROOT,
    env=_env(),
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert r.returncode == 2, (case, r.stderr[-3000:])
  _one_error_line(r.stderr, needle)
  assert _tree_hashes(model_dir) == before
