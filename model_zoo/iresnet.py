"""insightface's IR-ResNets (Deng et al., ArcFace, CVPR 2019; its MXNet ``fresnet`` and PyTorch ``iresnet``):
the ResNet of face recognition, for 112x112 faces, whose last feature map is 7x7.

    input    (x - 127.5) / 128                        (models.FACE_NORMALISATION: imagesets/dataset.py)
    stem     conv 3x3 stride 1, 64 channels - BN - PReLU          112 x 112, no max pooling
    stages   64, 128, 256, 512 channels, units [2,2,2,2] (18), [3,4,6,3] (34), [3,4,14,3] (50),
             [3,13,30,3] (100); each stage's first unit halves the size: 56, 28, 14, 7
    unit     BN - conv 3x3 - BN - PReLU - conv 3x3 (stride) - BN, plus the shortcut: the input, or
             conv 1x1 (stride) - BN where the shape changes (the "improved residual unit")
    embedding  BN - dropout - FC(feature_size) - BN without a learned scale (insightface's "E" output)

Convolutions have no bias (a BN follows each); BN's epsilon 1e-5, as the PyTorch definition's."""
from devices import compat  # noqa: F401  (before mxnet)

from mxnet.gluon import nn

from model_zoo.layers import Net, PReLU, class_layer

DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
WIDTHS = (64, 128, 256, 512)
EPSILON = 1e-5


def _bn(**kwargs):
    return nn.BatchNorm(epsilon=EPSILON, **kwargs)


def _conv(channels, kernel, stride):
    return nn.Conv2D(channels, kernel, strides=stride, padding=kernel // 2, use_bias=False)


class IBasicBlock(nn.HybridBlock):
    """The improved residual unit: BN - conv3x3 - BN - PReLU - conv3x3 (stride) - BN, plus the shortcut."""

    def __init__(self, channels, stride, downsample, **kwargs):
        super(IBasicBlock, self).__init__(**kwargs)
        with self.name_scope():
            self.body = nn.HybridSequential(prefix='')
            self.body.add(_bn(), _conv(channels, 3, 1), _bn(), PReLU(channels), _conv(channels, 3, stride), _bn())
            self.downsample = None
            if downsample:
                self.downsample = nn.HybridSequential(prefix='')
                self.downsample.add(_conv(channels, 1, stride), _bn())

    def hybrid_forward(self, F, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.body(x) + shortcut


class IResNet(Net):
    """IR-ResNet of ``layers`` (18, 34, 50 or 100) for faces of 112x112 (any size of at least
    MIN_SIZE: the embedding's dense layer takes the last map's size, 7x7 at 112). ``dropout`` before the
    embedding's dense layer (insightface's default: none)."""

    def __init__(self, classes=10, feature_size=512, layers=50, dropout=0.0, head=None, **kwargs):
        super(IResNet, self).__init__(**kwargs)
        if layers not in DEPTHS:
            raise ValueError('IR-ResNet depth must be one of %s, got %r' % (sorted(DEPTHS), layers))
        with self.name_scope():
            self.body = nn.HybridSequential(prefix='')
            self.body.add(_conv(WIDTHS[0], 3, 1), _bn(), PReLU(WIDTHS[0]))
            channels_in = WIDTHS[0]
            for channels, units in zip(WIDTHS, DEPTHS[layers]):
                for unit in range(units):
                    stride = 2 if unit == 0 else 1
                    self.body.add(IBasicBlock(channels, stride, stride != 1 or channels_in != channels))
                    channels_in = channels
            self.embedding = nn.HybridSequential(prefix='')
            self.embedding.add(_bn())
            if dropout:
                self.embedding.add(nn.Dropout(dropout))
            self.embedding.add(nn.Flatten(), nn.Dense(feature_size), _bn(scale=False))
            self.output = class_layer(classes, feature_size, head)


# The smallest side it takes: four halvings leave 1 pixel of 16.
MIN_SIZE = 16
