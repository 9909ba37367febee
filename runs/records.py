"""A run described by a few frozen records: the data it trains on (``Data``) and what it was found to
be (``Facts``), the network (``Arch``), a stage's schedule and optimizer (``Optim``) and center loss
(``Center``), and what it draws and measures (``Output``). main.py builds them once from the command
line, each checked as it is built; every checkpoint stores them (runs/meta.py), and a command that
continues a checkpoint starts from what it recorded and compares the flags it was given against it
(``differences``).

Each field is named after the flag that sets it (``--lr`` sets ``Optim.lr``), so a difference is
said in the user's words: ``--lr 0.1, but ckpt/softmax-last.params records --lr 0.025``. Each field
is typed, and ``from_json`` checks a stored value's type before a record is built from it.
"""
import dataclasses
import math
import typing
from typing import Optional, Tuple

from faults.errors import UserError

DATASETS = ('fashion-mnist', 'mnist', 'images')  # the IDX sets utils.py knows, and 'images', your own
SCHEDULES = ('step', 'cosine', 'linear', 'onecycle')
OPTIMIZERS = ('sgd', 'adam')
UPDATES = ('gradient', 'paper')  # center_loss.UPDATES, without importing MXNet here
EVAL_METHODS = ('softmax', 'center', 'knn')
ACTIVATIONS = ('prelu', 'leaky', 'relu')
HEADS = ('softmax', 'arcface', 'cosface', 'normface', 'sphereface')  # margins.HEADS and the plain class layer
MODELS = ('lenet++', 'lenet') + tuple('resnet%d%s' % (layers, suffix) for suffix in ('', '_v2')
                                      for layers in (18, 34, 50, 101, 152)) + \
    tuple('iresnet%d' % layers for layers in (18, 34, 50, 100)) + ('mobilefacenet',)  # models.MODELS' names


def _choice(value, choices, flag):
    if value not in choices:
        raise UserError('--%s %s: choose from %s' % (flag, value, ', '.join(choices)))


