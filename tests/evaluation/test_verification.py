"""evaluation/verification.py against brute-force references on small synthetic features, and known answers."""
import itertools

import numpy as np
import pytest

from evaluation import verification as v


def features(n=60, classes=4, dim=2, seed=0, spread=1.0, integer=False):
    """Class-shifted Gaussian features; ``integer`` rounds them so that many scores tie."""
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, classes, n)
    f = rng.randn(n, dim) * spread + np.eye(classes, dim)[labels] * 2
    return (np.round(f) if integer else f), labels


def brute_pairs(f, labels, metric):
    same, diff = [], []
    for i, j in itertools.combinations(range(len(f)), 2):
        if metric == 'cosine':
            s = f[i] @ f[j] / (np.linalg.norm(f[i]) * np.linalg.norm(f[j]))
        else:
            s = -np.linalg.norm(f[i] - f[j])
        (same if labels[i] == labels[j] else diff).append(s)
    return np.array(same), np.array(diff)


def brute_rates(same, diff, t):
    """(FAR, TAR) of accepting s >= t, by counting."""
    return (sum(d >= t for d in diff) / len(diff), sum(s >= t for s in same) / len(same))


def thresholds(same, diff):
    return list(np.unique(np.concatenate([same, diff]))) + [np.inf]


@pytest.mark.parametrize('metric', v.METRICS)
def test_pair_scores_are_all_pairs(metric):
    f, labels = features(n=45)
    same, diff = v.pair_scores(f, labels, metric, chunk=7)  # chunks that do not divide n
    ref_same, ref_diff = brute_pairs(f, labels, metric)
    assert len(same) + len(diff) == 45 * 44 // 2
    np.testing.assert_allclose(same, np.sort(ref_same), atol=1e-9)
    np.testing.assert_allclose(diff, np.sort(ref_diff), atol=1e-9)


@pytest.mark.parametrize('integer', [False, True])
def test_auc_counts_ordered_pairs(integer):
    f, labels = features(n=50, integer=integer)
    same, diff = v.pair_scores(f, labels, 'euclidean')
    if integer:
        assert len(np.unique(np.concatenate([same, diff]))) < len(same) + len(diff)  # ties happen
    wins = sum(1.0 if s > d else 0.5 if s == d else 0.0 for s in same for d in diff)
    assert v.auc(same, diff) == pytest.approx(wins / (len(same) * len(diff)), abs=1e-12)


@pytest.mark.parametrize('integer', [False, True])
def test_eer_is_the_best_max_of_far_and_frr(integer):
    f, labels = features(n=50, integer=integer, spread=1.5)
    same, diff = v.pair_scores(f, labels, 'euclidean')
    ref = min(max(far, 1 - tar) for far, tar in (brute_rates(same, diff, t) for t in thresholds(same, diff)))
    assert v.eer(same, diff) == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize('far', [0.5, 0.1, 0.01, 0.001, 0.0])
@pytest.mark.parametrize('integer', [False, True])
def test_tar_at_far_is_the_best_tar_within_the_far(far, integer):
    f, labels = features(n=60, integer=integer, spread=1.5)
    same, diff = v.pair_scores(f, labels, 'cosine')
    allowed = [(tar, rate) for rate, tar in (brute_rates(same, diff, t) for t in thresholds(same, diff))
               if rate <= far]
    tar, reached, _ = v.tar_at_far(same, diff, far)
    assert (tar, reached) == pytest.approx(max(allowed))
    assert reached <= far


def test_separated_features_give_auc_1_and_eer_0():
    labels = np.repeat(np.arange(5), 40)
    f = np.eye(5)[labels] * 10 + np.random.RandomState(1).randn(200, 5) * 0.01
    for metric in v.METRICS:
        r = v.verify(f, labels, metric)
        assert r['auc'] == 1.0 and r['eer'] == 0.0
        assert all(r['tar_at_far_%g' % far] == 1.0 for far in v.FARS)
        assert r['lfw_protocol']['accuracy_mean'] == 1.0


def test_random_features_give_about_one_half():
    rng = np.random.RandomState(3)
    f, labels = rng.randn(1500, 8), rng.randint(0, 5, 1500)
    for metric in v.METRICS:
        r = v.verify(f, labels, metric)
        assert abs(r['auc'] - 0.5) < 0.02 and abs(r['eer'] - 0.5) < 0.03, r['auc']
        assert abs(r['lfw_protocol']['accuracy_mean'] - 0.5) < 0.05


