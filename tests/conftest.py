"""Shared pytest setup: quiet TF logs, two logical CPUs, tiny models, real-MNIST location.

(pytest.ini puts the repository root on the import path, for `bench`.)
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tiny networks on synthetic 28x28x1 data (latent D = 4, planar K = 2), batch 8, 2 steps:
# a training run traces and steps in seconds. Tests add their own schedule bindings.
TINY_MODEL = [
  "mlp_encoder.hidden_units = (16,)",
  "mlp_decoder.hidden_units = (16,)",
  "joint_discriminator.x_units = (8,)",
  "joint_discriminator.z_units = (8,)",
  "joint_discriminator.joint_units = (8,)",
  "model.latent_dim = 4",
  "posterior.num_flows = 2",
  "dataset.name = 'synthetic'",
  "dataset.synthetic_num_examples = 64",
  "train.batch_size = 8",
  "train.num_steps = 2",
  "train.early_stopping_patience = 0",
  # The end-of-training SavedModel export (1-2 s per run) only where a test uses it.
  "train.export_saved_model = False",
]

# Real MNIST test-set files live beside the project root (never copied into it).
MNIST_DIR = os.path.join(os.path.dirname(ROOT), "shared", "data", "mnist")

import tensorflow as tf  # noqa: E402  (after TF_CPP_MIN_LOG_LEVEL)

# Two logical CPU devices so MirroredStrategy tests have 2 replicas. Must happen
# before anything initialises the TF runtime.
_CPUS = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_CPUS[0], [tf.config.LogicalDeviceConfiguration()] * 2)


def tiny_asvae(objective="asvae", kind="planar", dtype="float32", **kwargs):
  """A built ASVAE on 4x4x1 images (D = 3, K = 2 flows, 8/6-unit networks) in `dtype`.

  kwargs go to model.ASVAE (likelihood, ratio_estimator, ...). float64 is for exact
  comparisons: the Keras dtype policy is set while building and restored after.
  """
  import gin  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  from asvae_tf import model as model_lib, nets  # pylint: disable=g-import-not-at-top

  gin.clear_config()
  gin.bind_parameter("posterior.kind", kind)
  gin.bind_parameter("posterior.num_flows", 2 if kind != "gaussian" else 0)
  old = keras.config.dtype_policy()
  keras.config.set_dtype_policy(dtype)
  try:
    mdl = model_lib.ASVAE(
      (4, 4, 1),
      latent_dim=3,
      objective=objective,
      encoder=lambda name: nets.MLPEncoder(hidden_units=(8,), name=name),
      decoder=lambda output_shape, name: nets.MLPDecoder(
        output_shape, hidden_units=(8,), name=name
      ),
      discriminator=lambda name: nets.JointDiscriminator((6,), (6,), (6,), name=name),
      **kwargs,
    )
    mdl.build_all()
  finally:
    keras.config.set_dtype_policy(old)
    gin.clear_config()
  return mdl


def idle_checkpoint_keys(gin_files, bindings, image_shape=(28, 28, 1)):
  """Checkpoint keys of the model's `idle_variables` (weights that never train by
  construction) for the model the gin files + bindings configure."""
  import gin  # pylint: disable=g-import-not-at-top
  from asvae_tf import config, model as model_lib  # pylint: disable=g-import-not-at-top

  gin.clear_config()
  config.parse(list(gin_files), list(bindings))
  try:
    mdl = model_lib.build_model(image_shape=image_shape)
    mdl.build_all()
  finally:
    gin.clear_config()
  idle = {id(v) for v in mdl.idle_variables}
  return {
    f"discriminator_optimizer/_trainable_variables/{i}/.ATTRIBUTES/VARIABLE_VALUE"
    for i, v in enumerate(mdl.discriminator_variables)
    if id(v) in idle
  }


def pytest_collection_modifyitems(config, items):
  """Tests marked `slow(seconds)` run first, balanced between the collection's two halves.

  pytest-xdist's `--dist worksteal` (pytest.ini) hands each of the 2 workers a contiguous
  half of the collection and later steals from the tails. In file order the longest tests
  (tens of seconds each) can end up last on one worker while the other idles. So each half
  starts with its share of the slow tests, longest first, dealt to the half with less slow
  time so far, and the run ends on short tests. Order only: every test still runs.
  (Marked tests use no module-scoped fixture, so moving them sets up nothing twice.)
  """
  del config
  slow = sorted(
    (item for item in items if item.get_closest_marker("slow")),
    key=lambda item: -item.get_closest_marker("slow").args[0],
  )
  if not slow:
    return
  rest = [item for item in items if not item.get_closest_marker("slow")]
  halves, load = ([], []), [0.0, 0.0]
  for item in slow:
    i = 0 if load[0] <= load[1] else 1
    halves[i].append(item)
    load[i] += item.get_closest_marker("slow").args[0]
  head = max(0, len(items) // 2 - len(halves[0]))
  items[:] = halves[0] + rest[:head] + halves[1] + rest[head:]
