"""Hostile serving inputs: the exported signatures against seeded-random requests.

One tiny model (4x4x1 images, D = 3) is exported once with small `serving_limits` (bound
through gin) and loaded with tf.saved_model.load. The fuzzer builds each request from a
valid one and, most of the time, breaks it in one or two ways (rank, dims, dtype, NaN /
Inf / out-of-range pixels, counts <= 0 or above the limit up to 2**31 - 1, batches above
the limit, empty batches, seeds of the wrong shape or dtype, calls the Python binding
layer rejects). Each request carries its predicted outcome, which the call must meet:

  valid    -> an answer of the right shapes, finite, images in [0, 1];
  invalid  -> tf.errors.InvalidArgumentError raised INSIDE the SavedModel, whose message
              is one of the checks the breakage should trip (the export's assert
              messages, or the signature's dtype check) -- never a deeper op failing;
  python   -> TypeError / ValueError from the tf.function binding layer in the calling
              process (missing / extra / positional arguments, None, Python lists or
              numpy arrays that do not fit the spec, restored functions called with
              tensors that do not match their input signature): no graph runs.
"""

import gc
import os
import resource

import gin
import numpy as np
import pytest
import tensorflow as tf

from asvae_tf import errors
from asvae_tf import export
from asvae_tf import registry
from conftest import tiny_asvae

H, W, C, D = 4, 4, 1, 3
LIMITS = dict(
  max_num_samples=50, max_importance_samples=100, max_batch_size=40, max_log_likelihood_images=20
)
NUM_REQUESTS = 1200  # per fuzz round; the test runs a warm-up round and a measured round
INT32_MAX, INT32_MIN = 2**31 - 1, -(2**31)
SIGNATURE_ARGS = {
  "encode": ("images", "seed"),
  "serving_default": ("images", "seed"),
  "reconstruct": ("images", "seed"),
  "log_likelihood": ("images", "num_importance_samples", "seed"),
  "decode": ("z",),
  "sample": ("num_samples", "seed"),
}
BAD_DTYPES = (tf.float64, tf.float16, tf.bfloat16, tf.int32, tf.int64, tf.uint8, tf.bool)
BAD_INT_DTYPES = (tf.int64, tf.int16, tf.uint8, tf.float32, tf.float64, tf.bool)
DTYPE_MSG = "was expected to be a"  # the signature's own dtype check


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  mdl = tiny_asvae()
  gin.clear_config()
  registry.parse(gin_params=[f"serving_limits.{k} = {v}" for k, v in LIMITS.items()])
  try:
    export_dir = str(tmp_path_factory.mktemp("fuzz") / "sm")
    export.export(mdl, export_dir, gin.config_str(), step=0)
  finally:
    gin.clear_config()
  return export_dir, tf.saved_model.load(export_dir)


def _rss_bytes():
  with open("/proc/self/statm") as f:
    return int(f.read().split()[1]) * resource.getpagesize()


class Request:
  """One call: signature name, keyword inputs, predicted outcome and accepted messages."""

  def __init__(self, name, kwargs):
    self.name, self.kwargs = name, kwargs
    self.outcome, self.needles, self.breaks = "valid", [], []
    self.call = None  # None: m.signatures[name](**kwargs); else a callable(m)

  def broken(self, what, needle, outcome="invalid"):
    self.breaks.append(what)
    if outcome == "python" or self.outcome != "python":
      self.outcome = outcome
    self.needles.append(needle)


