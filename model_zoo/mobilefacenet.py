"""MobileFaceNet (Chen et al., "MobileFaceNets: Efficient CNNs for Accurate Real-Time Face Verification
on Mobile Devices", CCBR 2018), Table 1: about a million parameters, for 112x112 faces.

    input        (x - 127.5) / 128
    conv 3x3, 64, stride 2                                           112 -> 56
    depthwise conv 3x3, 64
    bottlenecks (expansion t, channels c, repeated n, first stride s):
        (2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)   56 -> 7
    conv 1x1, 512
    linear global depthwise conv (GDConv), its kernel the last map's size (7x7 at 112)    7 -> 1
    linear conv 1x1 to the features (a dense layer without bias), BN

A bottleneck (MobileNetV2's): conv 1x1 to t * c_in - depthwise conv 3x3 (stride) - linear conv 1x1 to c,
with the input added where stride 1 keeps the shape. Every convolution has no bias and a BN after it,
PReLU after all but the linear ones. The paper's features are 128-D; insightface's mbf, 512-D."""
from devices import compat  # noqa: F401  (before mxnet)

from mxnet.gluon import nn

from model_zoo.layers import Net, PReLU, class_layer

BOTTLENECKS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))
EPSILON = 1e-5
MIN_SIZE = 16  # four halvings leave 1 pixel of 16


def conv_block(channels, kernel=1, stride=1, groups=1, linear=False):
    """conv (no bias) - BN - PReLU (none when ``linear``)."""
    block = nn.HybridSequential(prefix='')
    block.add(nn.Conv2D(channels, kernel, strides=stride, padding=(kernel - 1) // 2,
                        groups=groups, use_bias=False),
              nn.BatchNorm(epsilon=EPSILON))
    if not linear:
        block.add(PReLU(channels))
    return block


class Bottleneck(nn.HybridBlock):
    """1x1 expansion to ``t * c_in`` - depthwise 3x3 (``stride``) - linear 1x1 projection to ``channels``,
    plus the input where the shape stays."""

    def __init__(self, channels_in, channels, t, stride, **kwargs):
        super(Bottleneck, self).__init__(**kwargs)
        self.residual = stride == 1 and channels_in == channels
        wide = t * channels_in
        with self.name_scope():
            self.body = nn.HybridSequential(prefix='')
            self.body.add(conv_block(wide), conv_block(wide, 3, stride, groups=wide), conv_block(channels, linear=True))

    def hybrid_forward(self, F, x):
        out = self.body(x)
        return out + x if self.residual else out


def last_map(size):
    """The side of the last feature map for a side of ``size``: four 3x3 stride-2 convolutions, padded 1."""
    for _ in range(4):
        size = (size + 1) // 2
    return size


class MobileFaceNet(Net):
    """MobileFaceNet for images of ``image_size`` (height, width), 112x112 in the paper: the global
    depthwise convolution takes the whole last map (7x7 there)."""

    def __init__(self, classes=10, feature_size=128, image_size=(112, 112), head=None, **kwargs):
        super(MobileFaceNet, self).__init__(**kwargs)
        kernel = tuple(last_map(s) for s in image_size)
        with self.name_scope():
            self.body = nn.HybridSequential(prefix='')
            self.body.add(conv_block(64, 3, 2), conv_block(64, 3, 1, groups=64))
            channels_in = 64
            for t, channels, n, stride in BOTTLENECKS:
                for i in range(n):
                    self.body.add(Bottleneck(channels_in, channels, t, stride if i == 0 else 1))
                    channels_in = channels
            self.body.add(conv_block(512))
            gdc = nn.HybridSequential(prefix='')  # the global depthwise convolution: one weight per place
            gdc.add(nn.Conv2D(512, kernel, groups=512, use_bias=False), nn.BatchNorm(epsilon=EPSILON))
            self.body.add(gdc)
            self.embedding = nn.HybridSequential(prefix='')
            self.embedding.add(nn.Flatten(), nn.Dense(feature_size, use_bias=False), nn.BatchNorm(epsilon=EPSILON))
            self.output = class_layer(classes, feature_size, head)
