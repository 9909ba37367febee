"""training/epoch.py: what an epoch keeps of the features its steps compute."""
import numpy as np
from mxnet import nd

from training import epoch


def test_an_epoch_keeps_the_latest_feature_of_each_reference_image_and_every_class_sum():
    gathered = epoch.Gathered(10, np.array([0, 1, 2, 3, 5, 6]), 3)  # images 4, 7, 8, 9 outside the reference
    gathered.add(np.array([0, 1, 2, 3]), nd.array([[0, 0], [1, 1], [2, 2], [3, 3]]), nd.array([0, 1, 2, 0]))
    gathered.add(np.array([2, 4, 6]), nd.array([[20, 20], [4, 4], [6, 6]]), nd.array([2, 1, 0]))
    rows, feats = gathered.latest()
    assert rows.tolist() == [0, 1, 2, 3, 5]  # image 6 is the reference's row 5; image 5 not seen yet
    assert feats.asnumpy().tolist() == [[0, 0], [1, 1], [20, 20], [3, 3], [6, 6]]  # image 2: its later feature
    gathered.flush()
    assert not gathered.covers and gathered.counts.tolist() == [3, 2, 2]
    assert gathered.sums.tolist() == [[9, 9], [5, 5], [22, 22]]  # every image trained on, 4 included


def test_mirrors_are_drawn_apart_from_the_shifts_and_by_seed_and_epoch():
    """A run with --mirror draws the shifts a run without it draws (MNIST's runs are unchanged), and its
    mirrors from (seed, epoch) alone, a global batch at a time: the same numbers as drawn at once."""
    from runs.records import Optim
    plain = epoch.plan_epoch(Optim(batch_size=4), 10, 1, 3, 1, 0)
    mirrored = epoch.plan_epoch(Optim(batch_size=4, mirror=True), 10, 1, 3, 1, 0)
    assert plain.mirrors is None and (plain.order == mirrored.order).all()
    for b in range(len(plain.batches)):
        batch = plain.batches[b]
        assert (plain.shifts.of(batch, batch) == mirrored.shifts.of(batch, batch)).all()
    again = epoch.plan_epoch(Optim(batch_size=4, mirror=True), 10, 1, 3, 1, 0)
    flips = np.concatenate([again.mirrors.of(again.batches[b], again.batches[b]) for b in range(len(again.batches))])
    assert flips.tolist() == np.random.RandomState([42, 3, 1]).randint(0, 2, size=10).tolist()
    assert 0 < flips.sum() < 10
