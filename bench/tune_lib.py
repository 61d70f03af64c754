"""The pieces of bench/tune_mnist10k.py (validation-slice sweeps), without its flags.

A sweep is a list of candidates (label, gin file, bindings), each trained once per seed by
a `run_fn(gin_file, model_dir, bindings) -> metrics`; a run that diverges is recorded, not
fatal. Kept free of absl flags so tests can import it beside other bench modules.
"""

import hashlib
import os
import re

from asvae_tf import errors
from bench import mnist10k_lib as lib


def parse_sweep(sweep):
  """'scope.param=v1,v2' -> ('scope.param', ['v1', 'v2']); None or '' -> (None, [None]).
  ValueError (naming the flag) for a malformed sweep."""
  if not sweep:
    return None, [None]
  name, sep, values = sweep.partition("=")
  name = name.strip()
  values = [v.strip() for v in values.split(",") if v.strip()]
  if not sep or not re.fullmatch(r"[\w./]+", name) or not values:
    raise ValueError(f"--sweep must look like 'scope.param=v1,v2', got {sweep!r}")
  if len(set(values)) != len(values):
    raise ValueError(f"--sweep repeats a value: {sweep!r}")
  return name, values


def binding_name(binding):
  """The parameter a gin binding 'scope.param = value' sets; ValueError if it sets none."""
  m = re.match(r"\s*([\w./]+)\s*=", binding)
  if not m:
    raise ValueError(f"--binding must look like 'scope.param = value', got {binding!r}")
  return m.group(1)


# Bound by the tuning setup itself: a --binding or --sweep of these would silently change the
# budget, data, seed or checkpoint the table's header states (the learning rate has its flag).
FIXED_PARAMS = frozenset(
  binding_name(b)
  for b in lib.protocol_bindings("/d", 7000, 20, 0, 1e-3) + ["train.early_stopping_patience = 0"]
)


def candidates(gin_files, sweep, bindings=()):
  """[(label, gin_file, bindings)]: the first gin file (the baseline of the paired column)
  as it is, then each other file once per swept value (or once, without a sweep). Every
  candidate gets `bindings` first. ValueError for: a sweep without a file to sweep,
  repeated gin files, a binding or sweep of FIXED_PARAMS."""
  param, values = parse_sweep(sweep)
  if len(set(gin_files)) != len(gin_files):
    raise ValueError(f"--gin_files repeats a file: {gin_files}")
  if param and len(gin_files) < 2:
    raise ValueError("--sweep needs a second --gin_files entry: the first is the unswept baseline")
  fixed = sorted({param, *map(binding_name, bindings)} & FIXED_PARAMS)
  if fixed:
    raise ValueError(
      f"{fixed} are fixed by the tuning setup (budget, data, seed, early stopping off; "
      "--learning_rate for the learning rate)"
    )
  out = [(gin_files[0].removesuffix(".gin"), gin_files[0], list(bindings))]
  for gin_file in gin_files[1:]:
    for value in values:
      label = gin_file.removesuffix(".gin") + ("" if value is None else f" {param}={value}")
      swept = [] if value is None else [f"{param} = {value}"]
      out.append((label, gin_file, list(bindings) + swept))
  return out


def run_dir(work, gin_file, bindings, seed):
  """work/<readable slug>_<8 hex of the exact gin file and bindings>_seed<seed>: distinct
  candidates never share a directory, and the name stays short."""
  digest = hashlib.sha256("\n".join([gin_file, *bindings]).encode()).hexdigest()[:8]
  slug = "_".join([gin_file.removesuffix(".gin"), *bindings])
  slug = re.sub(r"[^\w.=-]+", "-", re.sub(r"\s*=\s*", "=", slug))[:80]
  return os.path.join(work, f"{slug}_{digest}_seed{seed}")


def sweep(cands, seeds, protocol_fn, run_fn, work):
  """Runs every candidate for every seed -> [(label, {seed: metrics})]. protocol_fn(seed)
  gives the fixed bindings, applied after the candidate's (they cannot collide:
  `candidates` refuses FIXED_PARAMS). A TrainingDivergedError is kept as {"error": ...}."""
  rows = []
  for label, gin_file, bindings in cands:
    by_seed = {}
    for seed in seeds:
      print(f"== {label} seed {seed}", flush=True)
      all_bindings = list(bindings) + protocol_fn(seed)
      try:
        by_seed[seed] = run_fn(gin_file, run_dir(work, gin_file, bindings, seed), all_bindings)
      except errors.TrainingDivergedError as e:
        print(f"   diverged: {e}", flush=True)
        by_seed[seed] = {"error": f"TrainingDivergedError: {e}"}
    rows.append((label, by_seed))
  return rows


def table(rows, seeds, header):
  """rows: [(label, {seed: metrics})], the first the baseline -> markdown. A diverged run's
  cells are left out of its means (n/a if none is left); the paired IWAE difference uses
  the seeds where both runs have one, their count shown when some are missing."""
  base = rows[0][1]
  lines = [
    header,
    "",
    "| candidate | seeds | " + " | ".join(h for _, h in lib.METRIC_COLUMNS) + " | diverged | "
    "IWAE - baseline (paired) |",
    "|---" * (len(lib.METRIC_COLUMNS) + 4) + "|",
  ]
  for i, (label, by_seed) in enumerate(rows):
    cells = [lib.cell([by_seed[s].get(k) for s in seeds]) for k, _ in lib.METRIC_COLUMNS]
    diverged = [str(s) for s in seeds if "error" in by_seed[s]]
    paired = "-"
    if i:
      common = [s for s in seeds if "iwae_nll" in by_seed[s] and "iwae_nll" in base[s]]
      paired = lib.cell([by_seed[s]["iwae_nll"] - base[s]["iwae_nll"] for s in common])
      if len(common) < len(seeds):
        paired += f" (n = {len(common)})"
    lines.append(
      f"| {label} | {','.join(map(str, seeds))} | " + " | ".join(cells)
      + f" | {','.join(diverged) or '-'} | {paired} |"
    )  # fmt: skip
  return "\n".join(lines)
