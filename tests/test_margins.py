"""margins.py: each head's logits against a float64 numpy reference of its formula, the edges of
ArcFace and SphereFace, gradients, and the file copied alone into an empty folder trains."""
import math
import os
import shutil
import subprocess
import sys
import warnings

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, nd

import margins
from helpers import ROOT


def reference_cosines(x, w):
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    return np.clip((x / np.linalg.norm(x, axis=1, keepdims=True)) @ (w / np.linalg.norm(w, axis=1, keepdims=True)).T,
                   -1, 1)


def psi(theta, m):
    """SphereFace's psi by its definition: (-1)^k cos(m theta) - 2k on [k pi / m, (k + 1) pi / m]."""
    k = np.minimum(np.floor(theta * m / np.pi), m - 1)
    return (-1) ** k * np.cos(m * theta) - 2 * k


def reference(name, x, w, y, scale, margin, lmbd=None):
    cos = reference_cosines(x, w)
    target = cos[np.arange(len(y)), y]
    theta = np.arccos(target)
    if name == 'normface':
        new = target
    elif name == 'cosface':
        new = target - margin
    elif name == 'arcface':
        new = np.where(target > np.cos(np.pi - margin), np.cos(theta + margin), target - margin * np.sin(margin))
    else:
        new = (lmbd * target + psi(theta, margin)) / (1 + lmbd)
    out = cos.copy()
    out[np.arange(len(y)), y] = new
    norms = np.linalg.norm(np.asarray(x, np.float64), axis=1, keepdims=True)
    return out * (norms if scale is None else scale), cos * (norms if scale is None else scale)


def head_with(name, w, **kwargs):
    head = margins.HEADS[name](w.shape[0], w.shape[1], **kwargs)
    head.initialize()
    head.weight.set_data(nd.array(w))
    return head


CASES = [('normface', {}, 20.0, None), ('cosface', {}, 64.0, 0.35), ('arcface', {}, 64.0, 0.5),
         ('sphereface', {}, None, 4), ('sphereface', {'scale': 30.0, 'margin': 3}, 30.0, 3),
         ('arcface', {'scale': 10.0, 'margin': 1.2}, 10.0, 1.2), ('cosface', {'scale': 16.0, 'margin': 0.2}, 16.0, 0.2)]


@pytest.mark.parametrize('name,kwargs,scale,margin', CASES)
@pytest.mark.parametrize('hybrid', [False, True])
def test_logits_match_the_formula(name, kwargs, scale, margin, hybrid):
    rng = np.random.RandomState(0)
    x, w, y = rng.randn(64, 5) * 3, rng.randn(7, 5), rng.randint(0, 7, 64)
    head = head_with(name, w, **kwargs)
    assert head.scale == scale and head.margin == margin  # the papers' defaults, where none were given
    if name == 'sphereface':
        head.anneal(40)
        assert head.lmbd.data().asscalar() == pytest.approx(1000 / (1 + 0.12 * 40))
    if hybrid:  # one signature per hybridized head: here, with labels
        head.hybridize()
    got = head(nd.array(x), nd.array(y)).asnumpy()
    want, plain = reference(name, x, w, y, scale, margin, 1000 / (1 + 0.12 * 40))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * (scale or 10))
    if not hybrid:  # without labels: the plain scaled cosines
        np.testing.assert_allclose(head(nd.array(x)).asnumpy(), plain, rtol=1e-4, atol=1e-4 * (scale or 10))


@pytest.mark.parametrize('name,kwargs,scale,margin', CASES)
def test_inside_a_hybridized_parent_without_labels(name, kwargs, scale, margin):
    """The way the trainer's network calls its head at test time: traced by a hybridized parent, first
    call without labels. The plain scaled cosines, and no parameter reported unused (SphereFace's
    lambda once made MXNet warn here, and fail to infer its shape on a network not yet run)."""
    class Parent(mx.gluon.HybridBlock):
        def __init__(self):
            super(Parent, self).__init__()
            with self.name_scope():
                self.head = margins.HEADS[name](7, 5, **kwargs)

        def hybrid_forward(self, F, x):
            return self.head(x)

    rng = np.random.RandomState(2)
    x, w = rng.randn(16, 5) * 3, rng.randn(7, 5)
    parent = Parent()
    parent.initialize()
    parent.head.weight.set_data(nd.array(w))
    parent.hybridize()
    with warnings.catch_warnings():
        warnings.simplefilter('error', UserWarning)
        got = parent(nd.array(x)).asnumpy()
    _, plain = reference(name, x, w, np.zeros(16, int), scale, margin, 5.0)
    np.testing.assert_allclose(got, plain, rtol=1e-4, atol=1e-4 * (scale or 10))


