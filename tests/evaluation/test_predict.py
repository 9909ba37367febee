"""evaluation/predict.py: nearest center, k-NN and class means against brute-force numpy."""
import numpy as np
import pytest
from mxnet import nd

from evaluation import predict as evaluation


def test_nearest_center_brute_force():
    rng = np.random.RandomState(0)
    f, c = rng.randn(500, 3), rng.randn(6, 3)
    ref = np.argmin(((f[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
    got = evaluation.predict_center(nd.array(f), nd.array(c)).asnumpy()
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize('k,chunk,dim', [(1, 1024, 2), (5, 64, 2), (12, 37, 2), (1, 1024, 40), (7, 50, 40)])
def test_knn_brute_force(k, chunk, dim):
    # dim 2 goes through the KD-tree, dim 40 through chunked distances
    rng = np.random.RandomState(k)
    gallery, labels = rng.randn(700, dim), rng.randint(0, 5, 700)
    queries = rng.randn(300, dim)
    d = ((queries[:, None, :] - gallery[None]) ** 2).sum(-1)
    nearest = np.argsort(d, axis=1)[:, :k]
    ref = np.array([np.argmax(np.bincount(labels[row], minlength=5)) for row in nearest])
    got = evaluation.predict_knn(nd.array(queries), nd.array(gallery), nd.array(labels), k, chunk=chunk).asnumpy()
    np.testing.assert_array_equal(got, ref)


def test_knn_k_larger_than_gallery_is_an_error():
    with pytest.raises(ValueError, match='k=4 must be between 1 and the gallery size 3'):
        evaluation.predict_knn(nd.zeros((2, 2)), nd.zeros((3, 2)), nd.zeros((3,)), 4)


def test_class_means_and_accuracy():
    f = np.array([[0., 0.], [2., 2.], [10., 0.], [0, 0]])
    y = np.array([0, 0, 1, 1])
    means = evaluation.class_means(nd.array(f), nd.array(y), 3).asnumpy()
    np.testing.assert_allclose(means, [[1, 1], [5, 0], [0, 0]])
    assert evaluation.accuracy(nd.array([0, 1, 1, 0]), nd.array(y)) == 0.5


def test_chunked_nearest_center_knn_and_class_means_match_brute_force(monkeypatch):
    # many classes: the distance and one-hot matrices are built a few query rows at a time
    monkeypatch.setattr(evaluation, 'DISTANCES', 40)
    rng = np.random.RandomState(3)
    f, c, y = rng.randn(103, 4), rng.randn(9, 4), rng.randint(0, 9, 103)
    ref = np.argmin(((f[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(evaluation.predict_center(nd.array(f), nd.array(c)).asnumpy(), ref)
    means = np.array([f[y == k].mean(0) if (y == k).any() else np.zeros(4) for k in range(9)])
    np.testing.assert_allclose(evaluation.class_means(nd.array(f), nd.array(y), 9).asnumpy(), means, rtol=1e-5,
                               atol=1e-6)
    # k-NN in 40-D (no KD-tree) against a gallery of 103: one query row at a time
    q = rng.randn(11, 40)
    g, gy = rng.randn(103, 40), rng.randint(0, 9, 103)
    nearest = np.argsort(((q[:, None, :] - g[None]) ** 2).sum(-1), axis=1)[:, :3]
    ref = np.array([np.argmax(np.bincount(gy[row], minlength=9)) for row in nearest])
    np.testing.assert_array_equal(evaluation.predict_knn(nd.array(q), nd.array(g), nd.array(gy), 3).asnumpy(), ref)