class Fuzzer:
  """Seeded generator of requests (see the module docstring)."""

  def __init__(self, seed):
    self.rs = np.random.RandomState(seed)

  def pick(self, seq):
    return seq[self.rs.randint(len(seq))]

  def batch(self, limit):
    return int(self.pick([0, 1, 1, 2, 3, 5, 8, limit - 1, limit]))

  def images(self, n):
    x = self.rs.uniform(size=(n, H, W, C)).astype(np.float32)
    if self.rs.rand() < 0.3:
      x = np.round(x)  # binary pixels, exactly 0 and 1
    return x

  def valid(self, name):
    nmax = LIMITS["max_log_likelihood_images" if name == "log_likelihood" else "max_batch_size"]
    kw = {"seed": self.rs.randint(INT32_MIN, INT32_MAX, size=2, dtype=np.int64).astype(np.int32)}
    if name == "decode":
      scale = self.pick([1.0, 1.0, 1e3, 1e30, 3e38])
      z = self.rs.uniform(-1, 1, size=(self.batch(nmax), D)) * scale
      kw = {"z": z.astype(np.float32)}
    elif name == "sample":
      kw["num_samples"] = np.int32(self.pick([1, 2, 7, LIMITS["max_num_samples"]]))
    else:
      kw["images"] = self.images(self.batch(nmax))
      if name == "log_likelihood":
        k = self.pick([1, 2, 64, 65, LIMITS["max_importance_samples"]])
        kw["num_importance_samples"] = np.int32(k)
    return kw

  def break_images(self, req, limit_name):
    x = req.kwargs["images"]
    kind = self.pick(["rank", "dims", "batch", "nan", "inf", "-inf", "neg", "gt1", "dtype"])
    shape_msg = f"images must be float32 [N, {H}, {W}, {C}]"
    if kind == "rank":
      rank = self.pick([0, 1, 2, 3, 5, 6])
      req.kwargs["images"] = self.rs.uniform(size=self.rs.randint(1, 4, size=rank)).astype("f")
      req.broken("images rank", shape_msg)
    elif kind == "dims":
      shape = [max(1, len(x))] + [H, W, C]
      i = self.rs.randint(1, 4)
      shape[i] = self.pick([0, 1, 2, 3, 5, 28]) if shape[i] != 1 else self.pick([0, 2, 3])
      req.kwargs["images"] = self.rs.uniform(size=shape).astype(np.float32)
      req.broken("images dims", shape_msg)
    elif kind == "batch":
      n = LIMITS[limit_name] + self.pick([1, 2, self.rs.randint(3, 2 * LIMITS[limit_name])])
      req.kwargs["images"] = self.images(n)
      req.broken("images batch", f"(gin serving_limits.{limit_name}); got")
    elif kind == "dtype":
      dtype = self.pick(BAD_DTYPES + (tf.string,))
      if dtype == tf.string:
        req.kwargs["images"] = tf.fill(tf.shape(x), "0.5")
      else:
        req.kwargs["images"] = tf.cast(x, dtype)
      req.broken(f"images {dtype.name}", DTYPE_MSG)
    else:  # bad values: at least one image needed
      x = x if len(x) else self.images(1)
      x = x.copy()
      value = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "neg": -1e-3, "gt1": 1.001}[kind]
      flat = x.reshape(-1)
      flat[self.rs.randint(flat.size, size=self.rs.randint(1, 4))] = value
      req.kwargs["images"] = x
      req.broken(f"images {kind}", "with values in [0, 1]; got a value")

  def break_z(self, req):
    z = req.kwargs["z"]
    kind = self.pick(["rank", "dims", "batch", "nan", "inf", "dtype"])
    msg = f"z must be finite float32 [N, {D}]"
    if kind == "rank":
      shape = self.rs.randint(1, 4, size=self.pick([0, 1, 3, 4]))
      req.kwargs["z"] = self.rs.normal(size=shape).astype(np.float32)
    elif kind == "dims":
      req.kwargs["z"] = self.rs.normal(size=(max(1, len(z)), self.pick([0, 1, 2, 4, 32])))
      req.kwargs["z"] = req.kwargs["z"].astype(np.float32)
    elif kind == "batch":
      n = LIMITS["max_batch_size"] + self.pick([1, self.rs.randint(2, 100)])
      req.kwargs["z"] = self.rs.normal(size=(n, D)).astype(np.float32)
      msg = "(gin serving_limits.max_batch_size); got"
    elif kind == "dtype":
      dtype = self.pick(BAD_DTYPES)
      req.kwargs["z"], msg = tf.cast(z, dtype), DTYPE_MSG
    else:
      z = self.rs.normal(size=(max(1, len(z)), D)).astype(np.float32)
      z[self.rs.randint(len(z)), self.rs.randint(D)] = np.nan if kind == "nan" else -np.inf
      req.kwargs["z"] = z
    req.broken(f"z {kind}", msg)

  def break_count(self, req, key, limit_name):
    kind = self.pick(["zero", "negative", "above", "shape", "dtype"])
    msg = f"{key} must be an int32 scalar >= 1 and <= {LIMITS[limit_name]}"
    if kind == "zero":
      req.kwargs[key] = np.int32(0)
    elif kind == "negative":
      req.kwargs[key] = np.int32(self.pick([-1, -64, INT32_MIN, self.rs.randint(INT32_MIN, 0)]))
    elif kind == "above":
      v = self.pick([1, 2, INT32_MAX - LIMITS[limit_name], self.rs.randint(1, 10**9)])
      req.kwargs[key] = np.int32(LIMITS[limit_name] + v)
    elif kind == "shape":
      shape = self.pick([[0], [1], [2], [2, 2], [1, 1]])
      req.kwargs[key] = tf.fill(shape, tf.constant(3, tf.int32))
    else:
      dtype = self.pick(BAD_INT_DTYPES + (tf.string,))
      value = tf.constant("3") if dtype == tf.string else tf.cast(3, dtype)
      req.kwargs[key], msg = value, DTYPE_MSG
    req.broken(f"{key} {kind}", msg)

  def break_seed(self, req):
    if self.rs.rand() < 0.6:
      shape = self.pick([[], [0], [1], [3], [4], [2, 2], [1, 2], [2, 1]])
      req.kwargs["seed"] = tf.constant(self.rs.randint(-5, 5, size=shape), tf.int32)
      req.broken(f"seed shape {shape}", "seed must have shape [2]")
    else:
      dtype = self.pick(BAD_INT_DTYPES)
      req.kwargs["seed"] = tf.cast(req.kwargs["seed"], dtype)
      req.broken(f"seed {dtype.name}", DTYPE_MSG)

  def break_structure(self, req):
    """A call the tf.function binding layer rejects in the calling process."""
    name, args = req.name, SIGNATURE_ARGS[req.name]
    kw = {k: tf.constant(v) for k, v in req.kwargs.items()}
    kind = self.pick(["missing", "extra", "positional", "none", "list", "numpy", "restored"])
    if kind == "positional" and len(args) == 1:
      kind = "missing"  # one positional input binds like its keyword
    if kind == "missing":
      kw.pop(self.pick(args))
      req.call = lambda m: m.signatures[name](**kw)
    elif kind == "extra":
      kw[self.pick(["foo", "image", "seeds", "x"])] = tf.constant(1)
      req.call = lambda m: m.signatures[name](**kw)
    elif kind == "positional":
      req.call = lambda m: m.signatures[name](*[kw[k] for k in args])
    elif kind == "none":
      kw[self.pick(args)] = None
      req.call = lambda m: m.signatures[name](**kw)
    elif kind in ("list", "numpy"):  # converted against the spec: the shape must fit
      key = self.pick(args)
      bad = self.rs.uniform(size=self.pick([[2, 5], [1, 1, 1], [3], [2, 2, 2, 2, 2]]))
      kw[key] = bad.tolist() if kind == "list" else bad.astype(np.float32)
      req.call = lambda m: m.signatures[name](**kw)
    else:  # restored tf.function: the full input signature is checked in Python
      fn = "encode" if name == "serving_default" else name
      key = self.pick(args)
      kw[key] = tf.zeros([2, 3, 4, 5]) if key != "seed" else tf.zeros([2], tf.int64)
      req.call = lambda m: getattr(m, fn)(*[kw[k] for k in args])
    req.broken(f"python {kind}", "", outcome="python")

  def request(self):
    name = self.pick(list(SIGNATURE_ARGS))
    req = Request(name, self.valid(name))
    r = self.rs.rand()
    if r < 0.3:  # valid: through the signature, or (sometimes) the restored function
      if self.rs.rand() < 0.2 and name != "serving_default":
        values = [tf.constant(req.kwargs[k]) for k in SIGNATURE_ARGS[name]]
        req.call = lambda m: getattr(m, name)(*values)
      return req
    if r < 0.4:
      self.break_structure(req)
      return req
    parts = list(SIGNATURE_ARGS[name])  # one or (sometimes) two different inputs broken
    for part in self.rs.permutation(parts)[: 1 if self.rs.rand() < 0.8 else 2]:
      self.break_one(req, part)
    return req

  def break_one(self, req, part):
    if part == "images":
      limit = "max_log_likelihood_images" if req.name == "log_likelihood" else "max_batch_size"
      self.break_images(req, limit)
    elif part == "z":
      self.break_z(req)
    elif part == "seed":
      self.break_seed(req)
    elif part == "num_samples":
      self.break_count(req, part, "max_num_samples")
    else:
      self.break_count(req, part, "max_importance_samples")


