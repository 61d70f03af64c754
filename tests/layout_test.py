"""The package's shape: no import cycle, modules that import alone, short modules and
functions, no test machinery in production code, one formatter."""

import ast
import os
import subprocess
import sys


from conftest import ROOT

PACKAGE = os.path.join(ROOT, "asvae_tf")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # code lines, docstring excluded
# Functions allowed past MAX_FUNCTION_LINES, with the reason (README "Layout").
LONG_FUNCTIONS = {}
# Compatibility aliases kept for one release (README "Layout").
ALIASES = {"asvae_tf.config", "asvae_tf.train_lib", "asvae_tf.export_lib"}


def _modules():
  """{dotted name: path} of every module of asvae_tf."""
  out = {}
  for directory, _, files in os.walk(PACKAGE):
    for f in files:
      if f.endswith(".py"):
        rel = os.path.relpath(os.path.join(directory, f), ROOT)[: -len(".py")]
        name = rel.replace(os.sep, ".").removesuffix(".__init__")
        out[name] = os.path.join(directory, f)
  return out


MODULES = _modules()


def _imports(name, path):
  """asvae_tf modules imported at module level (any depth of the module body)."""
  tree = ast.parse(open(path).read())
  out = set()
  package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name.startswith("asvae_tf")}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base])
      if base.startswith("asvae_tf"):
        for a in node.names:
          sub = f"{base}.{a.name}"
          out.add(sub if sub in MODULES else base)
  return {m for m in out if m in MODULES and m != name}


def find_cycle(graph):
  """A cycle of `graph` ({node: set of successors}) as a list of nodes, or None."""
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt) :] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    stack.pop()
    state[node] = "done"
    return None

  for name in sorted(graph):
    if name not in state:
      found = visit(name)
      if found:
        return found
  return None


def test_the_cycle_finder_finds_cycles():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert _imports("asvae_tf.model", MODULES["asvae_tf.model"]) >= {
    "asvae_tf.terms",
    "asvae_tf.nets",
  }


def test_the_import_graph_has_no_cycle():
  graph = {name: _imports(name, path) for name, path in MODULES.items()}
  cycle = find_cycle(graph)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_gin_config_and_errors_import_nothing_of_the_package():
  for name in ("asvae_tf.gin_config", "asvae_tf.errors"):
    assert _imports(name, MODULES[name]) == set(), name


_ALONE = r"""
import os, sys
import gin, keras, numpy, tensorflow, tensorflow_probability  # heavy deps once, then fork
failed = []
for name in sys.argv[1:]:
  pid = os.fork()
  if pid == 0:  # a child without any asvae_tf module: imports `name` alone
    try:
      __import__(name)
      os._exit(0)
    except BaseException as e:
      sys.stderr.write(f"{name}: {type(e).__name__}: {e}\n")
      os._exit(1)
  _, status = os.waitpid(pid, 0)
  if status:
    failed.append(name)
print("FAILED", failed)
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_alone_in_a_fresh_process():
  names = sorted(MODULES)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
  r = subprocess.run(
    [sys.executable, "-c", _ALONE, *names], capture_output=True, text=True, env=env,
    cwd=ROOT, timeout=600,
  )  # fmt: skip
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
  assert "FAILED []" in r.stdout


def _code_lines(fn):
  """Lines of a function from its `def` to its end, without its docstring."""
  length = fn.end_lineno - fn.lineno + 1
  first = fn.body[0]
  if isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant):
    if isinstance(first.value.value, str):
      length -= first.end_lineno - first.lineno + 1
  return length


def test_modules_and_functions_are_short():
  long_modules, long_functions = [], []
  for name, path in MODULES.items():
    source = open(path).read()
    if source.count("\n") > MAX_MODULE_LINES:
      long_modules.append((name, source.count("\n")))
    for node in ast.walk(ast.parse(source)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        length = _code_lines(node)
        key = f"{name}.{node.name}"
        if length > MAX_FUNCTION_LINES and key not in LONG_FUNCTIONS:
          long_functions.append((key, length))
  assert not long_modules, long_modules
  assert not long_functions, long_functions


def test_no_test_machinery_or_path_edits_in_production_code():
  offenders = []
  for directory in ("asvae_tf", "tools"):
    for base, _, files in os.walk(os.path.join(ROOT, directory)):
      for f in files:
        if f.endswith(".py"):
          text = open(os.path.join(base, f)).read()
          for needle in ("ASVAE_TEST_", "inject_nan", "sys.path", "_collective_key_base",
                         "gen_io_ops"):  # fmt: skip
            if needle in text:
              offenders.append((os.path.join(directory, f), needle))
  assert not offenders, offenders


def test_compatibility_aliases_only_re_export():
  for name in ALIASES:
    tree = ast.parse(open(MODULES[name]).read())
    body = [n for n in tree.body if not isinstance(n, ast.Expr)]  # the docstring
    assert all(isinstance(n, ast.ImportFrom) for n in body), name
