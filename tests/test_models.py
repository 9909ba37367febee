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


# --------------------------------------------------------------------------- the face networks

def iresnet_count(units, features):
    """An IR-ResNet's parameters by arithmetic from its description (model_zoo/iresnet.py's docstring), with
    no MXNet: a convolution k*k*c_in*c_out (no bias), a BN 2c (scale and shift; insightface's last BN keeps
    its fixed scale, as PyTorch's parameters() counts it), a PReLU c slopes, the dense layer in*out + out."""
    total, c_in = 3 * 3 * 3 * 64 + 2 * 64 + 64, 64                          # stem
    for c, n in zip((64, 128, 256, 512), units):
        for u in range(n):
            total += 2 * c_in + 9 * c_in * c + 2 * c + c + 9 * c * c + 2 * c  # BN conv BN PReLU conv BN
            if u == 0:
                total += c_in * c + 2 * c                                    # 1x1 shortcut + BN
            c_in = c
    return total + 2 * 512 + 512 * 7 * 7 * features + features + 2 * features


def mobilefacenet_count(features):
    """MobileFaceNet's parameters by arithmetic from Chen et al.'s Table 1 (model_zoo/mobilefacenet.py)."""
    def block(c_in, c_out, k=1, groups=1, linear=False):
        return k * k * c_in // groups * c_out + 2 * c_out + (0 if linear else c_out)
    total, c_in = block(3, 64, 3) + block(64, 64, 3, 64), 64
    for t, c, n, _ in ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)):
        for _ in range(n):
            w = t * c_in
            total += block(c_in, w) + block(w, w, 3, w) + block(w, c, linear=True)
            c_in = c
    return total + block(128, 512) + block(512, 512, 7, 512, linear=True) + 512 * features + 2 * features


def weights(net):
    """Parameters without the class layer and without BN's running statistics (buffers, in PyTorch)."""
    return sum(int(np.prod(p.shape)) for name, p in net.collect_params().items()
               if not name.endswith(('running_mean', 'running_var')) and not name.startswith(net.output.prefix))


@pytest.mark.parametrize('name,features,expected', [
    ('iresnet18', 512, iresnet_count((2, 2, 2, 2), 512)), ('iresnet34', 512, iresnet_count((3, 4, 6, 3), 512)),
    ('iresnet50', 512, iresnet_count((3, 4, 14, 3), 512)), ('iresnet100', 512, iresnet_count((3, 13, 30, 3), 512)),
    ('mobilefacenet', 128, mobilefacenet_count(128))])
def test_face_networks_have_their_references_parameters_and_end_at_7x7(name, features, expected):
    """Each face network's parameters equal the count of its description (insightface's iresnet50 with a
    512-D embedding: 43.6 million; MobileFaceNet: 0.99 million, its paper's), and at 112x112 its last map is
    7x7 (MobileFaceNet's global depthwise convolution then takes all of it)."""
    net = models.get_model(name, 10, features, 'prelu', (112, 112))
    net.initialize()
    last = net.body[:-1] if name == 'mobilefacenet' else net.body
    assert last(nd.zeros((1, 3, 112, 112))).shape == (1, 512, 7, 7)
    scores, feats = net(nd.zeros((2, 3, 112, 112)))
    assert scores.shape == (2, 10) and feats.shape == (2, features)
    assert weights(net) == expected
    if name == 'iresnet50':
        assert round(expected / 1e6, 1) == 43.6
    if name == 'mobilefacenet':
        assert round(expected / 1e6, 2) == 1.00 and net.body[-1][0].weight.shape == (512, 1, 7, 7)
    del net


@pytest.mark.parametrize('size,smallest', [((112, 96), (7, 6)), ((16, 16), (1, 1))])
def test_face_networks_take_other_sizes_down_to_16(size, smallest):
    """SphereFace's 112x96 crops, and down to 16 pixels (four halvings); below that, one line."""
    from faults.errors import UserError
    for name in ('iresnet18', 'mobilefacenet'):
        net = models.get_model(name, 3, 8, 'prelu', size)
        net.initialize()
        assert net(nd.zeros((1, 3) + size))[1].shape == (1, 8)
    assert models.mobilefacenet.last_map(size[0]) == smallest[0]
    with pytest.raises(UserError, match='takes images of at least 16x16'):
        models.new_arch({'model': 'iresnet18'}, 3, (3, (15, 15)))
    with pytest.raises(UserError, match="PReLU"):
        models.new_arch({'model': 'mobilefacenet', 'act': 'leaky'}, 3, (3, (112, 112)))
    arch = models.new_arch({'model': 'iresnet18'}, 3, (3, (112, 112)))
    assert (arch.act, arch.feature_size) == ('prelu', 512)


BF16_GRAPH = r'''
import sys
sys.path.insert(0, %r)
from devices import compat
import mxnet as mx
from devices.precision import enable_bfloat16
import models
from center_loss import CenterLoss
from training.step import Objective
enable_bfloat16()
for name in sys.argv[1:]:
    net = models.get_model(name, 10, 16, 'prelu', (32, 32))
    objective = Objective(net, CenterLoss(10, 16))
    out = objective(mx.sym.var('data'), mx.sym.var('label'), mx.sym.var('counts'), mx.sym.var('warm'))
    types = mx.sym.Group(list(out)).infer_type(data='float32', label='float32', counts='float32', warm='float32')[1]
    print(name, types[4])
'''


def test_bfloat16_graphs_of_the_resnets_type_check():
    """With MXNet's bfloat16 (amp.init, in a process of its own) the ResNets' graphs, whose residual adds and
    batch norms pass bfloat16 on to the embedding's dense layer, type-check: the body's output comes back to
    float32 (without that cast: "Incompatible attr ... expected bfloat16, got float32"). Checked by type
    inference, which needs no bfloat16 instructions; the features stay float32."""
    import subprocess
    import sys
    from helpers import ROOT
    proc = subprocess.run([sys.executable, '-c', BF16_GRAPH % ROOT, 'resnet18', 'iresnet18', 'mobilefacenet',
                           'lenet++'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split('\n')[:4] == ['%s %s' % (n, "<class 'numpy.float32'>")
                                           for n in ('resnet18', 'iresnet18', 'mobilefacenet', 'lenet++')]
