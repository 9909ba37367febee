"""LeNet++ of Wen et al. (2016) and the small LeNet of the original Gluon port."""
from devices import compat  # noqa: F401  (before mxnet)

from mxnet.gluon import nn

from model_zoo.layers import Net, activation, class_layer


class LeNetPlus(Net):
    """LeNet++ of Wen et al. (2016), Table 1 / Fig. 2 of the paper.

    Three stages of two 5x5 convolutions (32, 64, 128 channels, padding 2),
    each stage followed by 2x2 max pooling, then a dense layer to
    ``feature_size`` (2 in the paper, to draw it) and the class layer.

    Parameters
    ----------
    classes : int
    feature_size : int
    act : {'leaky', 'prelu', 'relu'}, default 'leaky'
        'prelu' is the paper's. 'leaky' (slope 0.2) is this project's default:
        faster than PReLU on the CPU, and the results of docs/results.md were made with
        it. The original Gluon port's LeNet++ is this network with
        LeakyReLU(0.01).
    """

    def __init__(self, classes=10, feature_size=2, act='leaky', head=None, **kwargs):
        super(LeNetPlus, self).__init__(**kwargs)
        with self.name_scope():
            self.body = nn.HybridSequential(prefix='')
            for channels in (32, 64, 128):
                for _ in range(2):
                    self.body.add(nn.Conv2D(channels, kernel_size=5, padding=2),
                                  activation(act, channels))
                self.body.add(nn.MaxPool2D(pool_size=2, strides=2))
            self.body.add(nn.Flatten())
            self.embedding = nn.Dense(feature_size)
            self.output = class_layer(classes, feature_size, head)


class LeNet(Net):
    """The small LeNet of the original Gluon port, as its ``lenet.py`` has it:
    5x5 conv (20), 2x2 max pool, 5x5 conv (50), 2x2 max pool, then a dense
    layer to the features and one to the classes (ReLU after the convolutions
    by default, as there)."""

    def __init__(self, classes=10, feature_size=2, act='relu', head=None, **kwargs):
        super(LeNet, self).__init__(**kwargs)
        with self.name_scope():
            self.body = nn.HybridSequential(prefix='')
            self.body.add(nn.Conv2D(20, kernel_size=5), activation(act, 20),
                          nn.MaxPool2D(pool_size=2, strides=2),
                          nn.Conv2D(50, kernel_size=5), activation(act, 50),
                          nn.MaxPool2D(pool_size=2, strides=2),
                          nn.Flatten())
            self.embedding = nn.Dense(feature_size)
            self.output = class_layer(classes, feature_size, head)