@dataclasses.dataclass(frozen=True)
class Data:
    """Which images a run uses: ``dataset`` (mnist, fashion-mnist, or 'images', your own; None: from
    the folder, else mnist), the folder read (None: the vendored MNIST, Debian's Fashion-MNIST), how
    many of each split (None: all), for your own images the (height, width) they are brought to
    (None: their most common size), the share of each class's images held out for testing where the
    folder has no test split (``test_split``; None: the folder's own split), and the verification sets
    measured each epoch (``val_sets``: names of .bin files beside the images, or paths; None: every
    one there; (): none)."""
    dataset: Optional[str] = None
    data_dir: Optional[str] = None
    train_samples: Optional[int] = None
    test_samples: Optional[int] = None
    image_size: Optional[Tuple[int, ...]] = None
    test_split: Optional[float] = None
    val_sets: Optional[Tuple[str, ...]] = None

    def __post_init__(self):
        for name in ('image_size', 'val_sets'):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.test_split is not None and not 0 < self.test_split <= 0.5:
            raise UserError('--test_split %g: a share of each class\'s images, above 0 and at most 0.5'
                            % self.test_split)


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the data was found to be when a run opened it: its kind ('idx', 'folder' or 'recordio'),
    its classes (names, and the labels they carry in the files), its images, and a fingerprint cheap
    to recompute (the files' names and sizes), which tells a later command whether it still reads
    the same images."""
    kind: str
    classes: Tuple[str, ...]
    ids: Tuple[int, ...]
    train_images: int
    test_images: int
    fingerprint: str

    def __post_init__(self):
        object.__setattr__(self, 'classes', tuple(self.classes))
        object.__setattr__(self, 'ids', tuple(self.ids))


@dataclasses.dataclass(frozen=True)
class Arch:
    """The network's shape, and that of the images it takes (channels, (height, width)): from the
    flags and the data for a new first stage (models.new_arch), else from the checkpoint."""
    model: str = 'lenet++'
    act: str = 'leaky'
    feature_size: int = 2
    num_classes: int = 10
    holdout: Tuple[int, ...] = ()
    channels: int = 1
    image_size: Tuple[int, ...] = (28, 28)
    head: str = 'softmax'
    scale: Optional[float] = None
    margin: Optional[float] = None

    def __post_init__(self):
        object.__setattr__(self, 'holdout', tuple(self.holdout))
        object.__setattr__(self, 'image_size', tuple(self.image_size))
        _choice(self.model, MODELS, 'model')
        _choice(self.act, ACTIVATIONS, 'act')
        _choice(self.head, HEADS, 'head')
        if min(self.feature_size, self.num_classes, self.channels, *self.image_size) < 1 or \
                len(self.image_size) != 2 or self.channels not in (1, 3):
            raise UserError('a network of %d-D features, %d classes and %dx%s images cannot be built'
                            % (self.feature_size, self.num_classes, self.channels, 'x'.join(map(str, self.image_size))))


@dataclasses.dataclass(frozen=True)
class Optim:
    """A stage's schedule and optimizer (training/schedule.py turns it into a rate at each step).

    ``warmup`` is in epochs; ``min_warmup_steps`` the fewest steps a warm-up lasts however short the
    epoch, ``min_epoch_steps`` the fewest steps an epoch lasts (a smaller set is passed over several
    times an epoch): together they keep the defaults safe on a set of a few hundred images. ``shift``
    and ``mirror``: the augmentation (a random translation of up to ``shift`` pixels, a random
    horizontal mirror of half the images); a checkpoint that records no mirror trained without."""
    epochs: int = 6
    batch_size: int = 64
    optimizer: str = 'sgd'
    lr: float = 0.025
    lr_schedule: str = 'cosine'
    warmup: float = 0.5
    min_warmup_steps: int = 0
    min_epoch_steps: int = 0
    lr_final: float = 0.0
    lr_step: int = 8
    lr_factor: float = 0.1
    momentum: float = 0.9
    momentum_low: float = 0.85
    wd: float = 5e-4
    shift: int = 2
    seed: int = 42
    mirror: bool = False

    def __post_init__(self):
        _choice(self.lr_schedule, SCHEDULES, 'lr_schedule')
        _choice(self.optimizer, OPTIMIZERS, 'optimizer')
        check_warmup(self.lr_schedule, self.warmup, self.epochs)
        if self.lr_schedule != 'step' and self.lr_final >= 1:
            raise UserError('--lr_final %g: the %s schedule ends below --lr, at lr * lr_final with lr_final < 1'
                            % (self.lr_final, self.lr_schedule))
        if min(self.epochs, self.batch_size, self.lr_step) < 1 or min(self.lr, self.lr_factor) <= 0 or \
                min(self.warmup, self.min_warmup_steps, self.min_epoch_steps, self.lr_final, self.momentum,
                    self.momentum_low, self.wd, self.shift, self.seed) < 0:
            raise UserError('a schedule of %d epochs of batch %d at lr %g cannot be'
                            % (self.epochs, self.batch_size, self.lr))


def check_warmup(schedule, warmup, epochs):
    """A warm-up of ``warmup`` epochs must leave some of ``epochs`` to anneal (but for 'step')."""
    if schedule != 'step' and warmup >= epochs:
        raise UserError('--warmup %g leaves nothing of %s for the %s schedule'
                        % (warmup, plural(epochs, 'epoch'), schedule))


@dataclasses.dataclass(frozen=True)
class Center:
    """The center loss of a stage: on or off, lambda (its weight), alpha (the centers' rate), how
    the centers learn, and the epochs over which its pull on the features warms up."""
    center_loss: bool = False
    lmbd: float = 1.0
    alpha: float = 0.5
    center_update: str = 'gradient'
    lmbd_warmup: float = 0.0

    def __post_init__(self):
        _choice(self.center_update, UPDATES, 'center_update')
        if self.lmbd < 0 or self.alpha <= 0 or self.lmbd_warmup < 0:
            raise UserError('--lmbd %g, --alpha %g: lambda must be 0 or more, alpha above 0'
                            % (self.lmbd, self.alpha))


@dataclasses.dataclass(frozen=True)
class Output:
    """What a stage draws, measures and keeps: where its pictures go, pictures on or off and the frames of
    each GIF, the accuracy that picks the best checkpoint (None: the stage's own), k-NN's k, and the minutes
    between saves within an epoch (0: at epochs' ends and stops only)."""
    out_dir: str = 'output'
    plotting: bool = True
    frames: int = 20
    eval_method: Optional[str] = None
    knn_k: int = 10
    save_minutes: float = 30.0

    def __post_init__(self):
        if self.eval_method is not None:
            _choice(self.eval_method, EVAL_METHODS, 'eval_method')
        if not 1 <= self.frames <= 1000 or self.knn_k < 1 or self.save_minutes < 0:
            raise UserError('--frames %d, --knn_k %d: frames from 1 to 1000, k at least 1'
                            % (self.frames, self.knn_k))


# --------------------------------------------------------------------------- stored and compared

def to_json(record):
    """A record as JSON-able values (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(record).items()}


def from_json(kind, values):
    """The record ``kind`` from stored values, each checked against its field's type (TypeError names
    the first that is not); fields it did not store (an earlier version) keep their defaults, fields
    this version does not know are ignored. The record's own checks raise UserError."""
    if not isinstance(values, dict):
        raise TypeError('%s is stored as %s, not as a mapping' % (kind.__name__, type(values).__name__))
    hints = typing.get_type_hints(kind)
    known = {}
    for field in dataclasses.fields(kind):
        if field.name in values:
            if not is_a(values[field.name], hints[field.name]):
                raise TypeError('%s.%s is %r' % (kind.__name__, field.name, values[field.name]))
            known[field.name] = values[field.name]
    return kind(**known)


def is_a(value, kind):
    """Whether a JSON value fits the type ``kind`` (int, float, str, bool, Optional[...], Tuple[..., ...])."""
    if typing.get_origin(kind) is typing.Union:
        return any(is_a(value, k) for k in typing.get_args(kind))
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        return isinstance(value, (list, tuple)) and all(is_a(v, item) for v in value)
    if kind is type(None):
        return value is None
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def differences(recorded_record, given):
    """[(flag, recorded value, given value)] for each flag in ``given`` ({field: value}) that
    differs from ``recorded_record``."""
    out = []
    for field, value in sorted(given.items()):
        was = getattr(recorded_record, field)
        if isinstance(was, tuple) or isinstance(value, tuple):
            same = tuple(was or ()) == tuple(value or ())
        else:
            same = was == value
        if not same:
            out.append((field, was, value))
    return out


def flag_value(field, value):
    """A flag's value as the user types it: a size as HxW, a list with commas ('none' when empty)."""
    if field == 'image_size':
        return '%dx%d' % tuple(value)
    if isinstance(value, (tuple, list)):
        return ','.join(map(str, value)) or 'none'
    return '%g' % value if isinstance(value, float) else str(value)


def flag_text(field, value):
    """``--field value`` as the user types it (a switch alone, 'no --field' for one not given)."""
    if isinstance(value, bool):
        return '--%s' % field if value else 'no --%s' % field
    if value is None:
        return 'no --%s' % field
    return '--%s %s' % (field, flag_value(field, value))


def plural(n, word):
    return '%d %s%s' % (n, word, '' if n == 1 else 's')
