"""Evaluation: features of a whole set, and predictions by softmax, nearest center and k-NN."""
import compat  # noqa: F401

import numpy as np
from mxnet import nd


def forward_all(net, x, batch_size=1000):
    """Class scores and features of every image of ``x`` (an NDArray, or images.InMemory/Streamed),
    concatenated on x's context."""
    scores, features = [], []
    chunks = x.chunks(batch_size) if hasattr(x, 'chunks') else (
        x[start:start + batch_size] for start in range(0, x.shape[0], batch_size))
    for chunk in chunks:
        s, f = net(chunk)
        # Python runs a signal handler only between MXNet's waits: waiting for each batch lets
        # Ctrl-C or SIGTERM stop --compare within a batch, not after the whole set (minutes on a slow CPU).
        f.wait_to_read()
        scores.append(s)
        features.append(f)
    return nd.concat(*scores, dim=0), nd.concat(*features, dim=0)


KDTREE_MAX_DIM = 16  # beyond this a KD-tree is no faster than brute force


def _sq_dists(a, b):
    """Squared Euclidean distances between rows of a (n, d) and b (m, d): (n, m)."""
    return (nd.sum(a * a, axis=1, keepdims=True) - 2 * nd.dot(a, b, transpose_b=True)
            + nd.sum(b * b, axis=1).reshape((1, -1)))


def predict_softmax(scores):
    return nd.argmax(scores, axis=1)


def predict_center(features, centers):
    """Label of the nearest center (Euclidean)."""
    return nd.argmin(_sq_dists(features, centers.as_in_context(features.context)), axis=1)


def predict_knn(features, gallery, gallery_labels, k, num_classes, chunk=1024):
    """Majority label of the k nearest gallery features (ties: the smaller label).

    On the CPU with low-dimensional features (the 2-D maps of the paper) a
    KD-tree finds the neighbours, far faster than sorting the full distance
    matrix (bench/speed.py times it). Elsewhere (a GPU, wide features)
    distances are computed in chunks of ``chunk`` queries, so memory stays at
    chunk x len(gallery).
    """
    if not 1 <= k <= gallery.shape[0]:
        raise ValueError('k=%d must be between 1 and the gallery size %d' % (k, gallery.shape[0]))
    if features.context.device_type == 'cpu' and features.shape[1] <= KDTREE_MAX_DIM:
        from scipy.spatial import cKDTree
        _, nearest = cKDTree(gallery.asnumpy()).query(features.asnumpy(), k=k, workers=-1)
        nearest = nearest.reshape(len(nearest), k)
        labels = gallery_labels.asnumpy().astype(np.int64)[nearest]                  # (n, k)
        votes = (labels[:, :, None] == np.arange(num_classes)).sum(axis=1)           # (n, classes)
        return nd.array(votes.argmax(axis=1), ctx=features.context)                 # first max: smaller label
    preds = []
    for start in range(0, features.shape[0], chunk):
        d = _sq_dists(features[start:start + chunk], gallery)
        nearest = nd.topk(d, axis=1, k=k, ret_typ='indices', is_ascend=True)
        votes = nd.one_hot(nd.take(gallery_labels, nearest), num_classes).sum(axis=1)
        preds.append(nd.argmax(votes, axis=1))
    return nd.concat(*preds, dim=0)


def accuracy(pred, labels):
    """The share of correct predictions, exactly: 9,920 of 10,000 is 0.992, not float32's 0.99199998."""
    return float((pred == labels.astype(pred.dtype)).sum().asscalar()) / labels.shape[0]


def class_means(features, labels, num_classes):
    """Mean feature of each class (zeros for a class with no sample): (K, d)."""
    onehot = nd.one_hot(labels, num_classes)                       # (N, K)
    sums = nd.dot(onehot, features, transpose_a=True)              # (K, d)
    counts = nd.maximum(onehot.sum(axis=0), 1).reshape((-1, 1))
    return sums / counts
