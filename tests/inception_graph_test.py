"""Comparable Inception metrics (issue 14 item 7): IS / FID through a GraphDef with the
2015 TF Inception graph's tensor names (tests/tiny_inception.py writes a tiny one),
against NumPy; TTUR reference statistics; bad graph / statistics files."""

import numpy as np
import pytest

from asvae_tf import errors
from asvae_tf.evaluation import feature_nets
from asvae_tf.evaluation import inception_graph
from asvae_tf.evaluation import metrics
import tiny_inception


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
  path = tmp_path_factory.mktemp("inception") / inception_graph.GRAPH_FILE
  return str(path), tiny_inception.write_graph(str(path))


def _images(n, channels, seed, size=tiny_inception.SIZE):
  return np.random.RandomState(seed).uniform(size=(n, size, size, channels)).astype(np.float32)


@pytest.mark.parametrize("channels", [3, 1])
def test_graph_features_and_probabilities_match_numpy(graph, channels):
  path, weights = graph
  net = inception_graph.InceptionGraph(path, batch_size=4)  # batches of 4, last one of 2
  assert net.input_name == "ExpandDims:0" and net.feature_dim == tiny_inception.FEATURES
  x = _images(10, channels, seed=1)
  probs, features = net.predict(x)
  ref_probs, ref_features = tiny_inception.reference(x, weights)
  np.testing.assert_allclose(features, ref_features, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(probs, ref_probs, rtol=1e-5, atol=1e-6)
  # improved-gan's softmax(pool_3 W) leaves out the graph's bias, and so do we.
  with_bias, _ = tiny_inception.reference(x, weights, with_bias=True)
  assert not np.allclose(probs, with_bias, atol=1e-3)


def test_inception_score_and_fid_through_the_graph_match_numpy(graph, tmp_path):
  path, weights = graph
  generated, real = _images(12, 3, seed=2), _images(9, 3, seed=3) ** 2
  gen_probs, gen_features = tiny_inception.reference(generated, weights)
  real_probs, real_features = tiny_inception.reference(real, weights)
  net = inception_graph.InceptionGraph(path)
  score, std, real_score, fid = feature_nets.sample_quality(net, generated, real, 3)
  assert (score, std) == pytest.approx(metrics.inception_score(gen_probs, 3), rel=1e-5)
  assert real_score == pytest.approx(metrics.inception_score(real_probs, 3)[0], rel=1e-5)
  gen_stats = gen_features.mean(0), np.cov(gen_features, rowvar=False)
  real_stats = real_features.mean(0), np.cov(real_features, rowvar=False)
  expected = metrics.frechet_distance(*gen_stats, *real_stats)
  assert expected > 1e-3 and fid == pytest.approx(expected, rel=1e-4, abs=1e-6)
  # Against TTUR-format reference statistics instead of the real images.
  ref = tiny_inception.write_stats(
    tmp_path / "stats.npz", np.random.RandomState(4).normal(size=(40, 5))
  )
  net = inception_graph.InceptionGraph(path, str(tmp_path / "stats.npz"))
  assert net.provenance["fid_reference"] == str(tmp_path / "stats.npz")
  *_, fid_ref = feature_nets.sample_quality(net, generated, real, 3)
  expected = metrics.frechet_distance(*gen_stats, *ref)
  assert fid_ref == pytest.approx(expected, rel=1e-4) and abs(fid_ref - fid) > 1e-3


def test_graph_without_expand_dims_is_fed_at_mul_with_the_graph_preprocessing(tmp_path):
  path = str(tmp_path / "mul.pb")
  weights = tiny_inception.write_graph(path, expand_dims=False, size=16, seed=5)
  net = inception_graph.InceptionGraph(path)
  assert net.input_name == "Mul:0"
  x = _images(3, 3, seed=6, size=16)  # the graph's size: the resize is the identity
  probs, features = net.predict(x)
  ref_probs, ref_features = tiny_inception.reference(x, weights)
  np.testing.assert_allclose(features, ref_features, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(probs, ref_probs, rtol=1e-5, atol=1e-6)
  constant = np.full((2, 5, 7, 3), 0.6, np.float32)  # other sizes are resized to 16x16
  np.testing.assert_allclose(
    net.predict(constant)[1], tiny_inception.reference(constant[:, :1, :1], weights)[1], atol=1e-5
  )


def test_labels_say_which_network_is_comparable(graph):
  net = inception_graph.InceptionGraph(graph[0])
  assert net.comparable and net.provenance["inception_comparable"] is True
  assert not feature_nets.InceptionNet.comparable
  labels = inception_graph.table_labels(net.provenance)
  assert labels == (
    "Inception Score (2015 TF Inception graph: comparable)",
    "FID (2015 TF Inception graph: comparable; vs the evaluated split)",
  )
  keras_labels = inception_graph.table_labels({"inception_comparable": False})
  assert "NOT comparable" in keras_labels[0] and "NOT comparable" in keras_labels[1]


def _write(path, content):
  with open(path, "wb") as f:
    f.write(content)
  return str(path)


def _npz(path, **arrays):
  np.savez(path, **arrays)
  return str(path)


def test_bad_graph_and_statistics_files_are_one_line_errors(graph, tmp_path):
  path, _ = graph
  cases = [
    (lambda: inception_graph.InceptionGraph(str(tmp_path / "no.pb")), FileNotFoundError, "not found"),
    (lambda: inception_graph.InceptionGraph(_write(tmp_path / "g.pb", b"\xff\x01junk")),
     errors.ConfigError, "not a TensorFlow GraphDef"),
    (lambda: inception_graph.InceptionGraph(_write(tmp_path / "e.pb", b"")),
     errors.ConfigError, "has no pool_3"),
    (lambda: inception_graph.make_inception("w.h5", path, None), errors.ConfigError, "not both"),
    (lambda: inception_graph.make_inception(None, None, "s.npz"), errors.ConfigError,
     "needs evaluate.inception_graph"),
    (lambda: inception_graph.InceptionGraph(path, str(tmp_path / "none.npz")),
     FileNotFoundError, "FID reference statistics file not found"),
    (lambda: inception_graph.InceptionGraph(path, _npz(tmp_path / "d.npz", mu=np.zeros(3),
                                                       sigma=np.eye(3))),
     errors.ConfigError, "3-d features; the Inception graph's pool_3 has 5"),
    (lambda: inception_graph.load_reference_stats(_npz(tmp_path / "k.npz", m=np.zeros(2))),
     errors.ConfigError, "'mu' \\[D\\] and 'sigma'"),
    (lambda: inception_graph.load_reference_stats(_npz(tmp_path / "s.npz", mu=np.zeros(2),
                                                       sigma=np.eye(3))),
     errors.ConfigError, "must be \\[D\\]"),
    (lambda: inception_graph.load_reference_stats(_npz(tmp_path / "n.npz", mu=np.full(2, np.nan),
                                                       sigma=np.eye(2))),
     errors.ConfigError, "NaN or Inf"),
    (lambda: inception_graph.load_reference_stats(_write(tmp_path / "x.npz", b"PK\x03\x04cut")),
     errors.ConfigError, "not an FID statistics .npz"),
  ]  # fmt: skip
  for make, error, needle in cases:
    with pytest.raises(error, match=needle) as info:
      make()
    assert "\n" not in errors.one_line(info.value)
  assert inception_graph.make_inception(None, None, None) is None
