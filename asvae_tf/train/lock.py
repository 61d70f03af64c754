"""One writer per model_dir: an OS-level lock that dies with its holder.

`ModelDirLock(model_dir).acquire()` takes an exclusive `flock` on the model_dir directory
itself (no lock file to go stale: the kernel releases the lock when the holder exits, also
on SIGKILL). A second process gets `errors.ModelDirLockedError` naming the holder, whose
pid and host `write_holder()` records in model_dir/LOCK_HOLDER once the run has checked
its configuration (so a rejected configuration leaves model_dir untouched).
"""

import fcntl
import json
import os
import socket
import time

from asvae_tf import errors

HOLDER_FILE = "LOCK_HOLDER"


class ModelDirLock:
  """Exclusive lock of a model_dir (a context manager; release() is idempotent)."""

  def __init__(self, model_dir):
    self.model_dir = model_dir
    self._fd = None

  def acquire(self):
    """Locks model_dir (created if missing). Raises errors.ModelDirLockedError if held."""
    os.makedirs(self.model_dir, exist_ok=True)
    fd = os.open(self.model_dir, os.O_RDONLY)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      os.close(fd)
      raise errors.ModelDirLockedError(
        f"{self.model_dir} is in use by another training process ({self._holder()}); "
        f"wait for it to finish or stop it, or train into another --model_dir"
      ) from None
    self._fd = fd
    return self

  def write_holder(self):
    """Records this process (pid, host, start time) in model_dir/LOCK_HOLDER."""
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    path = os.path.join(self.model_dir, HOLDER_FILE)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
      json.dump(info, f)
    os.replace(tmp, path)

  def _holder(self):
    try:
      with open(os.path.join(self.model_dir, HOLDER_FILE)) as f:
        info = json.load(f)
      return f"pid {info['pid']} on host {info['host']}"
    except (OSError, ValueError, KeyError):
      return "a process that has not recorded its pid yet"

  def release(self):
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()
