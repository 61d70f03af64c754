"""train.intra_op_threads / train.inter_op_threads (asvae_tf/train/threads.py).

That a new process trains with other pool sizes bit-identically is checked by
tests/train_test.py::test_resume_in_new_process_is_bit_identical.
"""

import pytest
import tensorflow as tf

from asvae_tf.errors import ConfigError
from asvae_tf.train import threads


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "2"])
def test_bad_sizes_are_config_errors(value):
  with pytest.raises(ConfigError, match="train.intra_op_threads"):
    threads.apply(intra_op_threads=value)
  with pytest.raises(ConfigError, match="train.inter_op_threads"):
    threads.apply(inter_op_threads=value)


def test_other_size_after_the_runtime_started_is_a_warning_not_an_error(caplog):
  tf.constant(1.0) + 1.0  # the runtime runs (it has in any test process)
  other = tf.config.threading.get_intra_op_parallelism_threads() + 7
  assert threads.apply(intra_op_threads=other) == ["train.intra_op_threads"]
  assert f"train.intra_op_threads = {other} not applied" in caplog.text
  assert f"TF_NUM_INTRAOP_THREADS={other}" in caplog.text
  assert threads.apply(None, None) == []  # None leaves both pools alone
  # (That a fresh process applies them: tests/train_test.py, the resume in a new process.)
