"""Networks that return (class scores, features): LeNet++ of the paper, the original port's small
LeNet and the model zoo's ResNets; a new run's network (runs.records.Arch) from the flags and the
data, checked, and built."""
import dataclasses
import math

from devices import compat  # noqa: F401  (before mxnet)

import mxnet as mx
from mxnet import init, nd
from mxnet.gluon import nn

import margins
from faults.errors import UserError
from runs.records import ACTIVATIONS, HEADS, Arch, flag_value
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
    to the plain layout and back, forward and backward; MXNet's own ``LeakyReLU(act_type='prelu')`` is
    slower still (``python bench/step_speed.py`` times the three; docs/speed.md). In bfloat16 (main.py
    --precision) the convolutions take bfloat16 too, as the network's do.
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
        return channelwise(x, alpha) + channelwise(pos, 1 - alpha)


def activation(kind, channels, spatial=True):
    if kind == 'prelu':
        return PReLU(channels, spatial)
    if kind == 'leaky':
        return nn.LeakyReLU(LEAKY_SLOPE)
    if kind == 'relu':
        return nn.Activation('relu')
    raise ValueError('activation must be one of %s, got %r' % (ACTIVATIONS, kind))


class _Net(nn.HybridBlock):
    """Body -> Dense(feature_size) = features -> class layer = scores: a Dense layer (softmax), or a
    margin head of margins.py (``head``: (name, scale, margin)), whose scores without labels are its
    scaled cosines; step.Objective gives it the labels for the training loss.

    A head that compares normalised features (all but plain softmax and SphereFace without a scale)
    makes the network's features the normalised ones: the center loss, the nearest center, k-NN, the
    pictures and --verify then see what the head sees. (On raw features the center loss would pull
    their norms towards its centers, near 0, where the head's normalisation has no bound on its
    gradient: ArcFace + center loss became NaN in its first steps.)"""

    def hybrid_forward(self, F, x):
        features = self.embedding(self.body(x))
        if normalises(self.output):
            features = F.L2Normalization(features, mode='instance')
        return self.output(features), features


class LeNetPlus(_Net):
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


class LeNet(_Net):
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


class ResNet(_Net):
    """A ResNet of Gluon's model zoo (He et al. 2016), randomly initialised (nothing is downloaded),
    as the body: its convolutions and global average pooling, then a dense layer to
    ``feature_size`` (the embedding center loss acts on) and the class layer.

    Images smaller than 64 pixels get the zoo's "thumbnail" stem (one 3x3 convolution, no
    pooling), as for CIFAR; larger ones its ImageNet stem (7x7 stride 2, then max pooling).
    """

    def __init__(self, classes=10, feature_size=2, version=1, layers=18, thumbnail=False, head=None, **kwargs):
        super(ResNet, self).__init__(**kwargs)
        from mxnet.gluon.model_zoo import vision
        with self.name_scope():
            self.body = vision.get_resnet(version, layers, pretrained=False, thumbnail=thumbnail).features
            self.embedding = nn.Dense(feature_size)
            self.output = class_layer(classes, feature_size, head)


MODELS = {'lenet++': LeNetPlus, 'lenet': LeNet}
MODELS.update(('resnet%d%s' % (layers, '' if version == 1 else '_v2'), (version, layers))
              for version in (1, 2) for layers in (18, 34, 50, 101, 152))


def normalises(layer):
    """Whether the class layer ``layer`` compares normalised features."""
    return not isinstance(layer, nn.Dense) and layer.scale is not None


def class_layer(classes, feature_size, head=None):
    """A Dense layer of ``classes`` outputs (``head`` None or ('softmax', ...)), or the margin head
    ``head`` = (name, scale, margin) of margins.py."""
    if head is None or head[0] == 'softmax':
        return nn.Dense(classes)
    name, scale, margin = head
    return margins.HEADS[name](classes, feature_size, scale=scale, margin=margin)


def get_model(name, classes, feature_size, act, size=28, head=None):
    """The network ``name`` for images of ``size`` pixels (the smaller side); ``act`` is LeNet's, ``head``
    the class layer's (class_layer)."""
    if name not in MODELS:
        raise ValueError('model must be one of %s, got %r' % (sorted(MODELS), name))
    if name.startswith('resnet'):
        version, layers = MODELS[name]
        return ResNet(classes=classes, feature_size=feature_size, version=version, layers=layers,
                      thumbnail=size < 64, head=head)
    return MODELS[name](classes=classes, feature_size=feature_size, act=act, head=head)


# --------------------------------------------------------------------------- a run's network