def test_lfw_pairs_are_fixed_by_the_seed():
    labels = np.random.RandomState(0).randint(0, 5, 2000)
    pairs, same = v.lfw_pairs(labels)
    again, _ = v.lfw_pairs(labels)
    other, _ = v.lfw_pairs(labels, seed=v.PAIR_SEED + 1)
    assert pairs.shape == (6000, 2) and same.sum() == 3000
    np.testing.assert_array_equal(pairs, again)
    assert (pairs != other).any()
    assert (pairs[:, 0] < pairs[:, 1]).all() and len({tuple(p) for p in pairs}) == 6000
    np.testing.assert_array_equal(labels[pairs[:, 0]] == labels[pairs[:, 1]], same)
    # fold after fold: 300 same-class pairs, then 300 different-class pairs
    np.testing.assert_array_equal(same.reshape(10, 600), np.repeat([[True] * 300 + [False] * 300], 10, axis=0))


def test_lfw_pairs_shrink_on_a_small_slice_and_refuse_too_few():
    labels = np.repeat(np.arange(3), 10)   # 135 same-class pairs possible
    pairs, same = v.lfw_pairs(labels)
    assert len(pairs) == 2 * 10 * (135 // 20) and len({tuple(p) for p in pairs}) == len(pairs)
    with pytest.raises(ValueError, match='too few images'):
        v.lfw_pairs(np.array([0, 0, 1, 1]))


def test_fold_accuracies_match_a_plain_loop():
    rng = np.random.RandomState(5)
    same = np.repeat([[True] * 30 + [False] * 30], 10, axis=0).ravel()
    scores = np.round(rng.randn(600) + same, 1)  # ties on purpose
    folds = []
    for f in range(10):
        train = [i for i in range(600) if i // 60 != f]
        best_t, best_ok = None, -1
        u = sorted(set(scores[train]))
        for t in [-np.inf] + [(a + b) / 2 for a, b in zip(u, u[1:])] + [np.inf]:  # halfway between scores
            ok = sum((scores[i] >= t) == same[i] for i in train)
            if ok > best_ok:  # the lowest threshold on a tie
                best_t, best_ok = t, ok
        test = [i for i in range(600) if i // 60 == f]
        folds.append(sum((scores[i] >= best_t) == same[i] for i in test) / len(test))
    assert v.fold_accuracies(scores, same) == pytest.approx(folds)


def test_open_set_auroc_counts_known_against_held_out():
    rng = np.random.RandomState(2)
    centers = np.array([[0.0, 3.0], [3.0, 0.0]])
    known = centers[rng.randint(0, 2, 40)] + rng.randn(40, 2) * 0.8
    held = rng.randn(30, 2) * 2
    for metric in v.METRICS:
        sk, sh = (v.similarity(x, centers, metric).max(axis=1) for x in (known, held))
        ref = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a in sk for b in sh])
        assert v.open_set_auroc(known, held, centers, metric) == pytest.approx(ref, abs=1e-12)


def test_retrieval_on_a_hand_made_case():
    """Five images, classes 0 (a, b, e) and 1 (c, d): by cosine, a ranks b, d, c, e; b ranks a, d, c, e;
    c ranks d first; d ranks c first; e ranks c, d, b, a. R is 2 for class 0 and 1 for class 1.
    precision@1: a, b, c, d right, e wrong: 4/5. R-precision: a 1/2, b 1/2, c 1, d 1, e 0: 3/5.
    MAP@R: a (1/2)(1/1) = 1/2, b 1/2, c 1, d 1, e 0: 3/5."""
    f = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [-1, 0]])
    r = v.retrieval(f, np.array([0, 0, 1, 1, 0]))
    assert r == {'precision_at_1': pytest.approx(0.8), 'r_precision': pytest.approx(0.6),
                 'map_at_r': pytest.approx(0.6), 'queries': 5}


