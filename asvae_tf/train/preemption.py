"""Preemption: SIGTERM / SIGINT stop training after the current step, with a checkpoint.

Schedulers preempt with SIGTERM and a grace period. `PreemptionWatcher` (a context manager
used around the training loop in the main thread) installs handlers for SIGTERM and SIGINT
and a wakeup pipe (`signal.set_wakeup_fd`): the interpreter's C-level handler writes the
signal number to the pipe at once, even while the main thread is inside a compiled
training loop, and a watcher thread then sets `flag` (a tf.Variable the loop reads before
every step). The loop ends after the step in flight; the controller saves a checkpoint,
flushes the summaries and raises `errors.Preempted` (the CLI exits with code 75).
Multi-worker runs agree on the stopping step: each step all-reduces the workers' flags
(`Trainer.stop_agreed`), so a signal to one worker stops all of them after the same step.
Outside the main thread (where Python cannot install signal handlers) it does nothing.
Previous handlers and wakeup fd are restored on exit.
"""

import os
import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class PreemptionWatcher:
  """Sets `flag` (a boolean tf.Variable) on SIGTERM / SIGINT; `received` names the signal."""

  def __init__(self, flag):
    self.flag = flag
    self.received = None
    self._previous = {}
    self._pipe = None
    self._thread = None
    self._old_wakeup = None

  def _handler(self, signum, frame):
    del frame
    self.received = self.received or signal.Signals(signum).name

  def _watch(self, read_fd):
    while True:
      data = os.read(read_fd, 64)
      if not data or 0 in data:  # 0: our own stop byte (see __exit__)
        return
      self.received = self.received or signal.Signals(data[0]).name
      self.flag.assign(True)

  def __enter__(self):
    if threading.current_thread() is not threading.main_thread():
      return self
    self._pipe = os.pipe()
    os.set_blocking(self._pipe[1], False)
    self._old_wakeup = signal.set_wakeup_fd(self._pipe[1], warn_on_full_buffer=False)
    for sig in SIGNALS:
      self._previous[sig] = signal.signal(sig, self._handler)
    self._thread = threading.Thread(target=self._watch, args=(self._pipe[0],), daemon=True)
    self._thread.start()
    return self

  def __exit__(self, *exc):
    if self._pipe is None:
      return
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)
    signal.set_wakeup_fd(self._old_wakeup)
    os.write(self._pipe[1], b"\0")
    self._thread.join(5)
    for fd in self._pipe:
      os.close(fd)
    self._pipe = None
