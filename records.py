"""A run described by a few frozen records: the data it trains on, its schedule and optimizer, its
center loss (the network's shape is models.Arch). main.py builds them once from the command line,
each checked as it is built; every checkpoint stores them (``describe``), and a command that
continues a checkpoint starts from what it recorded (``recorded``) and compares the flags it was
given against it (``differences``).

Each field is named after the flag that sets it (``--lr`` sets ``Optim.lr``), so a difference is
said in the user's words: ``--lr 0.1, but ckpt/softmax-last.params records --lr 0.025``.
"""
import dataclasses

from errors import UserError

SCHEDULES = ('step', 'cosine', 'linear', 'onecycle')
OPTIMIZERS = ('sgd', 'adam')
UPDATES = ('gradient', 'paper')  # center_loss.UPDATES, without importing MXNet here


@dataclasses.dataclass(frozen=True)
class Data:
    """Which images a run uses: ``dataset`` (mnist, fashion-mnist, or 'images', your own; None: from
    the folder, else mnist), the folder read (None: the vendored MNIST, Debian's Fashion-MNIST), how
    many of each split (None: all), and for your own images the (height, width) they are brought to
    (None: their most common size)."""
    dataset: str = None
    data_dir: str = None
    train_samples: int = None
    test_samples: int = None
    image_size: tuple = None

    def __post_init__(self):
        if self.image_size is not None:
            object.__setattr__(self, 'image_size', tuple(self.image_size))


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the data was found to be when a run opened it: its kind ('idx', 'folder' or 'recordio'),
    its classes (names, and the labels they carry in the files), its images, and a fingerprint cheap
    to recompute (the files' names and sizes), which tells a later command whether it still reads
    the same images."""
    kind: str
    classes: tuple
    ids: tuple
    train_images: int
    test_images: int
    fingerprint: str

    def __post_init__(self):
        object.__setattr__(self, 'classes', tuple(self.classes))
        object.__setattr__(self, 'ids', tuple(self.ids))


@dataclasses.dataclass(frozen=True)
class Optim:
    """A stage's schedule and optimizer (schedule.py turns it into a rate at each step).

    ``warmup`` is in epochs; ``min_warmup_steps`` the fewest steps a warm-up lasts however short the
    epoch, ``min_epoch_steps`` the fewest steps an epoch lasts (a smaller set is passed over several
    times an epoch): together they keep the defaults safe on a set of a few hundred images."""
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

    def __post_init__(self):
        if self.lr_schedule not in SCHEDULES:
            raise UserError('--lr_schedule %s: choose from %s' % (self.lr_schedule, ', '.join(SCHEDULES)))
        if self.optimizer not in OPTIMIZERS:
            raise UserError('--optimizer %s: choose from %s' % (self.optimizer, ', '.join(OPTIMIZERS)))
        if self.lr_schedule != 'step' and self.warmup >= self.epochs:
            raise UserError('--warmup %g leaves nothing of %s for the %s schedule'
                            % (self.warmup, plural(self.epochs, 'epoch'), self.lr_schedule))
        if self.lr_schedule != 'step' and self.lr_final >= 1:
            raise UserError('--lr_final %g: the %s schedule ends below --lr, at lr * lr_final with lr_final < 1'
                            % (self.lr_final, self.lr_schedule))


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
        if self.center_update not in UPDATES:
            raise UserError('--center_update %s: choose from %s' % (self.center_update, ', '.join(UPDATES)))


# --------------------------------------------------------------------------- stored and compared

def to_json(record):
    """A record as JSON-able values (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(record).items()}


def from_json(kind, values):
    """The record ``kind`` from stored values; fields it did not store (an earlier version) keep
    their defaults, fields this version does not know are ignored."""
    known = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in values.items() if k in known})


def describe(**records):
    """What a checkpoint stores of its run: {name: record as JSON}."""
    return {name: to_json(record) for name, record in records.items() if record is not None}


def recorded(meta, name, kind):
    """The record ``name`` a checkpoint's description holds, or None (an earlier version's)."""
    values = meta.get('run', {}).get(name)
    return from_json(kind, values) if isinstance(values, dict) else None


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


def flag_text(field, value):
    """``--field value`` as the user types it (a switch alone, a size as HxW, a list with commas)."""
    if isinstance(value, bool):
        return '--%s' % field if value else 'no --%s' % field
    if value is None:
        return 'no --%s' % field
    if field == 'image_size':
        return '--image_size %dx%d' % tuple(value)
    if isinstance(value, (tuple, list)):
        return '--%s %s' % (field, ','.join(map(str, value)) or 'none')
    return '--%s %s' % (field, '%g' % value if isinstance(value, float) else value)


def plural(n, word):
    return '%d %s%s' % (n, word, '' if n == 1 else 's')


@dataclasses.dataclass(frozen=True)
class Output:
    """What a command draws and measures, not part of a run's description: pictures on or off and the
    frames of each GIF, the accuracy that picks the best checkpoint (None: the stage's own), and k-NN's k."""
    plotting: bool = True
    frames: int = 20
    eval_method: str = None
    knn_k: int = 10
