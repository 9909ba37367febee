"""What every network of the zoo shares: the activations (PReLU in a form that keeps oneDNN's layout),
the class layer (a dense layer, or a margin head of margins.py), and ``Net``, which joins a body, an
embedding and a class layer into (scores, features)."""
from devices import compat  # noqa: F401  (before mxnet)

from mxnet import init
from mxnet.gluon import nn

import margins

ACTIVATIONS = ('prelu', 'leaky', 'relu')
# This project's slope, with which its results (docs/results.md) were made. The original
# Gluon port's LeNet++ uses LeakyReLU(alpha=0.01); the two were not compared.
LEAKY_SLOPE = 0.2


class PReLU(nn.HybridBlock):
    """Per-channel PReLU (He et al. 2015), the paper's activation.

    y = max(x, 0) + a_c * min(x, 0), with one learned slope a_c per channel, computed as

        y = a_c * x + (1 - a_c) * max(x, 0)

    (the same function: x where x > 0, a_c * x elsewhere; the same gradients), each product a
    depthwise 1x1 convolution. Why: every operator then is one of oneDNN's (convolution, ReLU, sum),
    so the network's activations keep oneDNN's blocked layout from one convolution to the next.
    Written max(x, 0) + a * (x - max(x, 0)), MXNet's elementwise subtraction reorders every activation
    to the plain layout and back, forward and backward, which is merely slower; MXNet's own
    ``LeakyReLU(act_type='prelu')`` is slower still (``python bench/step_speed.py`` times the three;
    docs/speed.md). In bfloat16 (main.py --precision) the convolutions take bfloat16 too, as the
    network's do.
    """

    def __init__(self, channels, spatial=True, alpha=0.25, **kwargs):
        super(PReLU, self).__init__(**kwargs)
        self._channels = channels
        self._spatial = spatial
        with self.name_scope():
            self.alpha = self.params.get('alpha', shape=(channels, 1, 1, 1) if spatial else (1, channels),
                                         init=init.Constant(alpha))

    def hybrid_forward(self, F, x, alpha):
        pos = F.Activation(x, act_type='relu')                    # max(x, 0)
        if not self._spatial:  # after a dense layer: a broadcast product, no layout to keep
            return pos + F.broadcast_mul(x - pos, alpha)

        def channelwise(data, scale):  # scale_c * data on channel c
            return F.Convolution(data, scale, kernel=(1, 1), num_filter=self._channels,
                                 num_group=self._channels, no_bias=True)
        # 1 - a written -a + 1 (the same number, exactly): MXNet 1.9.1's ONNX exporter folds `1 - a` on a
        # parameter as a - 1 (it looks for a node named "_rminusscalar...", and Gluon's names carry a prefix)
        return channelwise(x, alpha) + channelwise(pos, alpha * -1 + 1)


def activation(kind, channels, spatial=True):
    """The activation ``kind`` ('prelu', 'leaky', 'relu') after a layer of ``channels`` outputs."""
    if kind == 'prelu':
        return PReLU(channels, spatial)
    if kind == 'leaky':
        return nn.LeakyReLU(LEAKY_SLOPE)
    if kind == 'relu':
        return nn.Activation('relu')
    raise ValueError('activation must be one of %s, got %r' % (ACTIVATIONS, kind))


def class_layer(classes, feature_size, head=None):
    """A Dense layer of ``classes`` outputs (``head`` None or ('softmax', ...)), or the margin head
    ``head`` = (name, scale, margin) of margins.py."""
    if head is None or head[0] == 'softmax':
        return nn.Dense(classes)
    name, scale, margin = head
    return margins.HEADS[name](classes, feature_size, scale=scale, margin=margin)


def normalises(layer):
    """Whether the class layer ``layer`` compares normalised features."""
    return not isinstance(layer, nn.Dense) and layer.scale is not None


def _amp_on():
    """Whether MXNet's mixed precision is on in this process (devices/precision.enable_bfloat16)."""
    from mxnet.contrib.amp import amp
    return bool(getattr(amp, '_amp_initialized', False))


class Net(nn.HybridBlock):
    """Body -> embedding = features -> class layer = scores: a Dense layer (softmax), or a margin head
    of margins.py, whose scores without labels are its scaled cosines; training.step.Objective gives
    it the labels for the training loss. A family sets ``body``, ``embedding`` and ``output``.

    A head that compares normalised features (all but plain softmax and SphereFace without a scale)
    makes the network's features the normalised ones: the center loss, the nearest center, k-NN, the
    pictures and --verify then see what the head sees. (On raw features the center loss would pull
    their norms towards its centers, near 0, where the head's normalisation has no bound on its
    gradient: ArcFace + center loss became NaN in its first steps.)

    In bfloat16 (MXNet's mixed precision casts the convolutions' inputs) the body's output comes back
    to float32 before the embedding: the operators after a convolution (batch norm, ReLU, pooling)
    keep whatever type they are given, and a dense layer's float32 weights cannot meet bfloat16
    data. The features are float32 in either precision."""

    def hybrid_forward(self, F, x):
        body = self.body(x)
        if _amp_on():
            body = F.amp_cast(body, dtype='float32')
        features = self.embedding(body)
        if normalises(self.output):
            features = F.L2Normalization(features, mode='instance')
        return self.output(features), features

    def embedder(self):
        """The network without its class layer: images -> features, for export (evaluation/export.py)."""
        return Embedder(self)


class Embedder(nn.HybridBlock):
    """A Net's body and embedding alone: images -> its features (normalised where its head normalises
    them), sharing the Net's parameters. The normalisation is L2Normalization's 'channel' mode on the
    features as (N, d, 1, 1): the same numbers as Net's 'instance' mode, in the form MXNet's ONNX
    exporter writes (LpNormalization)."""

    def __init__(self, net, **kwargs):
        super(Embedder, self).__init__(prefix='', **kwargs)
        self.net = net

    def hybrid_forward(self, F, x):
        features = self.net.embedding(self.net.body(x))
        if normalises(self.net.output):
            features = F.L2Normalization(features.reshape((0, -1, 1, 1)), mode='channel').reshape((0, -1))
        return features