def test_arcface_past_pi_takes_insightfaces_linear_margin():
    """Targets on both sides of theta = pi - m, and at the edges theta = 0 and pi: cos(theta + m) where
    theta + m <= pi, cos(theta) - m sin(m) beyond, never rising with theta (cos(theta + m) alone would
    rise again past pi - m)."""
    m = 0.5
    w = np.array([[1.0, 0.0], [0.0, 1.0]])
    angles = np.array([0.0, 1.0, np.pi - m - 0.01, np.pi - m + 0.01, np.pi - 0.1, np.pi])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    head = head_with('arcface', w, scale=1.0, margin=m)
    got = head(nd.array(x), nd.zeros(len(angles))).asnumpy()[:, 0]
    want = np.where(angles + m <= np.pi, np.cos(angles + m), np.cos(angles) - m * np.sin(m))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert (np.diff(got) < 0).all()
    assert np.cos(np.pi - 0.1 + m) > np.cos(np.pi - m - 0.01 + m)  # what the switch avoids


@pytest.mark.parametrize('m', [1, 2, 3, 4])
def test_sphereface_psi_is_the_papers_and_decreases(m):
    angles = np.linspace(0, np.pi, 721)
    w = np.array([[1.0, 0.0], [0.0, 1.0]])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    head = head_with('sphereface', w, scale=1.0, margin=m, base=0.0, lambda_min=0.0)  # lambda 0: psi alone
    head.anneal(10 ** 6)
    got = head(nd.array(x), nd.zeros(len(angles))).asnumpy()[:, 0]
    np.testing.assert_allclose(got, psi(angles, m), atol=2e-4)
    assert (np.diff(got) <= 1e-5).all() and got[0] == pytest.approx(1.0) and got[-1] == pytest.approx(1 - 2 * m,
                                                                                                        abs=1e-3)


def test_sphereface_lambda_anneals_as_the_paper():
    head = margins.SphereFace(10, 2)
    assert [head.lambda_at(t) for t in (0, 1, 100)] == pytest.approx([1000, 1000 / 1.12, 1000 / 13])
    assert head.lambda_at(10 ** 6) == 5.0 and head.scale is None and head.margin == 4
    # stretched to a run's length: the paper's lambda at the same share of its 28,000 iterations
    assert head.lambda_at(1000, 28000) == head.lambda_at(1000)
    assert head.lambda_at(150, 2800) == pytest.approx(1000 / (1 + 0.12 * 1500))
    floor = [t for t in range(2800) if head.lambda_at(t, 2800) == 5.0][0]  # the paper's: 1,659 of 28,000
    assert floor == 166 and head.lambda_at(1659) == 5.0 and head.lambda_at(1658) > 5.0
    with pytest.raises(ValueError, match='whole margin'):
        margins.SphereFace(10, 2, margin=1.5)


@pytest.mark.parametrize('name', sorted(margins.HEADS))
def test_gradients_reach_the_weights_and_the_features(name):
    rng = np.random.RandomState(1)
    head = head_with(name, rng.randn(4, 3))
    x = nd.array(rng.randn(8, 3))
    x.attach_grad()
    with autograd.record():
        loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(head(x, nd.array(rng.randint(0, 4, 8))), nd.array(
            rng.randint(0, 4, 8)))
    loss.backward()
    assert np.isfinite(x.grad.asnumpy()).all() and np.abs(x.grad.asnumpy()).sum() > 0
    assert np.abs(head.weight.grad().asnumpy()).sum() > 0


