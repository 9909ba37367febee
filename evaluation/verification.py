"""Open-set verification: how well features tell apart classes never trained on.

What the paper measures on LFW and YouTube Faces, on the test images of the
classes a run held out (or of every class):

* all pairs i < j, exactly: ROC AUC, equal error rate, and the true accept
  rate (TAR) at a false accept rate (FAR) of 1e-2, 1e-3 and 1e-4;
* the LFW protocol as a yardstick: a fixed, seeded list of 3,000 same-class
  and 3,000 different-class pairs in 10 folds; each fold is scored with the
  threshold that is best on the other nine;
* open-set recognition: each test image scored by its similarity to the
  nearest trained class center; AUROC of known against held-out classes.

A pair is accepted as "same class" when its score s >= threshold t, where
s is the cosine similarity or minus the Euclidean distance (higher: more alike):

    FAR(t) = #{different-class pairs with s >= t} / #different
    TAR(t) = #{same-class pairs with s >= t} / #same,   FRR = 1 - TAR
    AUC    = P(s_same > s_diff) + P(s_same = s_diff) / 2
    EER    = min over t of max(FAR(t), FRR(t))

Everything is numpy in float64; the scores of all pairs are kept sorted,
split by same/different class, and every figure is read off them with
binary searches, so nothing is sampled.
"""
import numpy as np

METRICS = ('cosine', 'euclidean')
FARS = (1e-2, 1e-3, 1e-4)
PAIR_SEED = 2016          # the LFW-style pair list is the same for every checkpoint of a dataset
FOLDS, PER_FOLD = 10, 300  # LFW View 2: 10 folds of 300 same-class and 300 different-class pairs
ROC_FARS = np.logspace(-6, 0, 121)  # where the ROC curve is drawn and stored


def similarity(a, b, metric):
    """Scores of every row of ``a`` (n, d) against every row of ``b`` (m, d): (n, m); higher is more alike."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if metric == 'cosine':
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return a @ b.T
    if metric == 'euclidean':
        d2 = (a * a).sum(1)[:, None] - 2 * (a @ b.T) + (b * b).sum(1)[None, :]
        return -np.sqrt(np.maximum(d2, 0))
    raise ValueError('unknown metric %r: choose from %s' % (metric, ', '.join(METRICS)))


def paired_similarity(a, b, metric):
    """Scores of row i of ``a`` against row i of ``b``: (n,)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if metric == 'cosine':
        return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-24)
    return -np.linalg.norm(a - b, axis=1)