def _check_answer(req, out):
  """'' if `out` is a valid answer to the valid request `req`, else what is wrong."""
  out = {k: v.numpy() for k, v in out.items()}
  kw = req.kwargs
  if req.name == "sample":
    n = int(kw["num_samples"])
  else:
    n = len(kw["z"] if req.name == "decode" else kw["images"])
  want = {
    "encode": {"z": (n, D), "posterior_mean": (n, D)},
    "serving_default": {"z": (n, D), "posterior_mean": (n, D)},
    "reconstruct": {"images": (n, H, W, C)},
    "decode": {"images": (n, H, W, C)},
    "sample": {"images": (n, H, W, C), "z": (n, D)},
    "log_likelihood": {"log_likelihood": (n,)},
  }[req.name]
  if {k: v.shape for k, v in out.items()} != want:
    return f"shapes { ({k: v.shape for k, v in out.items()}) } != {want}"
  # Codes near the float32 maximum overflow the decoder's matmuls (inf - inf = NaN):
  # README "Exported SavedModel"; N(0, I) codes are below 10 in magnitude.
  overflow = req.name == "decode" and n and np.abs(kw["z"]).max() > 1e30
  for k, v in out.items():
    if v.dtype != np.float32 or not (overflow or np.all(np.isfinite(v))):
      return f"{k}: {v.dtype}, not all finite"
    if k == "images" and not (overflow or (np.all(v >= 0) and np.all(v <= 1))):
      return "images outside [0, 1]"
  return ""