# The fields that fix the network's shape, each the flag that sets it (channels and image_size: the data's).
ARCH_FLAGS = [f.name for f in dataclasses.fields(Arch)]


def min_image_size(model):
    """The smallest side a network of ``model`` takes: LeNet++'s three 2x2 poolings need 8 pixels,
    the original LeNet's two 5x5 convolutions without padding 16; a ResNet pools globally."""
    return 16 if model == 'lenet' else 8


def head_values(head, scale, margin):
    """(scale, margin) of the class layer ``head`` with --scale and --margin (None: the paper's)."""
    if head in (None, 'softmax'):
        if scale is not None or margin is not None:
            raise UserError('--%s is for a margin head (--head %s)' % ('scale' if scale is not None else 'margin',
                                                                       ', '.join(HEADS[1:])))
        return None, None
    if head == 'normface' and margin is not None:
        raise UserError('--margin: NormFace has none (its logits are the scaled cosines)')
    if head == 'arcface' and margin is not None and not 0 <= margin < math.pi / 2:
        raise UserError('--margin %g: ArcFace\'s angle must be in [0, pi/2), as insightface asks' % margin)
    kwargs = {k: v for k, v in (('scale', scale), ('margin', margin)) if v is not None}
    try:
        built = margins.HEADS[head](2, 2, **kwargs)
    except ValueError as e:
        raise UserError('--margin: %s' % e)
    if built.scale is not None and built.scale <= 0:
        raise UserError('--scale %g: must be > 0' % built.scale)
    return built.scale, built.margin


def head_title(head, scale, margin):
    """'CosFace s=64 m=0.35': a margin head as titles and reports name it; '' for the plain class layer."""
    if head in (None, 'softmax'):
        return ''
    return ' '.join([margins.HEADS[head].__name__] + ['%s=%g' % (k, v) for k, v in (('s', scale), ('m', margin))
                                                      if v is not None])


def new_arch(given, total_classes, shape):
    """The Arch of a new first stage: the flags ``given`` ({field: value or None}), the data's
    ``total_classes`` and ``shape`` ((channels, (height, width)), --image_size already applied).
    With a holdout the class layer has one output per trained class."""
    scale, margin = head_values(given.get('head'), given.get('scale'), given.get('margin'))
    values = dict(given, channels=shape[0], image_size=tuple(shape[1]), scale=scale, margin=margin)
    if values.get('num_classes') is None:  # one output per class of the dataset
        values['num_classes'] = total_classes
    arch = Arch(**{k: values[k] for k in ARCH_FLAGS if values.get(k) is not None})
    smallest = min_image_size(arch.model)
    if min(arch.image_size) < smallest:
        raise UserError('%s takes images of at least %dx%d, and these are %s: bring them up to size with '
                        '--image_size %d (or larger)' % (arch.model, smallest, smallest,
                                                         flag_value('image_size', arch.image_size), smallest))
    if arch.holdout:  # (imagesets.dataset.dense_holdout checked the classes and what they leave to train on)
        trained = total_classes - len(arch.holdout)
        if given.get('num_classes') not in (None, trained):
            raise UserError('--num_classes %d: with --holdout %s the class layer has one output per trained '
                            'class, %d; drop --num_classes' % (given['num_classes'], flag_value('holdout', arch.holdout),
                                                               trained))
        arch = dataclasses.replace(arch, num_classes=trained)
    return arch


def check_arch(arch, given, path):
    """A checkpoint's Arch against the flags ``given`` ({field: value or None}): a flag given must agree."""
    for key, value in dataclasses.asdict(arch).items():
        flag = given.get(key) if key != 'channels' else None  # the images' channels follow the network
        if flag is not None and (tuple(flag) if key == 'image_size' else flag) != value:
            raise UserError('%s was made with --%s %s, not %s: drop the flag or retrain'
                            % (path, key, flag_value(key, value), flag_value(key, flag)))
    return arch


def build_net(arch, ctxs):
    """The network of ``arch`` on ``ctxs``, initialised and hybridized (checkpoints.restore_net
    puts a checkpoint's weights in it)."""
    net = get_model(arch.model, arch.num_classes, arch.feature_size, arch.act, min(arch.image_size),
                    (arch.head, arch.scale, arch.margin))
    net.initialize(mx.init.Xavier(magnitude=2.24), ctx=ctxs)
    # settle deferred shapes so a checkpoint can be checked
    net(nd.zeros((1, arch.channels) + tuple(arch.image_size), ctx=ctxs[0]))
    net.hybridize(static_alloc=True, static_shape=True)
    return net
