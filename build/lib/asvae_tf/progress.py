"""Progress logging for long loops: `format_eta` and the `Progress` logger.

Shared by training (the ETA of its step log lines) and evaluation (the IWAE loop).
Imports nothing else of asvae_tf, so any module may use it.

  * `format_eta(seconds)`: "H:MM:SS" of a duration, "?" when it is unknown (inf/nan).
  * `Progress(what, total)`: `update(done)` logs `what: done/total (H:MM:SS elapsed,
    ETA H:MM:SS)` about every 10% of the loop and at its end.
"""

import math
import time

from absl import logging


def format_eta(seconds):
  """A duration in seconds as "H:MM:SS" (whole seconds, truncated); "?" if not finite.

  Hours are not wrapped at 24: format_eta(90000) == "25:00:00".
  """
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
  """Logs `what: i/n (elapsed, ETA)` about every 10% of a loop over n items.

  The ETA assumes the remaining items take as long, on average, as the finished ones.

  Example:
    progress = Progress("IWAE k=1000", len(images))
    for j, x in enumerate(batches):
      ...
      progress.update(min((j + 1) * batch_size, len(images)))
  """

  def __init__(self, what, total, clock=time.time):
    """what: label of the log line; total: number of items (> 0); clock: seconds now."""
    self.what, self.total, self._clock = what, total, clock
    self.start, self.next = clock(), 0.1

  def update(self, done):
    """Records that `done` of the `total` items are finished; logs at each new 10%."""
    if done / self.total >= self.next or done == self.total:
      elapsed = self._clock() - self.start
      eta = elapsed * (self.total - done) / max(done, 1)
      logging.info(
        "%s: %d/%d (%s elapsed, ETA %s)",
        self.what,
        done,
        self.total,
        format_eta(elapsed),
        format_eta(eta),
      )
      self.next = math.floor(done / self.total * 10 + 1) / 10