def run_fuzz(m, seed, num_requests):
  """Sends the requests; returns ({signature: {outcome: count}}, [failures])."""
  fuzzer = Fuzzer(seed)
  stats, failures = {}, []
  for i in range(num_requests):
    req = fuzzer.request()
    counts = stats.setdefault(req.name, {"valid": 0, "invalid": 0, "python": 0})
    # All inputs as tf.Tensors, as a server receives them (with any non-tensor input, the
    # Python binding layer would also check the tensors' shapes against the spec).
    kwargs = {k: tf.constant(v) for k, v in req.kwargs.items()}
    call = req.call or (lambda m: m.signatures[req.name](**kwargs))
    try:
      out = call(m)
      got, problem = "valid", _check_answer(req, out) if req.outcome == "valid" else ""
    except tf.errors.InvalidArgumentError as e:
      got, msg = "invalid", str(e)
      problem = "" if any(n in msg for n in req.needles) else f"unexpected message: {msg[-600:]}"
    except (TypeError, ValueError) as e:
      got, problem = "python", ""
      msg = str(e)
    if got != req.outcome:
      problem = f"expected {req.outcome}, got {got}"
    if problem:
      failures.append((i, req.name, req.breaks, problem))
    counts[got] += 1
  return stats, failures


def test_hostile_requests_never_get_past_the_checks_and_do_not_leak(served, capsys):
  _, m = served
  warm_stats, warm_failures = run_fuzz(m, seed=100, num_requests=NUM_REQUESTS)
  gc.collect()
  rss_warm = _rss_bytes()
  stats, failures = run_fuzz(m, seed=101, num_requests=NUM_REQUESTS)
  gc.collect()
  rss_after = _rss_bytes()
  with capsys.disabled():
    print(f"\nserving fuzz, {NUM_REQUESTS} requests (seed 101) after a warm-up of as many:")
    for name, counts in sorted(stats.items()):
      print(f"  {name:16s} {sum(counts.values()):4d} requests: {counts}")
    warm = {k: sum(c[k] for c in warm_stats.values()) for k in ("valid", "invalid", "python")}
    print(f"  (warm-up round, seed 100: {warm})")
    print(f"  RSS after warm-up {rss_warm / 2**20:.1f} MiB, after fuzz {rss_after / 2**20:.1f} MiB")
  assert not warm_failures + failures, (warm_failures + failures)[:10]
  assert sum(sum(c.values()) for c in stats.values()) == NUM_REQUESTS
  for name, counts in stats.items():  # every signature saw every kind of outcome
    assert min(counts.values()) >= 10, (name, counts)
  assert rss_after <= 1.10 * rss_warm, (rss_warm, rss_after)


def _call(m, name, **kwargs):
  kwargs = {
    k: tf.constant(v, tf.int32 if k != "images" and k != "z" else None) for k, v in kwargs.items()
  }
  return m.signatures[name](**kwargs)


