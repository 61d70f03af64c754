"""The package's one error hierarchy, and the one-line form the command-line tools print.

Every error a user can cause by configuration, data or a model_dir is an `AsvaeError`;
`cli.main` turns it into exit code 2 and ONE line on stderr. Each class also derives from
the builtin it refines (ValueError, RuntimeError), so `except ValueError` keeps working.

  AsvaeError
    ConfigError               a bad gin value or flag (also raised for impossible settings)
      GinError                a gin file or binding gin rejects ("bad gin configuration: ...")
        GinFileNotFoundError  a gin file that does not exist (also a FileNotFoundError)
      CheckpointMismatchError a checkpoint that does not match the configured model
      SavedModelNotFoundError a path that is neither an export base nor a SavedModel
                              (also a FileNotFoundError)
    DataError                 missing, unreadable or malformed data
    CheckpointCorruptError    no checkpoint of a model_dir restores (all damaged)
    DiskFullError             a checkpoint or export failed for lack of disk space
    ModelDirLockedError       another live process trains into the same model_dir
    TrainingDivergedError     non-finite steps persisted through every allowed rollback
  Preempted                   (not an AsvaeError) SIGTERM / SIGINT: a checkpoint was saved,
                              rerun to resume; the CLIs exit with EXIT_PREEMPTED (75)
"""

EXIT_PREEMPTED = 75  # os.EX_TEMPFAIL: "temporary failure, try again" (rerun to resume)


class AsvaeError(Exception):
  """Base class of the errors reported as one line with exit code 2."""


class ConfigError(AsvaeError, ValueError):
  """A bad configuration value (reported by the CLIs as one line, exit code 2)."""


class GinError(ConfigError):
  """A gin file or binding that gin rejects (unknown name, syntax error, missing file)."""


class GinFileNotFoundError(GinError, FileNotFoundError):
  """A gin file that does not exist."""


class CheckpointMismatchError(ConfigError):
  """A checkpoint that does not match the configured model."""


class SavedModelNotFoundError(ConfigError, FileNotFoundError):
  """A path that is neither an export base (numbered versions) nor a SavedModel directory."""


class DataError(AsvaeError, ValueError):
  """Bad or missing data (reported by the CLIs as one line, exit code 2)."""


class TrainingDivergedError(AsvaeError, RuntimeError):
  """Non-finite steps persisted through train.max_rollbacks rollbacks."""


class CheckpointCorruptError(AsvaeError):
  """No checkpoint of a model_dir restores: every candidate is damaged."""


class DiskFullError(AsvaeError):
  """A checkpoint or an export failed with ENOSPC (no space left on device)."""


class ModelDirLockedError(AsvaeError):
  """Another live process holds the model_dir's lock."""


class Preempted(Exception):
  """Training stopped on SIGTERM / SIGINT after saving a checkpoint (rerun to resume)."""

  def __init__(self, message, step):
    super().__init__(message)
    self.step = step


def one_line(error, limit=None):
  """str(error) with all whitespace runs collapsed to single spaces, cut at `limit` chars."""
  text = " ".join(str(error).split())
  # gin appends "In call to configurable 'x' (<function ...>)" to errors raised inside a
  # configurable: noise in a one-line message.
  text = text.split(" In call to configurable ")[0]
  if limit is not None and len(text) > limit:
    text = text[:limit] + "..."
  return text