def test_map_at_r_rewards_the_order_within_the_first_r():
    """Four points at 0, 8, 26 and 45 degrees. Labels 0, 0, 1, 0: the class-0 queries (R = 2) rank their own
    class at 1 and 3 (q: near, mid, far; near: q, mid, far), R-precision 1/2 and MAP@R (1/2)(1/1) = 1/2, or
    at 2 and 3 (far: mid, near, q), MAP@R (1/2)(1/2) = 1/4; mid (R = 0) is no query: P@1 2/3, R-precision 1/2,
    MAP@R (1/2 + 1/2 + 1/4) / 3 = 5/12. Labels 0, 1, 0, 0: q (near, mid, far) and mid (near, far, q) at 2 and
    3, 1/4 each, far (mid, near, q) at 1 and 3, 1/2: P@1 1/3, R-precision 1/2, MAP@R 1/3."""
    q = [1.0, 0.0]
    near, mid, far = [0.99, 0.14], [0.9, 0.44], [0.7, 0.71]
    first = v.retrieval(np.array([q, near, mid, far]), np.array([0, 0, 1, 0]))
    second = v.retrieval(np.array([q, near, mid, far]), np.array([0, 1, 0, 0]))
    assert first == {'precision_at_1': pytest.approx(2 / 3), 'r_precision': pytest.approx(1 / 2),
                     'map_at_r': pytest.approx(5 / 12), 'queries': 3}
    assert second == {'precision_at_1': pytest.approx(1 / 3), 'r_precision': pytest.approx(1 / 2),
                      'map_at_r': pytest.approx(1 / 3), 'queries': 3}
    only = lambda f, l: v.retrieval(f, l, chunk=1)  # noqa: E731 (chunks change nothing)
    assert only(np.array([q, near, mid, far]), np.array([0, 0, 1, 0])) == first


@pytest.mark.parametrize('metric', v.METRICS)
def test_retrieval_equals_a_loop_over_queries(metric):
    rng = np.random.RandomState(3)
    f, labels = rng.randn(120, 6) * rng.uniform(0.1, 10, (120, 1)), rng.randint(0, 5, 120)  # norms apart
    r = v.retrieval(f, labels, metric, chunk=17)
    fn = f / np.linalg.norm(f, axis=1, keepdims=True)
    far = {'cosine': lambda i, j: -(fn[i] @ fn[j]), 'euclidean': lambda i, j: np.linalg.norm(f[i] - f[j])}[metric]
    p1, rp, mapr = [], [], []
    for i in range(len(f)):
        others = [j for j in range(len(f)) if j != i]
        ranked = sorted(others, key=lambda j: (far(i, j), j))
        hits = [labels[j] == labels[i] for j in ranked]
        big_r = int(sum(labels == labels[i]) - 1)
        if not big_r:
            continue
        p1.append(hits[0])
        rp.append(sum(hits[:big_r]) / big_r)
        mapr.append(sum(sum(hits[:k + 1]) / (k + 1) for k in range(big_r) if hits[k]) / big_r)
    assert r['precision_at_1'] == pytest.approx(np.mean(p1)) and r['r_precision'] == pytest.approx(np.mean(rp))
    assert r['map_at_r'] == pytest.approx(np.mean(mapr)) and r['queries'] == len(p1)


def test_retrieval_by_distance_and_by_cosine_part_on_raw_features_only():
    """On features of one norm the two rankings agree; on raw ones they differ: b is a's nearest by
    distance, c (near a's direction, ten times as far out) by angle."""
    f = np.array([[1.0, 0.0], [0.8, 0.6], [1.0, 0.05], [-1.0, 0.0]])
    labels = np.array([0, 1, 0, 1])
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    assert v.retrieval(unit, labels, 'euclidean') == pytest.approx(v.retrieval(unit, labels, 'cosine'))
    raw = f * np.array([[1.0], [1.0], [10.0], [1.0]])
    assert v.retrieval(raw, labels, 'cosine')['precision_at_1'] == 0.75  # a -> c, b -> c, c -> a, d -> b
    assert v.retrieval(raw, labels, 'euclidean')['precision_at_1'] == 0.5  # a -> b, b -> a, c -> a, d -> b
    with pytest.raises(ValueError, match='unknown metric'):
        v.retrieval(f, labels, 'manhattan')


def test_verify_refuses_too_few_images_before_any_figure():
    """Two images in two classes have no same-class pair: one line, and no numpy warning of a 0/0
    figure printed before it."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        with pytest.raises(ValueError, match='too few images'):
            v.verify(np.eye(2), np.array([0, 1]), 'cosine')
