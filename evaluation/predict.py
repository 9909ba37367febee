"""Evaluation: features of a set, and predictions by softmax, nearest center and k-NN, in memory
set by the block sizes, not by the set's size or the number of classes."""
from devices import compat  # noqa: F401  (before mxnet)

import numpy as np
from mxnet import nd

BLOCK = 10000        # images predicted at once: MNIST's whole test set
REFERENCE = 60000    # training images whose features k-NN votes among and means are taken of: all of MNIST's
DISTANCES = 1 << 24  # distances computed at once (64 MB of float32): queries per chunk against many centers
KDTREE_MAX_DIM = 16  # beyond this a KD-tree is no faster than brute force


def feature_blocks(net, x, block=BLOCK, batch_size=1000, scores=True):
    """(class scores, features) of the images of ``x`` (an NDArray, or imagesets.images.InMemory or
    Streamed), block after block of at most ``block`` images in order, each the forward passes of
    ``batch_size`` images concatenated on x's context. ``scores`` False: the argmax of the scores instead,
    taken batch by batch (a block of scores is block x classes numbers: 4 GB at 100,000 classes)."""
    chunks = x.chunks(batch_size) if hasattr(x, 'chunks') else (
        x[start:start + batch_size] for start in range(0, x.shape[0], batch_size))
    outs, features, count = [], [], 0
    for chunk in chunks:
        s, f = net(chunk)
        # Python runs a signal handler only between MXNet's waits: waiting for each batch lets
        # Ctrl-C or SIGTERM stop an evaluation within a batch, not after the whole set.
        outs.append(s if scores else predict_softmax(s))
        outs[-1].wait_to_read()  # (it needs f: this batch done, its class scores freed, before the next)
        features.append(f)
        count += f.shape[0]
        if count >= block:
            yield nd.concat(*outs, dim=0), nd.concat(*features, dim=0)
            outs, features, count = [], [], 0
    if outs:
        yield nd.concat(*outs, dim=0), nd.concat(*features, dim=0)


def reference_sample(n, seed):
    """The training images whose features k-NN votes among (and a stage keeps each epoch): every one of a
    set of up to REFERENCE images, else a seeded sample of REFERENCE, which holds the images the pictures
    draw (pictures.plot_sample: the same permutation, cut shorter)."""
    from evaluation import pictures
    return pictures.plot_sample(n, seed, REFERENCE)


def features_of(net, x, keep):
    """The features of the images ``keep`` (sorted indices) of ``x``, as numpy, block by block."""
    kept, start = [], 0
    for _, features in feature_blocks(net, x, scores=False):
        kept += _kept(features, keep, start)
        start += features.shape[0]
    return np.concatenate(kept)


def _kept(features, keep, start):
    """[the rows of ``features`` (images ``start`` on) that ``keep`` names, as numpy] or []."""
    inside = keep[(keep >= start) & (keep < start + features.shape[0])] - start
    return [nd.take(features, nd.array(inside, ctx=features.context, dtype='int32')).asnumpy()] if len(inside) else []


def forward_all(net, x, batch_size=1000):
    """(the softmax predictions, the features) of every image of ``x``, concatenated on x's context: for
    sets whose features are bounded (a sample, a pair list), not for a whole training set. No scores: at
    100,000 classes those of 10,000 images would take 4 GB."""
    blocks = list(feature_blocks(net, x, block=x.shape[0] or 1, batch_size=batch_size, scores=False))
    if len(blocks) == 1:
        return blocks[0]
    return nd.concat(*[p for p, _ in blocks], dim=0), nd.concat(*[f for _, f in blocks], dim=0)


def accuracies(net, x, labels, methods, centers=None, gallery=None, gallery_labels=None, k=10, keep=None):
    """({method: accuracy} of ``methods`` ('softmax', 'center', 'knn') on the images ``x`` with
    ``labels`` (an NDArray), and the features of the images ``keep`` (sorted indices, or None) as numpy),
    block by block: no more than BLOCK images' features are held at once. 'center' needs ``centers``,
    'knn' a ``gallery`` of features with ``gallery_labels``."""
    correct, kept, start = dict.fromkeys(methods, 0), [], 0
    for by_softmax, features in feature_blocks(net, x, scores=False):
        n = features.shape[0]
        y = labels[start:start + n]
        for method in methods:
            if method == 'softmax':
                pred = by_softmax
            elif method == 'center':
                pred = predict_center(features, centers)
            else:
                pred = predict_knn(features, gallery, gallery_labels, k)
            correct[method] += int((pred == y.astype(pred.dtype)).sum().asscalar())
        if keep is not None:
            kept += _kept(features, keep, start)
        start += n
    found = {m: c / float(labels.shape[0]) for m, c in correct.items()}
    return found, (np.concatenate(kept) if kept else None)