def test_the_file_copied_alone_trains(tmp_path):
    """margins.py in an empty folder, nothing else of this repository importable: the docstring's loop
    trains a small network with each head, whose loss falls over 30 steps."""
    shutil.copy(os.path.join(ROOT, 'margins.py'), str(tmp_path / 'margins.py'))
    script = '\n'.join([
        'import numpy as np',
        'np.bool = bool',
        'import mxnet as mx',
        'from mxnet import autograd, gluon, nd',
        'from margins import HEADS',
        'x, y = nd.array(np.random.RandomState(0).randn(32, 8)), nd.array(np.arange(32) % 4)',
        'for name, Head in sorted(HEADS.items()):',
        '    mx.random.seed(0)',
        '    net = gluon.nn.HybridSequential()',
        '    net.add(gluon.nn.Dense(16, activation="relu"), gluon.nn.Dense(8))',
        '    net.initialize()',
        '    head = Head(4, 8)',
        '    head.initialize()',
        '    params = net.collect_params()',
        '    params.update(head.collect_params())',
        '    trainer = gluon.Trainer(params, "sgd", {"learning_rate": 0.1})',
        '    first = None',
        '    for step in range(30):',
        '        if hasattr(head, "anneal"):',
        '            head.anneal(step)',
        '        with autograd.record():',
        '            loss = gluon.loss.SoftmaxCrossEntropyLoss()(head(net(x), y), y)',
        '        loss.backward()',
        '        trainer.step(32)',
        '        first = float(loss.mean().asscalar()) if first is None else first',
        '    assert np.isfinite(loss.asnumpy()).all() and head(net(x)).shape == (32, 4)',
        '    print(name, first, float(loss.mean().asscalar()))'])
    env = dict(os.environ, PYTHONPATH='')
    proc = subprocess.run([sys.executable, '-c', script], cwd=str(tmp_path), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(line.split()[0] for line in proc.stdout.splitlines()) == sorted(margins.HEADS)
    for line in proc.stdout.splitlines():
        name, first, last = line.split()
        assert float(last) < float(first) - 0.005, line  # the loss after 30 steps, against the first step's
    assert not any(f.endswith('.py') and f != 'margins.py' for f in os.listdir(str(tmp_path)))


def test_the_defaults_are_the_papers():
    assert (margins.CosFace(2, 2).scale, margins.CosFace(2, 2).margin) == (64.0, 0.35)
    assert (margins.ArcFace(2, 2).scale, margins.ArcFace(2, 2).margin) == (64.0, 0.5)
    assert math.isclose(margins.NormFace(2, 2).scale, 20.0) and margins.NormFace(2, 2).margin is None


def reference_loss(name, x, w, y, scale, margin, lmbd):
    """Softmax cross-entropy of the reference logits, in float64: what finite differences are taken of."""
    logits = reference(name, x, w, y, scale, margin, lmbd)[0]
    top = logits.max(axis=1, keepdims=True)
    logsumexp = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return float((logsumexp - logits[np.arange(len(y)), y]).mean())


@pytest.mark.parametrize('name,kwargs,scale,margin,iteration', [
    (n, k, s, m, 40) for n, k, s, m in CASES] + [('sphereface', {}, None, 4, 10 ** 6)])  # lambda at its floor, 5
def test_gradients_match_finite_differences_of_the_formula(name, kwargs, scale, margin, iteration):
    """The gradients the head's graph gives the features and the class weights (SphereFace's piece index
    taking none) against central differences of the float64 reference's loss."""
    rng = np.random.RandomState(2)
    x, w, y = rng.randn(6, 3) * 2, rng.randn(4, 3), rng.randint(0, 4, 6)
    head = head_with(name, w, **kwargs)
    lmbd = None
    if name == 'sphereface':
        head.anneal(iteration)
        lmbd = float(head.lmbd.data().asscalar())
    xs = nd.array(x)
    xs.attach_grad()
    with autograd.record():
        loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(head(xs, nd.array(y)), nd.array(y)).mean()
    loss.backward()
    assert float(loss.asscalar()) == pytest.approx(reference_loss(name, x, w, y, scale, margin, lmbd), rel=1e-4)
    for got, values, which in ((xs.grad.asnumpy(), x, 'x'), (head.weight.grad().asnumpy(), w, 'w')):
        numeric, eps = np.zeros_like(values), 1e-6
        for i in np.ndindex(values.shape):
            up, down = values.copy(), values.copy()
            up[i] += eps
            down[i] -= eps
            args = (up, w) if which == 'x' else (x, up)
            minus = (down, w) if which == 'x' else (x, down)
            numeric[i] = (reference_loss(name, *args, y, scale, margin, lmbd) -
                          reference_loss(name, *minus, y, scale, margin, lmbd)) / (2 * eps)
        np.testing.assert_allclose(got, numeric, rtol=2e-3, atol=2e-4 * np.abs(numeric).max(), err_msg=which)
