"""The networks, as a table a user reads: each name ``--model`` takes and the family that builds it
(model_zoo/, one file a family); ``get_model(name, ...)``; and a new run's network (runs.records.Arch)
from the flags and the data, checked, and built.

| name | family | for |
|---|---|---|
| ``lenet++`` | model_zoo/lenet.py | the paper's MNIST network (its 2-D features drawn) |
| ``lenet`` | model_zoo/lenet.py | the original Gluon port's small LeNet |
| ``resnet18`` ... ``resnet152_v2`` | model_zoo/resnet.py | the Gluon model zoo's ResNets, any image size |
| ``iresnet18/34/50/100`` | model_zoo/iresnet.py | insightface's IR-ResNets, 112x112 faces |
| ``mobilefacenet`` | model_zoo/mobilefacenet.py | MobileFaceNet (Chen et al. 2018), 112x112 faces, small machines |

Every network returns (class scores, features) and has ``embedder()``: the features alone, for export.
"""
import dataclasses
import math

from devices import compat  # noqa: F401  (before mxnet)

import mxnet as mx
from mxnet import nd

import margins
from faults.errors import UserError
from model_zoo import iresnet, mobilefacenet
from model_zoo.layers import ACTIVATIONS, LEAKY_SLOPE, PReLU, activation, class_layer, normalises  # noqa: F401
from model_zoo.lenet import LeNet, LeNetPlus
from model_zoo.resnet import ResNet
from runs.records import HEADS, Arch, flag_value

MODELS = {'lenet++': LeNetPlus, 'lenet': LeNet}
MODELS.update(('resnet%d%s' % (layers, '' if version == 1 else '_v2'), (version, layers))
              for version in (1, 2) for layers in (18, 34, 50, 101, 152))
MODELS.update(('iresnet%d' % layers, layers) for layers in sorted(iresnet.DEPTHS))
MODELS['mobilefacenet'] = mobilefacenet.MobileFaceNet
# The face networks: they take faces as insightface normalises them, (x - 127.5) / 128 (as
# (mean, std) of pixels scaled to [0, 1]), and default to 512-D features, a random mirror and no shift.
FACE_MODELS = tuple(name for name in MODELS if name.startswith('iresnet')) + ('mobilefacenet',)
FACE_NORMALISATION = (127.5 / 255, 128 / 255.0)
FACE_FEATURES = 512
FACE_SIZE = (112, 112)  # the crops they are made for: your own images are brought to it unless --image_size


def is_face(model):
    return model in FACE_MODELS


def get_model(name, classes, feature_size, act, size=28, head=None):
    """The network ``name`` for images of ``size`` pixels (an int, the smaller side, or (height, width));
    ``act`` is LeNet's, ``head`` the class layer's (class_layer)."""
    if name not in MODELS:
        raise ValueError('model must be one of %s, got %r' % (sorted(MODELS), name))
    shape = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    if name.startswith('resnet'):
        version, layers = MODELS[name]
        return ResNet(classes=classes, feature_size=feature_size, version=version, layers=layers,
                      thumbnail=min(shape) < 64, head=head)
    if name.startswith('iresnet'):
        return iresnet.IResNet(classes=classes, feature_size=feature_size, layers=MODELS[name], head=head)
    if name == 'mobilefacenet':
        return mobilefacenet.MobileFaceNet(classes=classes, feature_size=feature_size, image_size=shape, head=head)
    return MODELS[name](classes=classes, feature_size=feature_size, act=act, head=head)


# --------------------------------------------------------------------------- a run's network

# The fields that fix the network's shape, each the flag that sets it (channels and image_size: the data's).
ARCH_FLAGS = [f.name for f in dataclasses.fields(Arch)]


def min_image_size(model):
    """The smallest side a network of ``model`` takes: LeNet++'s three 2x2 poolings need 8 pixels,
    the original LeNet's two 5x5 convolutions without padding 16, the face networks' four halvings 16
    (1 pixel left: they are made for 112); a ResNet pools globally."""
    if model.startswith('iresnet'):
        return iresnet.MIN_SIZE
    if model == 'mobilefacenet':
        return mobilefacenet.MIN_SIZE
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
    if is_face(values.get('model')):  # the architecture's PReLU, and the field's 512-D features by default
        if values.get('act') not in (None, 'prelu'):
            raise UserError('--act %s: %s\'s activation is PReLU, as its paper\'s; drop --act'
                            % (values['act'], values['model']))
        values['act'] = 'prelu'
        if values.get('feature_size') is None:
            values['feature_size'] = FACE_FEATURES
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
    net = get_model(arch.model, arch.num_classes, arch.feature_size, arch.act, tuple(arch.image_size),
                    (arch.head, arch.scale, arch.margin))
    net.initialize(mx.init.Xavier(magnitude=2.24), ctx=ctxs)
    # settle deferred shapes so a checkpoint can be checked
    net(nd.zeros((1, arch.channels) + tuple(arch.image_size), ctx=ctxs[0]))
    net.hybridize(static_alloc=True, static_shape=True)
    return net
