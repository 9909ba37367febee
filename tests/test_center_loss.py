"""CenterLoss against float64 numpy references of the paper's equations."""
import numpy as np
import pytest
from mxnet import autograd, gluon, nd

from center_loss import CenterLoss

K, D = 7, 3


def batch(seed, m=20, present=(0, 2, 3, 5)):
    """Features, labels drawn from `present` only (so classes 1, 4, 6 are missing), centers."""
    rng = np.random.RandomState(seed)
    x = rng.randn(m, D)
    y = rng.choice(present, size=m)
    c = rng.randn(K, D)
    return x, y, c


def reference_gradient_mode(x, y, c, lmbd):
    n = np.bincount(y, minlength=K).astype(np.float64)
    diff = x - c[y]
    loss = lmbd / 2 * (diff ** 2).sum(1) / n[y]
    grad_x = lmbd * diff / n[y][:, None]
    grad_c = np.zeros_like(c)
    np.add.at(grad_c, y, -grad_x)
    return loss, grad_x, grad_c


def run(block, x, y, c, label_dtype='float32'):
    block.initialize(force_reinit=True)
    block.centers.weight.set_data(nd.array(c))
    xs = nd.array(x)
    xs.attach_grad()
    ys = nd.array(y, dtype=label_dtype)
    with autograd.record():
        loss = block(xs, ys)
    loss.backward()
    return loss.asnumpy(), xs.grad.asnumpy(), block.centers.weight.grad().asnumpy()


@pytest.mark.parametrize('hybrid', [False, True])
@pytest.mark.parametrize('label_dtype', ['float32', 'int32'])
def test_gradient_mode_matches_numpy(hybrid, label_dtype):
    x, y, c = batch(0)
    block = CenterLoss(K, D, lmbd=0.7)
    if hybrid:
        block.hybridize()
    loss, gx, gc = run(block, x, y, c, label_dtype)
    ref_loss, ref_gx, ref_gc = reference_gradient_mode(x, y, c, 0.7)
    assert loss.shape == (len(y),)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gx, ref_gx, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gc, ref_gc, rtol=1e-5, atol=1e-6)
    assert np.all(gc[[1, 4, 6]] == 0)  # absent classes get no gradient


def test_imperative_equals_hybridized():
    x, y, c = batch(1, m=33)
    a = run(CenterLoss(K, D, lmbd=2.0), x, y, c)
    h = CenterLoss(K, D, lmbd=2.0)
    h.hybridize(static_alloc=True, static_shape=True)
    b = run(h, x, y, c)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)


def test_balancing_gives_each_class_equal_weight():
    # One class with 1 sample at distance 1 and one with 9 samples at distance 1:
    # the balanced loss sums to lmbd/2 per class, whatever the counts.
    x = np.zeros((10, D))
    x[:, 0] = 1.0
    y = np.array([0] + [1] * 9)
    loss, _, _ = run(CenterLoss(K, D, lmbd=1.0), x, y, np.zeros((K, D)))
    assert loss[y == 0].sum() == pytest.approx(0.5)
    assert loss[y == 1].sum() == pytest.approx(0.5)


def paper_step(x, y, c, lmbd, alpha, hybrid):
    block = CenterLoss(K, D, lmbd=lmbd, update='paper')
    if hybrid:
        block.hybridize()
    block.initialize()
    block.centers.weight.set_data(nd.array(c))
    trainer = gluon.Trainer(block.collect_params(), 'sgd', {'learning_rate': alpha})
    xs = nd.array(x)
    xs.attach_grad()
    with autograd.record():
        loss = block(xs, nd.array(y))
    loss.backward()
    trainer.step(len(y))
    return loss.asnumpy(), xs.grad.asnumpy(), block.centers.weight.data().asnumpy()


@pytest.mark.parametrize('hybrid', [False, True])
@pytest.mark.parametrize('m,lmbd,alpha', [(20, 1.0, 0.5), (5, 0.003, 0.1), (64, 10.0, 0.9)])
def test_paper_update_is_eq4(hybrid, m, lmbd, alpha):
    x, y, c = batch(2, m=m)
    loss, gx, new_c = paper_step(x, y, c, lmbd, alpha, hybrid)
    diff = x - c[y]
    np.testing.assert_allclose(loss, lmbd / 2 * (diff ** 2).sum(1), rtol=1e-5, atol=1e-6)   # Eq. 2
    np.testing.assert_allclose(gx, lmbd * diff, rtol=1e-5, atol=1e-6)                      # Eq. 3
    n = np.bincount(y, minlength=K)
    delta = np.zeros_like(c)
    np.add.at(delta, y, c[y] - x)
    delta /= (1 + n)[:, None]                                                               # Eq. 4
    np.testing.assert_allclose(new_c, c - alpha * delta, rtol=1e-5, atol=1e-6)
    assert np.array_equal(new_c[n == 0], c[n == 0].astype(np.float32))


def test_bad_inputs_raise_value_error():
    block = CenterLoss(K, D)
    block.initialize()
    with pytest.raises(ValueError, match='features of shape'):
        block(nd.zeros((4, D + 1)), nd.zeros((4,)))
    with pytest.raises(ValueError, match=r'labels must be integers in \[0, 7\)'):
        block(nd.zeros((4, D)), nd.array([0, 1, 7, 2]))
    with pytest.raises(ValueError, match='labels must be'):
        block(nd.zeros((2, D)), nd.array([-1, 0]))
    with pytest.raises(ValueError, match='update must be'):
        CenterLoss(K, D, update='sgd')


@pytest.mark.parametrize('update', ['gradient', 'paper'])
def test_split_batch_with_global_counts_equals_whole_batch(update):
    # A batch split across devices: each slice gets the whole batch's counts.
    x, y, c = batch(3, m=30)
    whole = run(CenterLoss(K, D, lmbd=0.5, update=update), x, y, c)
    counts = nd.array(np.bincount(y, minlength=K))
    block = CenterLoss(K, D, lmbd=0.5, update=update)
    block.hybridize()
    block.initialize()
    block.centers.weight.set_data(nd.array(c))
    xs = nd.array(x)
    xs.attach_grad()
    with autograd.record():
        parts = [block(xs[a:b], nd.array(y[a:b]), counts) for a, b in ((0, 11), (11, 30))]
    autograd.backward(parts)
    np.testing.assert_allclose(np.concatenate([p.asnumpy() for p in parts]), whole[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xs.grad.asnumpy(), whole[1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(block.centers.weight.grad().asnumpy(), whole[2], rtol=1e-5, atol=1e-5)
