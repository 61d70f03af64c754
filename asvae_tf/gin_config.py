"""Gin plumbing: config-file lookup, strict parsing, operative-config output.

This module imports nothing else of asvae_tf (a test checks it): the configurables are
registered by `asvae_tf.registry`, whose `parse` imports them all and then calls
`parse` here. `gin.tf` does not import on current TensorFlow (it needs tf.estimator),
so nothing here uses it.

Config files are found by path, or by bare name (`mnist.gin`) among the paper configs
that ship with the package (`config_dir()`); `include 'mnist.gin'` inside a gin file
resolves among the shipped configs first, then relative to the working directory, so a
variant is its base plus the bindings that differ.
"""

import contextlib
import inspect
import os

import gin

OPERATIVE_CONFIG = "operative_config.gin"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def config_dir():
  """Directory of the paper's gin configs: the installed package data (asvae_tf/configs/)
  or, in a source checkout, the repository's gin/."""
  for path in (os.path.join(_PACKAGE_DIR, "configs"), os.path.join(_PACKAGE_DIR, "..", "gin")):
    if os.path.isdir(path):
      return os.path.normpath(path)
  raise FileNotFoundError("the asvae_tf gin configs are missing from this installation")


def find_gin_file(name):
  """Path of gin file `name`: an existing path as given, else a bare name in config_dir().

  Raises:
    FileNotFoundError: neither exists (the message lists the shipped configs).
  """
  if os.path.isfile(name):
    return name
  if os.path.basename(name) == name:
    candidate = os.path.join(config_dir(), name)
    if os.path.isfile(candidate):
      return candidate
  shipped = sorted(f for f in os.listdir(config_dir()) if f.endswith(".gin"))
  raise FileNotFoundError(f"gin file not found: {name} (shipped configs: {', '.join(shipped)})")


def parse(gin_files=(), gin_params=()):
  """Parses gin files then bindings; unknown configurables/parameters are errors.

  Every configurable must already be registered (call `asvae_tf.registry.parse`, which
  imports them, unless you imported the modules yourself).

  Raises:
    FileNotFoundError: a gin file does not exist.
    ValueError: gin reports a bad or unknown binding (never skip_unknown).
  """
  paths = [find_gin_file(path) for path in gin_files]
  # `include 'mnist.gin'` finds the shipped base first: gin tries its search prefixes in
  # order and logs an ERROR line for every miss, and gin has no public call that puts a
  # prefix first (add_config_file_search_path appends after the working directory).
  prefixes = gin.config._LOCATION_PREFIXES  # pylint: disable=protected-access
  if config_dir() not in prefixes:
    prefixes.insert(0, config_dir())
  gin.parse_config_files_and_bindings(
    paths, list(gin_params), skip_unknown=False, finalize_config=False
  )


@contextlib.contextmanager
def fresh():
  """Runs the block with an empty gin config and clears it again on exit.

  The one place where the package replaces the global gin config: drivers that train and
  then evaluate several configs in one process (experiments.py) use it; library functions
  never clear the caller's config.
  """
  gin.clear_config()
  try:
    yield
  finally:
    gin.clear_config()


@contextlib.contextmanager
def isolated():
  """Like `fresh`, but restores the caller's gin config on exit (for library calls such
  as `asvae_tf.load`, which parse a model_dir's config inside a user's process).

  gin has no public snapshot, so this saves and restores its global bindings, imports
  and operative config (private state, like `_LOCATION_PREFIXES` in `parse`)."""
  cfg = gin.config  # pylint: disable=protected-access
  saved = (
    {key: dict(values) for key, values in cfg._CONFIG.items()},
    set(cfg._IMPORTS),
    {key: dict(values) for key, values in cfg._OPERATIVE_CONFIG.items()},
    dict(cfg._SINGLETONS),
    cfg.config_is_locked(),
  )
  gin.clear_config()
  try:
    yield
  finally:
    gin.clear_config()
    cfg._CONFIG.update(saved[0])
    cfg._IMPORTS.update(saved[1])
    cfg._OPERATIVE_CONFIG.update(saved[2])
    cfg._SINGLETONS.update(saved[3])
    cfg._set_config_is_locked(saved[4])


def factory(cls, gin_name, layer_name=None, denylist=()):
  """A gin-configurable function `gin_name` that builds `cls` with the same arguments.

  Keras 3 inspects a layer class's __init__ signature, which gin's class decoration
  hides, so gin sees a factory instead. Its signature is the class's own (without `self`
  and `**kwargs`, so a misspelt binding stays an error), plus `name=layer_name` when
  given; `name` and `denylist` cannot be bound in gin (the model sets them).
  """
  params = [
    p
    for n, p in inspect.signature(cls.__init__).parameters.items()
    if n != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD
  ]
  if layer_name is not None and "name" not in [p.name for p in params]:
    params.append(inspect.Parameter("name", inspect.Parameter.KEYWORD_ONLY, default=layer_name))

  signature = inspect.Signature(params)

  def build(*args, **kwargs):
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()  # e.g. name=layer_name
    return cls(*bound.args, **bound.kwargs)

  build.__signature__ = signature
  build.__name__ = build.__qualname__ = gin_name
  build.__module__ = cls.__module__
  build.__doc__ = f"Gin factory `{gin_name}` of `{cls.__name__}` (the same arguments)."
  return gin.configurable(gin_name, denylist=["name", *denylist])(build)


def write_operative_config(directory):
  """Writes directory/operative_config.gin (the bindings actually used) and returns its path."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, OPERATIVE_CONFIG)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:  # write + rename: a killed process never leaves half a file
    f.write(gin.operative_config_str())
  os.replace(tmp, path)
  return path


def operative_value(model_dir, binding, default=None):
  """The value text of `binding` (e.g. 'train.early_stopping_metric') in
  model_dir/operative_config.gin, unquoted; `default` if the file or binding is absent."""
  path = os.path.join(model_dir, OPERATIVE_CONFIG)
  if not os.path.isfile(path):
    return default
  value = default
  with open(path) as f:
    for line in f:
      if line.split("=", 1)[0].strip() == binding:
        value = line.split("=", 1)[1].strip().strip("'\"")
  return value


class _TextReferences(gin.config_parser.ParserDelegate):
  """Keeps `@name` / `%name` references as their text (nothing needs to be registered)."""

  def configurable_reference(self, scoped_configurable_name, evaluate):
    return f"@{scoped_configurable_name}{'()' if evaluate else ''}"

  def macro(self, macro_name):
    return f"%{macro_name}"


def operative_bindings(config_text=None):
  """{'scope/configurable.param': value} of a gin config text (default: the operative
  config so far, `gin.operative_config_str()`), in file order. Values are the parsed
  literals (int, float, bool, str, None, tuples, ...); references stay text ('@mlp_encoder')."""
  if config_text is None:
    config_text = gin.operative_config_str()
  out = {}
  for statement in gin.config_parser.ConfigParser(config_text, _TextReferences()):
    if isinstance(statement, gin.config_parser.BindingStatement):
      scope = f"{statement.scope}/" if statement.scope else ""
      out[f"{scope}{statement.selector}.{statement.arg_name}"] = statement.value
  return out
