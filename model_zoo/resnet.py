"""The Gluon model zoo's ResNets (He et al. 2016) as a body, for images of any size."""
from devices import compat  # noqa: F401  (before mxnet)

from mxnet.gluon import nn

from model_zoo.layers import Net, class_layer


class ResNet(Net):
    """A ResNet of Gluon's model zoo, randomly initialised (nothing is downloaded), as the body: its
    convolutions and global average pooling, then a dense layer to ``feature_size`` (the embedding
    center loss acts on) and the class layer.

    Images smaller than 64 pixels get the zoo's "thumbnail" stem (one 3x3 convolution, no
    pooling), as for CIFAR; larger ones its ImageNet stem (7x7 stride 2, then max pooling). For faces
    the field's own networks (iresnet, mobilefacenet) end at 7x7 where this one ends at 4x4.
    """

    def __init__(self, classes=10, feature_size=2, version=1, layers=18, thumbnail=False, head=None, **kwargs):
        super(ResNet, self).__init__(**kwargs)
        from mxnet.gluon.model_zoo import vision
        with self.name_scope():
            self.body = vision.get_resnet(version, layers, pretrained=False, thumbnail=thumbnail).features
            self.embedding = nn.Dense(feature_size)
            self.output = class_layer(classes, feature_size, head)
