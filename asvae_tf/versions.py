"""Where exports live: TF Serving's numbered-version layout, <base>/<version>/saved_model.pb.

An export base (model_dir/saved_model, or tools/export.py's --export_dir) holds one
SavedModel per version, in a subdirectory named by the training step of its weights;
TF Serving serves the highest version by default. Every reader (load_saved_model,
tools/sample.py, export.read_metadata) accepts the base or a version directory. A
SavedModel AT the base (the flat layout of earlier releases) is read as it is, and an
export into such a base first moves it into its own numbered version.

  * `resolve(path)`: the SavedModel directory meant by `path` (a base -> its highest version).
  * `versions(base)`: the numbered versions holding a SavedModel, ascending.
  * `check_base(base)`: refuses (FileExistsError) a directory that is not an export base.
  * `prepare(base, step)`: check_base, move a flat SavedModel into a version, -> base/<step>.

Paths only: this module imports neither TensorFlow nor the rest of asvae_tf (but errors;
absl logging for its one warning).
"""

import json
import os

from absl import logging

from asvae_tf import errors

SAVED_MODEL_FILE = "saved_model.pb"
# What tf.saved_model.save writes into a SavedModel directory (a flat export at a base).
FLAT_PARTS = ("saved_model.pb", "saved_model.pbtxt", "variables", "assets", "assets.extra",
              "fingerprint.pb")  # fmt: skip


def is_saved_model(path):
  """True if `path` is a directory with a saved_model.pb."""
  return os.path.isfile(os.path.join(path, SAVED_MODEL_FILE))


def versions(base):
  """The versions (ints) of `base`: its all-digit subdirectories that hold a SavedModel."""
  if not os.path.isdir(base):
    return []
  found = [n for n in os.listdir(base) if n.isdigit() and is_saved_model(os.path.join(base, n))]
  return sorted(int(n) for n in found)


def resolve(path):
  """The SavedModel directory meant by `path`.

  A base with numbered versions -> its highest version; a version directory, or a flat
  SavedModel of an earlier release -> `path` itself.
  Raises:
    errors.SavedModelNotFoundError: `path` is neither.
  """
  found = versions(path)
  if found:
    return os.path.join(path, str(found[-1]))
  if is_saved_model(path):
    return path
  what = "does not exist" if not os.path.exists(path) else "holds no SavedModel"
  raise errors.SavedModelNotFoundError(
    f"{path} {what}: give an export base (numbered versions <base>/<step>/) or a "
    f"SavedModel directory (with {SAVED_MODEL_FILE})"
  )


def check_base(base):
  """Raises FileExistsError unless `base` is absent, empty or an export base (numbered
  versions, their staging directories, a flat SavedModel; hidden files are ignored)."""
  if not os.path.isdir(base):
    if os.path.exists(base):
      raise FileExistsError(f"export_dir {base} exists and is not a directory")
    return
  others = [
    n
    for n in os.listdir(base)
    if not (n.isdigit() or n.endswith(".partial") or n in FLAT_PARTS or n.startswith("."))
  ]
  if others:
    raise FileExistsError(
      f"export_dir {base} exists and is not a SavedModel base (it holds {sorted(others)[:3]}); "
      f"refusing to write into it"
    )


def prepare(base, step):
  """The version directory base/<step> for a new export (not created; replaced if present).

  A flat SavedModel at `base` first moves into base/<its training step> (or base/0), so
  that TF Serving and `resolve` see only numbered versions. A version above `step` already
  in `base` (e.g. an earlier export of a later checkpoint) is what TF Serving and
  `resolve(base)` keep serving: one warning line says so and names it.
  Raises FileExistsError (check_base).
  """
  check_base(base)
  if is_saved_model(base):
    _move_flat_into_version(base)
  higher = [v for v in versions(base) if v > int(step)]
  if higher:  # TF Serving and resolve(base) serve the highest version, not this one
    logging.warning(
      "%s already holds version %d, above this export's step %d: TF Serving and "
      "load_saved_model(%s) serve the highest version; delete %s to serve this one",
      base, max(higher), int(step), base, os.path.join(base, str(max(higher))),
    )  # fmt: skip
  return os.path.join(base, str(int(step)))


def _move_flat_into_version(base):
  """Moves the parts of a flat SavedModel at `base` into base/<its training step>."""
  try:
    with open(os.path.join(base, "assets", "asvae_metadata.json")) as f:
      version = int(json.load(f).get("training_step") or 0)
  except (OSError, ValueError, TypeError, AttributeError):
    version = 0
  target = os.path.join(base, str(version))
  if os.path.exists(target):
    return  # `resolve` prefers numbered versions, so the flat one is no longer read
  staging = f"{target}.moving.partial"
  os.makedirs(staging, exist_ok=True)
  for name in FLAT_PARTS:
    if os.path.exists(os.path.join(base, name)):
      os.replace(os.path.join(base, name), os.path.join(staging, name))
  os.replace(staging, target)