def _sq_dists(a, b):
    """Squared Euclidean distances between rows of a (n, d) and b (m, d): (n, m)."""
    return (nd.sum(a * a, axis=1, keepdims=True) - 2 * nd.dot(a, b, transpose_b=True)
            + nd.sum(b * b, axis=1).reshape((1, -1)))


def _rows(columns):
    """How many query rows keep a matrix of ``columns`` columns (distances, one-hot labels) under DISTANCES."""
    return max(1, DISTANCES // max(columns, 1))


def predict_softmax(scores):
    return nd.argmax(scores, axis=1)


def predict_center(features, centers):
    """Label of the nearest center (Euclidean), in chunks of queries that keep the distance matrix
    under DISTANCES entries however many centers there are."""
    centers = centers.as_in_context(features.context)
    rows, nearest = _rows(centers.shape[0]), []
    for s in range(0, features.shape[0], rows):
        nearest.append(nd.argmin(_sq_dists(features[s:s + rows], centers), axis=1))
        # MXNet queues operations without waiting: unawaited, every chunk's distance matrix would be
        # alive at once (3 GB for 10,000 queries against 50,000 centers), the bound undone.
        nearest[-1].wait_to_read()
    return nd.concat(*nearest, dim=0)


def predict_knn(features, gallery, gallery_labels, k, chunk=None):
    """Majority label of the k nearest gallery features (ties: the smaller label).

    On the CPU with low-dimensional features (the 2-D maps of the paper) a
    KD-tree finds the neighbours, far faster than sorting the full distance
    matrix (bench/speed.py times it). Elsewhere (a GPU, wide features)
    distances are computed in chunks of ``chunk`` queries (default: as many as
    keep the chunk's distances under DISTANCES), so memory stays at
    chunk x len(gallery). The vote counts the k labels of each query, whatever
    the number of classes.
    """
    if not 1 <= k <= gallery.shape[0]:
        raise ValueError('k=%d must be between 1 and the gallery size %d' % (k, gallery.shape[0]))
    if features.context.device_type == 'cpu' and features.shape[1] <= KDTREE_MAX_DIM:
        from scipy.spatial import cKDTree
        _, nearest = cKDTree(gallery.asnumpy()).query(features.asnumpy(), k=k, workers=-1)
        nearest = nearest.reshape(len(nearest), k)
    else:
        chunk = chunk or _rows(gallery.shape[0])
        nearest = np.concatenate([nd.topk(_sq_dists(features[start:start + chunk], gallery), axis=1, k=k,
                                          ret_typ='indices', is_ascend=True).asnumpy().astype(np.int64)
                                  for start in range(0, features.shape[0], chunk)])
    labels = gallery_labels.asnumpy().astype(np.int64)[nearest]                      # (n, k)
    return nd.array(majority(labels), ctx=features.context)


def majority(labels):
    """The most frequent label of each row of ``labels`` (n, k); among equally frequent ones the smallest."""
    votes = (labels[:, :, None] == labels[:, None, :]).sum(axis=2)                 # each neighbour's label's votes
    best = np.lexsort((labels, -votes), axis=-1)[:, 0]                              # most votes, then smallest
    return labels[np.arange(len(labels)), best]


def accuracy(pred, labels):
    """The share of correct predictions, exactly: 9,920 of 10,000 is 0.992, not float32's 0.99199998."""
    return float((pred == labels.astype(pred.dtype)).sum().asscalar()) / labels.shape[0]


def class_means(features, labels, num_classes):
    """Mean feature of each class (zeros for a class with no sample): (K, d). The one-hot matrix of the
    labels is built for chunks of rows that keep it under DISTANCES entries, whatever the classes."""
    rows = _rows(num_classes)
    sums = counts = 0
    for start in range(0, features.shape[0], rows):
        onehot = nd.one_hot(labels[start:start + rows], num_classes)                  # (rows, K)
        sums = sums + nd.dot(onehot, features[start:start + rows], transpose_a=True)  # (K, d)
        counts = counts + onehot.sum(axis=0)
        sums.wait_to_read()  # one chunk's one-hot matrix alive at a time (see predict_center)
    return sums / nd.maximum(counts, 1).reshape((-1, 1))
