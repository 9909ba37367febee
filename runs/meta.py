"""What a checkpoint says of itself, as typed records: the run it belongs to (``Run``), the stage,
each epoch's figures (``Epoch``) and the state a resumed stage continues from (``Meta``). Converted
to and from the checkpoint's JSON here alone, with every value's type and range checked on the way
in, and the checkpoints of earlier versions (no records, the network's fields at the top) read here
alone too.
"""
import dataclasses
from typing import Dict, List, Optional, Tuple

from faults.errors import UserError
from runs import records
from runs.records import Arch, Center, Data, Facts, Optim, Output, is_a, to_json

FORMAT = 3  # 1: optimizer states as a pickle (read safely); 2: as arrays; 3: the run's records
STAGES = ('first', 'second')
PRECISIONS = ('float32', 'bfloat16')
# What checkpoints made before a field of Arch existed were made with, and before the records (format
# 3), the data they name at the top of their description.
ARCH_BEFORE = {'holdout': (), 'channels': 1, 'image_size': (28, 28), 'head': 'softmax', 'scale': None,
               'margin': None}


class MetaError(ValueError):
    """A description that is not this project's, or whose values are of the wrong type or range."""


@dataclasses.dataclass
class Epoch:
    """One epoch's figures, as the metrics JSON and every checkpoint keep them: the rate of its last
    step, its mean losses and training accuracy, the test accuracy by each method (k-NN only when
    it picks the best checkpoint), and what it cost. ``pairs``: the verification sets measured after
    it ({name: {'accuracy', 'std', 'threshold' and the flip test's}}), empty where there are none."""
    epoch: int
    lr: float
    loss_softmax: Optional[float]
    loss_center: Optional[float]
    train_acc: float
    test_acc_softmax: float
    test_acc_center: float
    test_acc_knn: Optional[float] = None
    train_time: float = 0.0
    time: float = 0.0
    images: int = 0
    frame_time: float = 0.0
    seconds: float = 0.0
    pairs: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)

    def accuracy(self, method):
        """The accuracy by ``method``: 'softmax', 'center' or 'knn' on the test images, or 'pairs', the mean
        10-fold accuracy of the verification sets by the flip test."""
        if method == 'pairs':  # by the flip test where measured, as insightface picks its best (earlier: plain)
            return sum(r.get('accuracy_flip', r['accuracy']) for r in self.pairs.values()) / len(self.pairs)
        return {'softmax': self.test_acc_softmax, 'center': self.test_acc_center, 'knn': self.test_acc_knn}[method]

    def to_json(self):
        values = dataclasses.asdict(self)
        if not self.pairs:
            del values['pairs']
        if self.test_acc_knn is None:
            del values['test_acc_knn']
        return values


@dataclasses.dataclass(frozen=True)
class Run:
    """The records of a run (runs/records.py) as a checkpoint stores them; None where a checkpoint of
    an earlier version stored none."""
    arch: Arch
    data: Optional[Data] = None
    facts: Optional[Facts] = None
    optim: Optional[Optim] = None
    center: Optional[Center] = None
    output: Optional[Output] = None

    def to_json(self):
        return {f.name: to_json(getattr(self, f.name)) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}


@dataclasses.dataclass(frozen=True)
class Within:
    """Where a checkpoint saved within an epoch stands: the epoch under way, the steps of it done, the sums of
    its softmax loss, center loss and correct predictions and the images they are over, the seconds it had
    spent drawing and in all. (Its features kept so far are arrays of the checkpoint: training/epoch.py.)"""
    epoch: int
    step: int
    sums: Tuple[float, ...]
    seen: int
    frame_time: float
    seconds: float

    def __post_init__(self):
        object.__setattr__(self, 'sums', tuple(self.sums))
        if self.epoch < 1 or self.step < 1 or len(self.sums) != 3 or self.seen < 0:
            raise ValueError('within epoch %d at step %d' % (self.epoch, self.step))


@dataclasses.dataclass
class Meta:
    """A checkpoint's description: its run, which stage and prefix, the dataset's ids of the classes
    trained on (``classes[label]``), the normalisation (mean, std), the precision it trained in, the
    epoch it was saved after and its figures, the best accuracy so far, every epoch's figures, the
    2-D projection of its pictures (PCA: mean and components, empty for 2-D features), and, filled
    in by runs/checkpoints.py, its format and optimizer states' layout. ``within``: for a last checkpoint
    saved within an epoch (a stop, --save_minutes), where it stands (``epoch`` is then the last epoch
    completed, 0 for none); None at an epoch's end."""
    run: Run
    stage: str
    prefix: str
    classes: Tuple[int, ...]
    normalisation: Tuple[float, float]
    precision: str
    epoch: int
    best: float
    history: List[Epoch]
    projection: dict = dataclasses.field(default_factory=dict)
    format: int = FORMAT
    optimizers: dict = dataclasses.field(default_factory=dict)
    within: Optional[Within] = None

    @property
    def metrics(self):
        """The figures of the epoch it was saved after."""
        return self.history[-1]

    def to_json(self):
        return dict(run=self.run.to_json(), stage=self.stage, prefix=self.prefix, classes=[int(c) for c in self.classes],
                    normalisation=[float(v) for v in self.normalisation], precision=self.precision, epoch=self.epoch,
                    metrics=self.metrics.to_json() if self.history else None, best=self.best, history=[h.to_json() for h in self.history],
                    projection=self.projection, format=self.format, optimizers=self.optimizers,
                    within=to_json(self.within) if self.within else None)