def pair_scores(features, labels, metric, chunk=1024):
    """(same-class scores, different-class scores) of all pairs i < j, each sorted ascending.

    Rows are scored in chunks of ``chunk`` against the rows after them, so the
    memory is the scores themselves (8 bytes a pair) plus chunk x n.
    """
    labels = np.asarray(labels)
    n = len(labels)
    counts = np.unique(labels, return_counts=True)[1].astype(np.int64)
    n_same = int((counts * (counts - 1) // 2).sum())
    same, diff = np.empty(n_same), np.empty(n * (n - 1) // 2 - n_same)
    at_same = at_diff = 0
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        s = similarity(features[start:stop], features[start:], metric)
        upper = np.arange(start, n)[None, :] > np.arange(start, stop)[:, None]  # j > i
        eq = labels[start:stop, None] == labels[None, start:]
        block = s[upper & eq]
        same[at_same:at_same + len(block)] = block
        at_same += len(block)
        block = s[upper & ~eq]
        diff[at_diff:at_diff + len(block)] = block
        at_diff += len(block)
    same.sort()
    diff.sort()
    return same, diff


def auc(pos, neg):
    """P(pos > neg) + P(pos = neg) / 2 over every (pos, neg) couple; both sorted ascending."""
    below = np.searchsorted(neg, pos, 'left')       # neg < p
    not_above = np.searchsorted(neg, pos, 'right')  # neg <= p
    return float((below.sum() + 0.5 * (not_above - below).sum()) / (float(len(pos)) * len(neg)))


def tar_at_far(same, diff, far):
    """(TAR, FAR reached, threshold) at the lowest threshold whose FAR is at most ``far``.

    At most floor(far x #different) different-class pairs may be accepted, so
    the threshold lies just above the next-highest different-class score: a
    pair scoring exactly that is rejected.
    """
    allowed = int(np.floor(far * len(diff) * (1 + 1e-12)))
    if allowed >= len(diff):
        return 1.0, 1.0, -np.inf
    threshold = diff[len(diff) - allowed - 1]  # accept s > threshold
    tar = (len(same) - np.searchsorted(same, threshold, 'right')) / len(same)
    reached = (len(diff) - np.searchsorted(diff, threshold, 'right')) / len(diff)
    return float(tar), float(reached), float(threshold)


def eer(same, diff):
    """min over thresholds t (every score, and +inf) of max(FAR(t), FRR(t)).

    FAR falls and FRR rises with t, so along each sorted list of candidate
    thresholds the minimum sits where they cross: found by bisection.
    """
    def rates(t):
        far = (len(diff) - np.searchsorted(diff, t, 'left')) / len(diff)
        frr = np.searchsorted(same, t, 'left') / len(same)
        return far, frr
    best = 1.0  # t = +inf: FAR 0, FRR 1
    for candidates in (same, diff):
        lo, hi = 0, len(candidates)
        while lo < hi:  # the first candidate where FAR < FRR
            mid = (lo + hi) // 2
            far, frr = rates(candidates[mid])
            lo, hi = (lo, mid) if far < frr else (mid + 1, hi)
        for i in (lo - 1, lo):
            if 0 <= i < len(candidates):
                best = min(best, max(rates(candidates[i])))
    return float(best)


def at_fars(same, diff):
    """{'tar_at_far_F': TAR, 'threshold_at_far_F': the threshold (accept s > it)} at each FAR F of FARS: the
    threshold is what a user of the features accepts pairs above to keep that false accept rate."""
    found = {}
    for far in FARS:
        tar, _, threshold = tar_at_far(same, diff, far)
        found.update({'tar_at_far_%g' % far: tar, 'threshold_at_far_%g' % far: threshold})
    return found


def roc_curve(same, diff, fars=ROC_FARS):
    """TAR at each FAR of ``fars``, as tar_at_far reads it."""
    return [tar_at_far(same, diff, f)[0] for f in fars]


# --------------------------------------------------------------------------- the LFW protocol

def lfw_pairs(labels, seed=PAIR_SEED, folds=FOLDS, per_fold=PER_FOLD):
    """(pairs (2 x folds x per, 2) of indices i < j into ``labels``, same-class flags), fold after fold:
    ``per`` same-class pairs then ``per`` different-class pairs, none twice, from a RandomState(seed).

    The first image of a pair is drawn uniformly, the second uniformly among the
    images of its class (or of the other classes). ``per`` is ``per_fold``, or
    less when the images cannot make that many distinct pairs (a small slice).
    """
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    counts = np.unique(labels, return_counts=True)[1].astype(np.int64)
    n = len(labels)
    possible_same = int((counts * (counts - 1) // 2).sum())
    possible = {True: possible_same, False: n * (n - 1) // 2 - possible_same}
    per = min(per_fold, possible[True] // (2 * folds), possible[False] // (2 * folds))
    if per < 1:
        raise ValueError('too few images (%d, in %d classes) for %d folds of same- and different-class pairs'
                         % (n, len(counts), folds))
    members = {c: np.flatnonzero(labels == c) for c in np.unique(labels)}
    others = {c: np.flatnonzero(labels != c) for c in members}
    picked = {True: [], False: []}
    for want_same in (True, False):
        seen = set()
        while len(picked[want_same]) < folds * per:
            i = rng.randint(n)
            pool = members[labels[i]] if want_same else others[labels[i]]
            j = pool[rng.randint(len(pool))]
            pair = (min(i, j), max(i, j))
            if i != j and pair not in seen:
                seen.add(pair)
                picked[want_same].append(pair)
    pairs, same = [], []
    for f in range(folds):
        for want_same in (True, False):
            pairs += picked[want_same][f * per:(f + 1) * per]
            same += [want_same] * per
    return np.array(pairs, dtype=np.int64), np.array(same)


def best_threshold(scores, same):
    """The threshold with the best accuracy of "same when s >= t" on these pairs: halfway
    between two consecutive distinct scores (below all, -inf; above all, +inf), the
    lowest such on a tie. Halfway, not at a score, so that a new pair just below the
    lowest accepted score of these pairs is not rejected for nothing."""
    u = np.unique(scores)
    candidates = np.append(u, np.inf)  # "s >= u[k]": the same decisions as any t in (u[k-1], u[k]]
    pos, neg = np.sort(scores[same]), np.sort(scores[~same])
    correct = (len(pos) - np.searchsorted(pos, candidates, 'left')) + np.searchsorted(neg, candidates, 'left')
    k = int(np.argmax(correct))
    if k == 0 or k == len(u):
        return -np.inf if k == 0 else np.inf
    return float((u[k - 1] + u[k]) / 2)


def fold_accuracies(scores, same, folds=FOLDS, fold=None):
    """Accuracy of each fold at the threshold best on the other folds: ``fold`` gives each pair's
    fold, by default ``folds`` equal blocks of pairs ordered fold by fold."""
    return fold_results(scores, same, folds, fold)[0]


def fold_results(scores, same, folds=FOLDS, fold=None):
    """([accuracy of each fold], [the threshold it was judged at, the best on the other folds])."""
    if fold is None:
        fold = np.repeat(np.arange(folds), len(scores) // folds)
    accuracies, thresholds = [], []
    for f in np.unique(fold):
        thresholds.append(best_threshold(scores[fold != f], same[fold != f]))
        accuracies.append(float(((scores[fold == f] >= thresholds[-1]) == same[fold == f]).mean()))
    return accuracies, thresholds


# --------------------------------------------------------------------------- a checkpoint's figures

def verify(features, labels, metric):
    """Every all-pairs and LFW-style figure of ``features`` (n, d) with class ``labels``, by ``metric``."""
    pairs, is_same = lfw_pairs(labels)  # first: a set too small for its folds is refused before any figure
    same, diff = pair_scores(features, labels, metric)
    result = {'pairs': len(same) + len(diff), 'same_class_pairs': len(same), 'auc': auc(same, diff),
              'eer': eer(same, diff)}
    result.update(at_fars(same, diff))
    result['roc'] = {'far': ROC_FARS.tolist(), 'tar': roc_curve(same, diff)}
    del same, diff
    f = np.asarray(features, np.float64)
    scores = paired_similarity(f[pairs[:, 0]], f[pairs[:, 1]], metric)
    accuracies = fold_accuracies(scores, is_same)
    result['lfw_protocol'] = {'pairs': len(pairs), 'folds': FOLDS, 'accuracy_mean': float(np.mean(accuracies)),
                              'accuracy_std': float(np.std(accuracies)), 'fold_accuracies': accuracies}
    return result


def verify_pairs(features, pairs, same, fold, metric):
    """The figures of a given pair list (LFW's pairs.txt, an insightface .bin): ``pairs`` (P, 2) rows of
    ``features``, ``same`` their flags, ``fold`` their folds; AUC, EER and TAR at FAR over all its
    pairs, and each fold's accuracy at the threshold best on the other folds."""
    f = np.asarray(features, np.float64)
    scores = paired_similarity(f[pairs[:, 0]], f[pairs[:, 1]], metric)
    pos, neg = np.sort(scores[same]), np.sort(scores[~same])
    if not len(pos) or not len(neg):
        raise ValueError('the pair list needs same and different pairs; it has %d and %d' % (len(pos), len(neg)))
    result = {'pairs': len(scores), 'same_class_pairs': len(pos), 'auc': auc(pos, neg), 'eer': eer(pos, neg)}
    result.update(at_fars(pos, neg))
    result['roc'] = {'far': ROC_FARS.tolist(), 'tar': roc_curve(pos, neg)}
    accuracies, thresholds = fold_results(scores, np.asarray(same), fold=np.asarray(fold))
    # (as insightface's verification callback reports a set: the mean accuracy of the folds, its spread,
    # and the mean of the thresholds they were judged at)
    result['folds'] = {'folds': len(accuracies), 'accuracy_mean': float(np.mean(accuracies)),
                       'accuracy_std': float(np.std(accuracies)), 'fold_accuracies': accuracies,
                       'threshold': float(np.mean([t for t in thresholds if np.isfinite(t)] or [np.nan]))}
    return result


def open_set_auroc(known, held, centers, metric, scores=1 << 24):
    """AUROC of telling test images of trained classes (``known``) from those of held-out ones
    (``held``) by their score to the nearest trained class center (higher: known). Rows are scored in
    chunks of at most ``scores`` image-center scores, however many classes there are."""
    def nearest(features):
        rows = max(1, scores // max(len(centers), 1))
        return np.sort(np.concatenate([similarity(features[s:s + rows], centers, metric).max(axis=1)
                                       for s in range(0, len(features), rows)]))
    return auc(nearest(known), nearest(held))


# --------------------------------------------------------------------------- retrieval

def retrieval(features, labels, metric='cosine', chunk=512):
    """Precision at 1, R-precision and MAP@R, as pytorch-metric-learning's AccuracyCalculator defines
    them (Musgrave et al., A Metric Learning Reality Check, 2020): each image queries all the others;
    R is the number of the others of its class; the ranking is by ``metric`` (cosine, highest first,
    or Euclidean distance, nearest first: that library's default, on the features as
    given; the two rank alike on normalised features), ties kept in the images' order.

        precision@1  share of queries whose nearest other image is of their class
        R-precision  mean over queries of (images of its class among the first R) / R
        MAP@R        mean over queries of (1 / R) sum_{k <= R, item k of its class} precision at k

    Queries whose class has no other image are left out. Brute force, by chunks of ``chunk`` queries.
    """
    labels = np.asarray(labels)
    f = np.asarray(features, np.float64)
    if metric == 'cosine':
        f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)
        scores = lambda q: f[q] @ f.T  # noqa: E731
    elif metric == 'euclidean':  # minus the squared distance without the query's own norm: the same order
        norms = (f * f).sum(axis=1)
        scores = lambda q: 2 * (f[q] @ f.T) - norms[None, :]  # noqa: E731
    else:
        raise ValueError('unknown metric %r: choose from %s' % (metric, ', '.join(METRICS)))
    counts = {c: n for c, n in zip(*np.unique(labels, return_counts=True))}
    r_all = np.array([counts[c] - 1 for c in labels])
    top = int(r_all.max()) if len(labels) else 0
    p1, r_prec, map_r = [], [], []
    for start in range(0, len(labels), chunk):
        rows = np.arange(start, min(start + chunk, len(labels)))
        s = scores(rows)
        s[np.arange(len(rows)), rows] = -np.inf                       # not itself
        order = np.argsort(-s, axis=1, kind='stable')[:, :max(top, 1)]
        hits = labels[order] == labels[rows, None]                     # (queries, top)
        r = r_all[rows]
        keep = r > 0
        ranks = np.arange(1, hits.shape[1] + 1)
        within = ranks[None, :] <= r[:, None]
        precision_k = np.cumsum(hits, axis=1) / ranks[None, :]
        p1.append(hits[keep, 0])
        r_prec.append((hits & within).sum(axis=1)[keep] / r[keep])
        map_r.append((precision_k * (hits & within)).sum(axis=1)[keep] / r[keep])
    if not len(labels) or not np.concatenate(p1).size:
        raise ValueError('retrieval needs two images of a class at least')
    return {'precision_at_1': float(np.concatenate(p1).mean()), 'r_precision': float(np.concatenate(r_prec).mean()),
            'map_at_r': float(np.concatenate(map_r).mean()), 'queries': int(np.concatenate(p1).size)}
