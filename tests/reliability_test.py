"""Reliability (issue 16): preemption, one writer per model_dir, damaged checkpoints, full disk.

Subprocess tests run tools/train.py (bounded by timeouts, killed in `finally`); the others
train tiny models in-process. "Bit-identical" compares every variable of the final
checkpoints except `save_counter` (how many saves happened, not training state).
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import gin
import numpy as np
import pytest
import tensorflow as tf

from asvae_tf import checkpoints
from asvae_tf import cli
from asvae_tf import config
from asvae_tf import errors
from asvae_tf import evaluation
from asvae_tf.train import preemption
from conftest import ROOT, TINY_MODEL
from harness import EnospcAt, checkpoint_state, train_gin

MNIST_GIN = os.path.join(ROOT, "gin", "mnist.gin")
TRAIN_PY = os.path.join(ROOT, "tools", "train.py")
TINY = TINY_MODEL + [
  "model.objective = 'vae'",
  "posterior.kind = 'gaussian'",
  "posterior.num_flows = 0",
  "train.strategy = 'default'",
  "train.summary_every = 0",
  "train.validate_every = 0",
  "train.image_every = 0",
  "generator/optimizer.learning_rate = 1e-2",
]
# One chunk of 10^6 steps: only the in-loop check can stop it early.
LONG = TINY + ["train.num_steps = 1000000", "train.checkpoint_every = 0"]
PREEMPTION_GRACE_S = 30  # from the signal to the process exit (a step + a checkpoint)


def _train(model_dir, bindings, hooks=None):
  return train_gin(MNIST_GIN, model_dir, bindings, hooks)


def _state(path):
  return checkpoint_state(path, skip=("save_counter",))


def _assert_identical(a, b):
  assert a.keys() == b.keys() and len(a) > 10
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


class _Proc:
  """tools/train.py in a subprocess; `wait_for(text)` blocks until stderr shows it."""

  def __init__(self, model_dir, bindings):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
    args = [sys.executable, TRAIN_PY, f"--gin_file={MNIST_GIN}", f"--model_dir={model_dir}"]
    self.proc = subprocess.Popen(
      args + [f"--gin_param={b}" for b in bindings], cwd=ROOT, env=env,
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    self.lines = []
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for line in self.proc.stderr:
      self.lines.append(line)

  def wait_for(self, text, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      if any(text in line for line in self.lines):
        return True
      if self.proc.poll() is not None:
        time.sleep(0.2)
        return any(text in line for line in self.lines)
      time.sleep(0.05)
    return False

  def finish(self, timeout=120):
    try:
      self.proc.wait(timeout)
    finally:
      self.kill()
    self._reader.join(10)
    return self.proc.returncode, "".join(self.lines)

  def kill(self):
    if self.proc.poll() is None:
      os.killpg(self.proc.pid, signal.SIGKILL)
      self.proc.wait()


def _error_lines(stderr, prefix="asvae_tf:"):
  return [line for line in stderr.splitlines() if line.startswith(prefix)]


def test_sigterm_saves_exits_75_within_the_grace_and_the_rerun_is_exact(tmp_path):
  run = tmp_path / "run"
  a = _Proc(run, LONG)
  try:
    # ckpt-0, then the data pipeline; the line comes right before the first chunk of steps
    # (a signal before it would preempt at step 0: correct, but not what this tests).
    assert a.wait_for("training from step 0"), "".join(a.lines)[-3000:]
    time.sleep(0.5)
    sent = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)  # the step in flight completes, a checkpoint, exit 75
    rc, err = a.finish(timeout=PREEMPTION_GRACE_S)
    assert time.monotonic() - sent < PREEMPTION_GRACE_S
  finally:
    a.kill()
  assert rc == errors.EXIT_PREEMPTED, err[-3000:]
  lines = _error_lines(err)
  assert len(lines) == 1 and lines[0].startswith("asvae_tf: preempted by SIGTERM at step "), err
  step = int(lines[0].split(" at step ")[1].split(":")[0])
  assert 1 <= step < 1000000  # stopped inside the one 10^6-step chunk
  assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith(f"ckpt-{step}")
  # The rerun resumes there and ends bit-identical to an uninterrupted run.
  end = ["train.num_steps = %d" % (step + 3), "train.checkpoint_every = 0"]
  assert _train(run, TINY + end)["step"] == step + 3
  _train(tmp_path / "straight", TINY + end)
  straight = _state(str(tmp_path / "straight" / "checkpoints"))
  _assert_identical(_state(str(run / "checkpoints")), straight)


@pytest.mark.slow(26)
def test_a_second_writer_is_refused_and_a_killed_holder_does_not_block_the_rerun(tmp_path):
  run = tmp_path / "run"
  a = _Proc(run, LONG)
  try:
    assert a.wait_for("saved checkpoint"), "".join(a.lines)[-3000:]
    rc, err = _Proc(run, LONG).finish()  # a second writer on the live model_dir
    assert rc == 2, err[-3000:]
    lines = _error_lines(err)
    assert len(lines) == 1, err[-3000:]
    assert f"pid {a.proc.pid} on host {socket.gethostname()}" in lines[0]
    assert "Traceback" not in err
  finally:
    a.kill()  # SIGKILL: the OS releases the lock with the process
  assert os.path.isfile(run / "LOCK_HOLDER")  # stale, and harmless
  result = _train(run, TINY + ["train.num_steps = 2", "train.checkpoint_every = 0"])
  assert result["step"] == 2


def test_sigint_sets_the_flag_and_the_handlers_are_restored():
  flag = tf.Variable(False)
  before = signal.getsignal(signal.SIGINT)
  with preemption.PreemptionWatcher(flag) as watcher:
    os.kill(os.getpid(), signal.SIGINT)
    deadline = time.monotonic() + 5
    while not bool(flag.numpy()) and time.monotonic() < deadline:
      time.sleep(0.01)
    assert bool(flag.numpy()) and watcher.received == "SIGINT"
  assert signal.getsignal(signal.SIGINT) is before


def _damage(prefix, how):
  data = glob.glob(prefix + ".data-*")[0]
  if how == "truncate":
    with open(data, "rb") as f:
      raw = f.read()
    with open(data, "wb") as f:
      f.write(raw[: len(raw) // 2])
  elif how == "flip":  # one byte in every 97: every tensor's CRC fails
    with open(data, "r+b") as f:
      raw = bytearray(f.read())
      for i in range(0, len(raw), 97):
        raw[i] ^= 0xFF
      f.seek(0)
      f.write(bytes(raw))
  else:  # a missing index
    os.remove(prefix + ".index")


@pytest.fixture(scope="module")
def four_checkpoints(tmp_path_factory):
  """A tiny run with ckpt-2, ckpt-3, ckpt-4 (copied per test before damaging it)."""
  model_dir = tmp_path_factory.mktemp("four")
  _train(model_dir, TINY + KEEP3 + ["train.num_steps = 4"])
  return model_dir


KEEP3 = ["train.checkpoint_every = 1", "train.keep_checkpoints = 3"]


@pytest.mark.parametrize("how", ["truncate", "flip", "missing_index"])
def test_evaluation_and_export_restore_past_a_damaged_latest_checkpoint(
  tmp_path, four_checkpoints, how
):
  run = tmp_path / "run"
  shutil.copytree(four_checkpoints, run)
  ck = str(run / "checkpoints")
  _damage(os.path.join(ck, "ckpt-4"), how)
  files = sorted(os.listdir(ck))
  gin.clear_config()
  config.parse([MNIST_GIN], TINY)
  try:
    path, step = checkpoints.restore_latest_intact(_built_model(), str(run), "latest")
  finally:
    gin.clear_config()
  assert path.endswith("ckpt-3") and step == 3
  assert sorted(os.listdir(ck)) == files  # read-only: nothing moved or deleted


def test_training_resumes_past_a_damaged_latest_checkpoint_exactly(
  tmp_path, four_checkpoints, caplog
):
  run = tmp_path / "run"
  shutil.copytree(four_checkpoints, run)
  ck = str(run / "checkpoints")
  _damage(os.path.join(ck, "ckpt-4"), "truncate")
  result = _train(run, TINY + KEEP3 + ["train.num_steps = 6"])  # resumes from ckpt-3
  assert result["step"] == 6
  assert any("ckpt-4 is damaged" in r.getMessage() for r in caplog.records)
  assert glob.glob(os.path.join(ck, "damaged", "ckpt-4.*"))  # set aside, not deleted
  _train(tmp_path / "straight", TINY + KEEP3 + ["train.num_steps = 6"])
  _assert_identical(_state(ck), _state(str(tmp_path / "straight" / "checkpoints")))


def _built_model():
  from asvae_tf import data, model  # pylint: disable=g-import-not-at-top

  return model.build_for_data(data.load_splits())


def test_no_intact_checkpoint_exits_2_with_one_line_and_deletes_nothing(tmp_path, capsys):
  steps = ["train.checkpoint_every = 1", "train.keep_checkpoints = 2"]
  _train(tmp_path, TINY + steps + ["train.num_steps = 2"])
  ck = str(tmp_path / "checkpoints")
  for prefix in checkpoints.recorded(ck):
    _damage(prefix, "truncate")
  files = sorted(os.listdir(ck))
  gin.clear_config()
  try:
    code = cli.run_training([MNIST_GIN], TINY + steps + ["train.num_steps = 4"], str(tmp_path))
  finally:
    gin.clear_config()
  err = capsys.readouterr().err
  assert code == 2 and len(_error_lines(err)) == 1 and "no checkpoint restores" in err, err
  assert sorted(os.listdir(ck)) == files


def test_a_full_disk_during_a_checkpoint_stops_with_one_line_and_the_previous_one_restores(
  tmp_path, capsys
):
  steps = ["train.checkpoint_every = 1", "train.keep_checkpoints = 3", "train.num_steps = 5"]
  gin.clear_config()
  try:
    code = cli.run_training([MNIST_GIN], TINY + steps, str(tmp_path / "run"), hooks=EnospcAt(3))
  finally:
    gin.clear_config()
  err = capsys.readouterr().err
  lines = _error_lines(err)
  assert code == 2 and len(lines) == 1 and "no space left on device" in lines[0], err
  ck = str(tmp_path / "run" / "checkpoints")
  assert tf.train.latest_checkpoint(ck).endswith("ckpt-2")  # the partial ckpt-3 is not picked
  assert _train(tmp_path / "run", TINY + steps)["step"] == 5  # resumes from ckpt-2
  _train(tmp_path / "straight", TINY + steps)
  _assert_identical(_state(ck), _state(str(tmp_path / "straight" / "checkpoints")))


def test_a_full_disk_during_the_export_stops_with_one_line(tmp_path, capsys, monkeypatch):
  from asvae_tf import export  # pylint: disable=g-import-not-at-top
  import errno  # pylint: disable=g-import-not-at-top

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(export, "export", full)
  gin.clear_config()
  try:
    code = cli.run_training(
      [MNIST_GIN], TINY + ["train.num_steps = 2", "train.export_saved_model = True"], str(tmp_path)
    )
  finally:
    gin.clear_config()
  err = capsys.readouterr().err
  assert code == 2 and "no space left on device while exporting" in err, err
  assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-2")


def test_keep_checkpoints_below_2_is_a_config_error(tmp_path):
  with pytest.raises(errors.ConfigError, match="keep_checkpoints"):
    _train(tmp_path, TINY + ["train.num_steps = 2", "train.keep_checkpoints = 1"])
  assert not os.path.exists(tmp_path / "checkpoints")


def test_evaluate_names_the_checkpoint_it_fell_back_to(tmp_path):
  steps = ["train.checkpoint_every = 1", "train.keep_checkpoints = 3"]
  _train(tmp_path, TINY + steps + ["train.num_steps = 3"])
  _damage(str(tmp_path / "checkpoints" / "ckpt-3"), "flip")
  gin.clear_config()
  try:
    config.parse(
      [MNIST_GIN],
      TINY + ["evaluate.num_importance_samples = 2", "evaluate.max_examples = 8",
              "evaluate.num_generated = 8", "evaluate.num_splits = 2"],
    )  # fmt: skip
    metrics = evaluation.evaluate(str(tmp_path), checkpoint="latest")
  finally:
    gin.clear_config()
  assert metrics["checkpoint"].endswith("ckpt-2") and metrics["step"] == 2