def from_json(values):
    """The Meta of a checkpoint's JSON description; MetaError naming the first value of the wrong
    type or range, or what is missing."""
    if not isinstance(values, dict):
        raise MetaError('its description is not a mapping')
    try:
        return _meta(values)
    except (TypeError, KeyError, ValueError, UserError) as e:
        raise MetaError('its description has %s' % (e if not isinstance(e, KeyError) else 'no %s' % e))


def _meta(values):
    history = [_epoch(h) for h in _typed(values, 'history', list, [])]
    epoch = _typed(values, 'epoch', int)
    within = values.get('within')
    within = None if within is None else records.from_json(Within, within)
    if epoch < (0 if within else 1) or [h.epoch for h in history] != list(range(1, len(history) + 1)) or \
            (history and len(history) != epoch) or (within and within.epoch != epoch + 1):
        raise ValueError('epoch %d with a history of epochs %s' % (epoch, [h.epoch for h in history]))
    normalisation = tuple(_typed(values, 'normalisation', list, [0.0, 1.0]))
    if len(normalisation) != 2 or not all(is_a(v, float) for v in normalisation) or normalisation[1] <= 0:
        raise ValueError('normalisation %r (a mean and a standard deviation above 0)' % (normalisation,))
    classes = _typed(values, 'classes', list, [])
    if not all(is_a(c, int) and c >= 0 for c in classes):
        raise ValueError('classes %r' % classes)
    best = _typed(values, 'best', float, -1.0)
    if not -1.0 <= best <= 1.0:
        raise ValueError('best %r (an accuracy)' % best)
    return Meta(_run(values), _one_of(values, 'stage', STAGES, 'first'), _typed(values, 'prefix', str, ''),
                tuple(classes), normalisation, _one_of(values, 'precision', PRECISIONS, 'float32'), epoch, best,
                history, _projection(values.get('projection') or {}), _typed(values, 'format', int, 1),
                _typed(values, 'optimizers', dict, {}), within)


def _typed(values, key, kind, default=KeyError):
    if key not in values:
        if default is KeyError:
            raise KeyError(key)
        return default
    if not is_a(values[key], kind):
        raise TypeError('%s %r' % (key, values[key]))
    return values[key]


def _one_of(values, key, choices, default):
    value = _typed(values, key, str, default)
    if value not in choices:
        raise ValueError('%s %r (one of %s)' % (key, value, ', '.join(choices)))
    return value


def _epoch(values):
    if not isinstance(values, dict):
        raise TypeError('an epoch recorded as %r' % (values,))
    known = {f.name for f in dataclasses.fields(Epoch)}
    record = records.from_json(Epoch, {k: v for k, v in values.items() if k in known and k != 'pairs'})
    pairs = values.get('pairs', {})
    if not isinstance(pairs, dict) or not all(isinstance(v, dict) and all(is_a(x, float) for x in v.values())
                                              for v in pairs.values()):
        raise TypeError('pairs %r' % (pairs,))
    record.pairs = pairs
    for name in ('train_acc', 'test_acc_softmax', 'test_acc_center'):
        if not 0.0 <= getattr(record, name) <= 1.0:
            raise ValueError('%s %r in epoch %d' % (name, getattr(record, name), record.epoch))
    return record


def _run(values):
    """The Run a description records; that of an earlier version, from the fields at its top."""
    run = values.get('run')
    if run is None:  # formats 1 and 2: the network's fields (and the data's names) at the top
        arch = {k: values[k] for k in dataclasses.asdict(Arch()) if k in values}
        if not {'model', 'act', 'feature_size', 'num_classes'} <= set(arch):
            raise KeyError('network (an earlier version\'s, which recorded none)')
        data = Data(values.get('dataset', 'mnist'), values.get('data_dir'), values.get('train_samples'))
        return Run(records.from_json(Arch, dict(ARCH_BEFORE, **arch)), records.from_json(Data, to_json(data)))
    if not isinstance(run, dict):
        raise TypeError('run %r' % (run,))
    kinds = {'arch': Arch, 'data': Data, 'facts': Facts, 'optim': Optim, 'center': Center, 'output': Output}
    found = {name: records.from_json(kind, dict(ARCH_BEFORE, **run[name]) if name == 'arch' else run[name])
             for name, kind in kinds.items() if run.get(name) is not None}
    if 'arch' not in found:
        raise KeyError('network')
    return Run(**found)


def _projection(values):
    """{} or {'mean': d floats, 'components': d rows of 2 floats}."""
    if not values:
        return {}
    mean, components = values.get('mean'), values.get('components')
    ok = isinstance(mean, list) and isinstance(components, list) and len(mean) == len(components) and \
        all(is_a(v, float) for v in mean) and \
        all(isinstance(row, list) and len(row) == 2 and all(is_a(v, float) for v in row) for row in components)
    if not ok:
        raise ValueError('a projection that is not a mean and 2 components')
    return {'mean': mean, 'components': components}
