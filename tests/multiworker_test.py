"""MultiWorkerMirroredStrategy from TF_CONFIG: 2 worker processes on 127.0.0.1.

Every worker process is started in its own process group and killed with SIGKILL on
timeout and in a `finally`: a worker whose peer never starts blocks in the strategy
constructor and ignores SIGTERM (TensorFlow's preemption notifier takes it over).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import gin
import numpy as np
import pytest
import tensorflow as tf

from asvae_tf import config
from asvae_tf import errors
from asvae_tf import train
from conftest import ROOT, TINY_MODEL, idle_checkpoint_keys
import harness

MNIST_GIN = os.path.join(ROOT, "gin", "mnist.gin")
TRAIN_PY = os.path.join(ROOT, "tools", "train.py")
DEADLINE = 240  # seconds for the whole 2-worker run
PREEMPTION_GRACE_S = 30  # from SIGTERM to both workers' exit (a step + a checkpoint)

# Plain SGD: a loss-scaling error (per-worker instead of global batch) would show.
RUN = TINY_MODEL + [
  "train.export_saved_model = True",
  "model.objective = 'asvae'",
  "posterior.kind = 'gaussian'",
  "posterior.num_flows = 0",
  "train.checkpoint_every = 0",
  "train.summary_every = 1",
  "train.validate_every = 0",
  "train.image_every = 0",
  "generator/optimizer.name = 'sgd'",
  "discriminator/optimizer.name = 'sgd'",
  "generator/optimizer.learning_rate = 0.005",
  "discriminator/optimizer.learning_rate = 0.005",
]


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  try:
    for s in socks:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in socks]
  finally:
    for s in socks:
      s.close()


def _start_worker(index, ports, model_dir, log_path, extra=()):
  tf_config = {
    "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
    "task": {"type": "worker", "index": index},
  }
  env = dict(
    os.environ, TF_CONFIG=json.dumps(tf_config), CUDA_VISIBLE_DEVICES="-1", TF_CPP_MIN_LOG_LEVEL="2"
  )
  args = [
    sys.executable,
    TRAIN_PY,
    f"--gin_file={MNIST_GIN}",
    f"--model_dir={model_dir}",
    "--strategy=multi_worker",
  ] + [f"--gin_param={b}" for b in RUN + list(extra)]
  log = open(log_path, "a")
  try:
    return subprocess.Popen(
      args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )  # own process group
  finally:
    log.close()


def _kill_group(proc):
  if proc.poll() is None:
    try:
      os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass
  proc.wait()


def _wait_all(procs, deadline):
  """Waits until every process ended or time.monotonic() > deadline; True if all ended."""
  while time.monotonic() < deadline:
    if all(p.poll() is not None for p in procs):
      return True
    time.sleep(0.2)
  return False


def _state(path):
  """Every variable of a checkpoint but save_counter (the preempted run saved once more)."""
  return harness.checkpoint_state(path, skip=("save_counter",))


def _digest(log_path):
  with open(log_path) as f:
    lines = [line for line in f if "final weights sha256 " in line]
  assert len(lines) == 1, open(log_path).read()[-3000:]
  return lines[0].split("final weights sha256 ")[1].split()[0]


def _wait_for_text(path, text, deadline):
  while time.monotonic() < deadline:
    if os.path.exists(path) and text in open(path).read():
      return True
    time.sleep(0.1)
  return False


def _preempted_line(log_path):
  lines = [line for line in open(log_path) if line.startswith("asvae_tf: preempted by ")]
  assert len(lines) == 1, open(log_path).read()[-3000:]
  return lines[0]


@pytest.mark.slow(80)
def test_sigterm_to_one_worker_stops_both_at_one_step_and_the_rerun_matches_one_worker(tmp_path):
  """SIGTERM reaches worker 1 only: both workers agree (one all-reduced flag per step),
  stop after the same step, the chief saves ckpt-<step>, both exit 75. The rerun of both
  resumes there; its end state equals an uninterrupted in-process run bit for bit."""
  model_dir = tmp_path / "mw"
  long_run = ["train.num_steps = 1000000", "train.summary_every = 25"]
  logs = [tmp_path / f"worker{i}.log" for i in range(2)]
  procs = []
  try:
    ports = _free_ports(2)
    procs = [_start_worker(i, ports, model_dir, logs[i], long_run) for i in range(2)]
    started = _wait_for_text(logs[0], "step 25/1000000", time.monotonic() + DEADLINE)
    assert started, [open(p).read()[-3000:] for p in logs]  # inside the 2nd 25-step chunk
    sent = time.monotonic()
    procs[1].send_signal(signal.SIGTERM)
    finished = _wait_all(procs, sent + PREEMPTION_GRACE_S)
    tails = [open(p).read()[-3000:] for p in logs]
    assert finished, f"workers did not stop within {PREEMPTION_GRACE_S}s of SIGTERM: {tails}"
    assert [p.returncode for p in procs] == [errors.EXIT_PREEMPTED] * 2, tails
  finally:
    for p in procs:
      _kill_group(p)
  lines = [_preempted_line(p) for p in logs]
  assert lines[1].startswith("asvae_tf: preempted by SIGTERM at step "), lines
  assert lines[0].startswith("asvae_tf: preempted by a signal to another worker at step "), lines
  steps = [int(line.split(" at step ")[1].split(":")[0]) for line in lines]
  assert steps[0] == steps[1] and 25 < steps[0] < 1000000, lines
  step = steps[0]
  ckpt_dir = str(model_dir / "checkpoints")
  assert tf.train.latest_checkpoint(ckpt_dir).endswith(f"ckpt-{step}")

  # The rerun of both workers resumes at `step` and runs 3 more steps.
  end = [f"train.num_steps = {step + 3}"]
  procs = []
  try:
    ports = _free_ports(2)
    procs = [_start_worker(i, ports, model_dir, logs[i], end) for i in range(2)]
    finished = _wait_all(procs, time.monotonic() + DEADLINE)
    tails = [open(p).read()[-3000:] for p in logs]
    assert finished, f"2-worker rerun exceeded {DEADLINE}s: {tails}"
    assert [p.returncode for p in procs] == [0, 0], tails
  finally:
    for p in procs:
      _kill_group(p)

  # Both workers end with bit-identical model and optimizer state.
  assert _digest(logs[0]) == _digest(logs[1])
  # Only the chief wrote model_dir; the non-chief's temporary dir is gone.
  assert not os.path.exists(str(model_dir / "workertemp_1"))
  assert "removed worker temporary dir" in open(logs[1]).read()
  assert os.path.isdir(str(model_dir / "saved_model"))
  two = _state(tf.train.latest_checkpoint(ckpt_dir))
  init = _state(os.path.join(ckpt_dir, "ckpt-0"))

  # The same global batch and noise on one worker with 2 local replicas (in-process,
  # MirroredStrategy over the 2 logical CPUs of conftest), uninterrupted: each replica
  # computes what one worker computes, and a sum of 2 terms does not depend on the order.
  gin.clear_config()
  config.parse(
    [MNIST_GIN], RUN + end + ["train.strategy = 'mirrored'", "train.export_saved_model = False"]
  )
  try:
    train.train(str(tmp_path / "one"))
  finally:
    gin.clear_config()
  one = _state(tf.train.latest_checkpoint(str(tmp_path / "one" / "checkpoints")))
  assert one.keys() == two.keys()
  for k in one:
    np.testing.assert_array_equal(two[k], one[k], err_msg=k)
  params = [k for k in one if "_trainable_variables/" in k]
  assert len(params) > 20
  idle = idle_checkpoint_keys([MNIST_GIN], RUN)  # never trained by construction
  assert len(idle) == 3
  assert all(not np.array_equal(init[k], two[k]) for k in params if k not in idle)  # trained
  assert all(np.array_equal(init[k], two[k]) for k in idle)
  assert int(two["step/.ATTRIBUTES/VARIABLE_VALUE"]) == step + 3


def test_worker_without_peer_blocks_ignores_sigterm_and_is_sigkilled(tmp_path):
  ports = _free_ports(2)
  log = tmp_path / "worker1.log"
  proc = None
  try:
    proc = _start_worker(1, ports, tmp_path / "lonely", log)  # worker 0 never starts
    # Started (the CLI logs its model_dir just before building the strategy), then blocked.
    assert _wait_for_text(log, "model_dir:", time.monotonic() + 60), open(log).read()[-3000:]
    assert not _wait_all([proc], time.monotonic() + 3), open(log).read()[-3000:]
    proc.send_signal(signal.SIGTERM)
    sigterm_ended = _wait_all([proc], time.monotonic() + 3)
    assert not sigterm_ended, "SIGTERM ended the blocked worker: " + open(log).read()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)
    assert _wait_all([proc], time.monotonic() + 10)
    assert proc.returncode == -signal.SIGKILL, (sigterm_ended, proc.returncode)
  finally:
    if proc is not None:
      _kill_group(proc)
  assert not os.path.exists(str(tmp_path / "lonely" / "checkpoints"))
