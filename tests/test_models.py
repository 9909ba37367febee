import numpy as np
import pytest
from mxnet import autograd, nd

import models


@pytest.mark.parametrize('spatial,shape', [(True, (2, 3, 4, 4)), (False, (5, 3))])
def test_prelu_matches_numpy_with_gradients(spatial, shape):
    rng = np.random.RandomState(0)
    x = rng.randn(*shape).astype(np.float32)
    a = np.array([0.1, 0.25, -0.3], dtype=np.float32)
    block = models.PReLU(3, spatial=spatial)
    block.initialize()
    block.alpha.set_data(nd.array(a.reshape(block.alpha.shape)))
    xs = nd.array(x)
    xs.attach_grad()
    with autograd.record():
        y = block(xs)
    y.backward()
    bshape = (1, 3, 1, 1) if spatial else (1, 3)
    ab = a.reshape(bshape)
    np.testing.assert_allclose(y.asnumpy(), np.where(x > 0, x, ab * x), rtol=1e-6)
    np.testing.assert_allclose(xs.grad.asnumpy(), np.where(x > 0, 1, ab * np.ones_like(x)), rtol=1e-6)
    axes = tuple(i for i in range(x.ndim) if i != 1)
    np.testing.assert_allclose(block.alpha.grad().asnumpy().ravel(), np.minimum(x, 0).sum(axis=axes), rtol=1e-5)


# Every LeNet with every activation; the ResNets take no activation flag, and share the model zoo's code
# by version and block: the two versions at 18 layers (basic blocks) and at 50 (bottlenecks). Building all
# ten ResNets three times each held 3 GB in the test process (MXNet keeps what it allocated).
MODEL_CASES = [(name, act) for name in ('lenet', 'lenet++') for act in models.ACTIVATIONS] + \
    [(name, 'relu') for name in ('resnet18', 'resnet18_v2', 'resnet50', 'resnet50_v2')]


@pytest.mark.parametrize('name,act', MODEL_CASES)
def test_models_return_scores_and_features(name, act):
    net = models.get_model(name, classes=7, feature_size=3, act=act)
    net.initialize()
    net.hybridize()
    scores, features = net(nd.zeros((4, 1, 28, 28)))
    assert scores.shape == (4, 7) and features.shape == (4, 3)


def test_lenet_plus_is_the_papers_architecture():
    net = models.LeNetPlus()
    net.initialize()
    net(nd.zeros((1, 1, 28, 28)))
    convs = [b for b in net.body if b.__class__.__name__ == 'Conv2D']
    assert [c.weight.shape for c in convs] == [(32, 1, 5, 5), (32, 32, 5, 5), (64, 32, 5, 5),
                                               (64, 64, 5, 5), (128, 64, 5, 5), (128, 128, 5, 5)]
    assert sum(b.__class__.__name__ == 'MaxPool2D' for b in net.body) == 3
    assert net.embedding.weight.shape == (2, 128 * 3 * 3)
    assert net.output.weight.shape == (10, 2)


def test_lenet_is_the_original_ports_small_network():
    net = models.LeNet()
    net.initialize()
    net(nd.zeros((1, 1, 28, 28)))
    convs = [b for b in net.body if b.__class__.__name__ == 'Conv2D']
    assert [c.weight.shape for c in convs] == [(20, 1, 5, 5), (50, 20, 5, 5)]
    assert not [b for b in net.body if b.__class__.__name__ == 'Dense']  # no hidden dense layer
    assert net.embedding.weight.shape == (2, 50 * 4 * 4)


def test_default_activation_is_the_trainers():
    from runs.records import Arch
    net = models.LeNetPlus()
    acts = [b for b in net.body if b.__class__.__name__ == 'LeakyReLU']
    assert len(acts) == 6 and Arch().act == 'leaky'


def test_prelu_network_trains_end_to_end(tmp_path):
    """main.py --act prelu: the hybridized network trains (the loss falls, every slope moves off its 0.25)
    and the checkpoint records the activation."""
    from helpers import QUICK, dirs, run_main
    from runs import checkpoints
    rc, out, err = run_main('--train', '--act', 'prelu', '--epochs', '2', '--precision', 'float32', '--prefix', 'p',
                            *QUICK, *dirs(tmp_path))
    assert rc == 0, err
    ckpt = checkpoints.load_checkpoint(str(tmp_path / 'ckpt' / 'p-last.params'))
    assert ckpt.meta.run.arch.act == 'prelu'
    slopes = [v.asnumpy() for k, v in ckpt.arrays.items() if k.endswith('alpha')]
    assert len(slopes) == 6 and all(np.abs(a - 0.25).max() > 1e-4 for a in slopes)
    losses = [e.loss_softmax for e in ckpt.meta.history]
    assert len(losses) == 2 and losses[1] < losses[0], losses