@pytest.mark.parametrize(
  "name,key,limit_name",
  [
    ("sample", "num_samples", "max_num_samples"),
    ("log_likelihood", "num_importance_samples", "max_importance_samples"),
    ("encode", "images", "max_batch_size"),
    ("reconstruct", "images", "max_batch_size"),
    ("decode", "z", "max_batch_size"),
    ("log_likelihood", "images", "max_log_likelihood_images"),
  ],
)
def test_limits_are_inclusive_and_named_in_the_error(served, name, key, limit_name):
  _, m = served
  limit = LIMITS[limit_name]
  base = {
    "sample": dict(num_samples=1, seed=[1, 2]),
    "log_likelihood": dict(images=np.zeros((1, H, W, C), np.float32), num_importance_samples=1),
    "encode": dict(seed=[1, 2]),
    "reconstruct": dict(seed=[1, 2]),
    "decode": {},
  }[name]
  if name == "log_likelihood":
    base["seed"] = [1, 2]

  def value(n):
    if key == "images":
      return np.full((n, H, W, C), 0.5, np.float32)
    if key == "z":
      return np.zeros((n, D), np.float32)
    return n

  out = _call(m, name, **{**base, key: value(limit)})
  first = next(iter(out.values()))
  assert first.shape[0] == (1 if name == "log_likelihood" and key != "images" else limit)
  with pytest.raises(tf.errors.InvalidArgumentError, match=f"serving_limits.{limit_name}"):
    _call(m, name, **{**base, key: value(limit + 1)})


def test_limits_are_recorded_in_the_metadata(served):
  export_dir, _ = served
  assert export.read_metadata(export_dir)["serving_limits"] == LIMITS


def test_serving_limits_defaults_gin_bindings_and_bad_values():
  gin.clear_config()
  assert export.serving_limits() == dict(
    max_num_samples=10000,
    max_importance_samples=10000,
    max_batch_size=10000,
    max_log_likelihood_images=1000,
  )
  try:
    registry.parse(gin_params=["serving_limits.max_num_samples = 7"])
    assert export.serving_limits()["max_num_samples"] == 7
    assert export.serving_limits(max_num_samples=9)["max_num_samples"] == 9
  finally:
    gin.clear_config()
  for bad in (0, -1, 2**31, 1.5, True, "10"):
    with pytest.raises(errors.ConfigError, match="serving_limits.max_batch_size"):
      export.serving_limits(max_batch_size=bad)


def test_metadata_records_the_gin_limits_of_an_unsaved_model():
  mdl = tiny_asvae()
  assert export.metadata(mdl, 0)["serving_limits"] == export.serving_limits()
  limits = export.metadata(mdl, 0, limits={"max_num_samples": 3})["serving_limits"]
  assert limits["max_num_samples"] == 3 and limits["max_batch_size"] == 10000


def test_serving_load_bench_counts_calls_and_errors(served):
  """bench/serving_load.py's load loop on the tiny export: a clean run, then a batch above
  the export's max_batch_size (40), whose encode calls all fail and are counted, not raised."""
  from bench import serving_load  # pylint: disable=g-import-not-at-top

  _, m = served
  images = np.random.RandomState(0).uniform(size=(90, H, W, C)).astype(np.float32)
  result = serving_load.run_load(m, images, threads=2, seconds=0.3, batch=10)
  assert result["errors"] == []
  rows = serving_load.summarize(result, batch=10)
  assert [r[0] for r in rows] == ["sample", "encode", "total"]
  assert min(r[1] for r in rows) >= 1 and rows[2][1] == rows[0][1] + rows[1][1]
  assert all(r[3] <= r[4] for r in rows[:2])  # p50 <= p99
  assert "| total |" in serving_load.table(rows, 10)

  result = serving_load.run_load(m, images, threads=2, seconds=0.3, batch=45)
  names = {name for name, _ in result["errors"]}
  assert names == {"encode"} and result["latencies"]["encode"] == []
  assert "images: at most 40 per request" in result["errors"][0][1]
  rows = serving_load.summarize(result, batch=45)
  assert rows[0][1] >= 1 and rows[0][2] == 0  # sample (45 <= 50) unaffected
  assert rows[1][2] == len(result["errors"]) == rows[2][2]


def test_training_records_the_serving_limits_for_a_re_export(tmp_path):
  from asvae_tf import config, gin_config, train  # pylint: disable=g-import-not-at-top
  from conftest import ROOT, TINY_MODEL  # pylint: disable=g-import-not-at-top

  gin.clear_config()
  config.parse(
    [os.path.join(ROOT, "gin", "mnist.gin")],
    TINY_MODEL + ["model.objective = 'vae'", "posterior.kind = 'gaussian'",
                  "posterior.num_flows = 0", "train.strategy = 'default'",
                  "train.num_steps = 1", "serving_limits.max_num_samples = 77"],
  )  # fmt: skip
  try:
    train.train(str(tmp_path))
  finally:
    gin.clear_config()
  assert gin_config.operative_value(str(tmp_path), "serving_limits.max_num_samples") == "77"
