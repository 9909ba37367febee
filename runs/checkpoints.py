"""Checkpoints: the network, the centers, optimizer states and a description in one file, written whole.

A checkpoint holds arrays and JSON only, so reading one runs no code, wherever it
came from. Gluon's ``Trainer.save_states`` pickles the optimizer (``pickle.load``
on a shared file runs whatever it was crafted to run): here each optimizer state
is stored as its arrays, with its layout and update counts in the description.
Checkpoints of earlier versions of this project, which held that pickle, are read
by an unpickler that builds only MXNet's arrays and optimizers (safepickle.py).
"""
from devices import compat  # noqa: F401  (before mxnet)

import json
import os
import struct

import numpy as np
import mxnet as mx
from mxnet import nd

from faults import safepickle
from faults.atomic import atomic_write
from faults.errors import CheckpointError, CheckpointNotFound
from runs import meta as meta_mod

CKPT_FORMAT = meta_mod.FORMAT
LIST_MAGIC = 0x112  # mx.nd.save's header of a list of arrays (kMXAPINDArrayListMagic)
STATES = 'states.'
# What the optimizer-state pickle of a format-1 checkpoint may name: arrays and the optimizers offered.
FORMAT1_PICKLE = {('mxnet.ndarray.ndarray', 'NDArray'), ('builtins', 'bytearray'),
                  ('mxnet.optimizer.optimizer', 'SGD'), ('mxnet.optimizer.optimizer', 'Adam')}


class Checkpoint(object):
    """A checkpoint as read from ``path``: ``arrays`` (name -> NDArray) and ``meta`` (its description,
    a runs.meta.Meta)."""

    def __init__(self, path, arrays, meta):
        self.path, self.arrays, self.meta = path, arrays, meta

    @property
    def centers(self):
        return self.arrays['centers']


def _updaters(trainer):
    """The Updaters that hold ``trainer``'s optimizer states (the KVStore's when it updates)."""
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    if trainer._update_on_kvstore:
        return [trainer._kvstore._updater]
    return trainer._updaters


def trainer_states(name, trainer):
    """(arrays, description) of ``trainer``'s optimizer: each state's arrays under
    ``states.<name>.<index>[.<part>]``, and what JSON needs to put them back."""
    updater = _updaters(trainer)[0]
    arrays, layout = {}, {}
    for index, state in updater.states.items():
        key = '%s%s.%d' % (STATES, name, index)
        if state is None:                     # SGD without momentum keeps nothing
            layout[str(index)] = None
        elif isinstance(state, nd.NDArray):   # SGD's momentum
            arrays[key] = state.as_in_context(mx.cpu())
            layout[str(index)] = 'array'
        else:                                 # Adam's (mean, variance)
            for part, value in enumerate(state):
                arrays['%s.%d' % (key, part)] = value.as_in_context(mx.cpu())
            layout[str(index)] = len(state)
    optimizer = updater.optimizer
    counts = {str(ctx): {str(i): int(c) for i, c in per.items()}
              for ctx, per in optimizer._all_index_update_counts.items()}
    return arrays, dict(optimizer=type(optimizer).__name__.lower(), layout=layout,
                        num_update=int(optimizer.num_update), update_counts=counts)


def save_checkpoint(path, net, centers, meta, trainers=None, extra=None):
    """One file with the network, the centers (K, d), the description ``meta`` (a runs.meta.Meta, as
    JSON) and, for resuming, the optimizer states of ``trainers`` ({name: gluon.Trainer}) and ``extra``
    arrays ({name: numpy array}: what an epoch kept, in a checkpoint saved within it)."""
    arrays = {'net.' + k: p.list_data()[0].as_in_context(mx.cpu())
              for k, p in net._collect_params_with_prefix().items()}
    arrays['centers'] = centers.as_in_context(mx.cpu())
    arrays.update((name, nd.array(value, dtype=value.dtype)) for name, value in (extra or {}).items())
    optimizers = {}
    for name, trainer in (trainers or {}).items():
        states, optimizers[name] = trainer_states(name, trainer)
        arrays.update(states)
    arrays['meta'] = _bytes_array(json.dumps(dict(meta.to_json(), format=CKPT_FORMAT, optimizers=optimizers)).encode())
    atomic_write(path, params_bytes(arrays))


def params_bytes(arrays):
    """The bytes ``mx.nd.save(path, arrays)`` would write, made one array at a time (a class layer of
    100,000 classes is 200 MB: the file is never held whole), for atomic_write, whose failure says the
    operating system's reason (MXNet's own writer says only "FileStream.Write incomplete")."""
    names = list(arrays)
    yield struct.pack('<QQQ', LIST_MAGIC, 0, len(names))
    for k in names:
        yield bytes(arrays[k].__getstate__()['handle'])  # MXNDArraySaveRawBytes: each array
    yield struct.pack('<Q', len(names))
    for k in names:
        name = k.encode()
        yield struct.pack('<Q', len(name)) + name


def _bytes_array(blob):
    return nd.array(np.frombuffer(blob, dtype=np.uint8), dtype='uint8')


def load_checkpoint(path, hint='', within=False):
    """The Checkpoint written by save_checkpoint at ``path``; CheckpointError if there is none
    (``hint``: what the user can do about a missing one, appended to the message), and for one saved
    within an epoch (a stop's) unless ``within`` (the stage that continues it): its weights are
    mid-epoch, no stage's end."""
    if not os.path.isfile(path):
        raise CheckpointNotFound('checkpoint %s not found%s' % (path, hint))
    try:
        arrays = nd.load(path)
        described = json.loads(arrays.pop('meta').asnumpy().tobytes().decode())
    except Exception:
        raise CheckpointError('%s is not a checkpoint of this project or is truncated; '
                              'retrain to make it again' % path)
    if not isinstance(arrays, dict) or 'centers' not in arrays:
        raise CheckpointError('%s is not a checkpoint of this project' % path)
    try:
        meta = meta_mod.from_json(described)
    except meta_mod.MetaError as e:
        raise CheckpointError('%s is not a checkpoint of this project, or was edited: %s' % (path, e))
    if meta.within is not None and not within:
        raise CheckpointError('%s was saved within epoch %d, at step %d (a stop): continue it with --resume first, or '
                              'read the best checkpoint (--checkpoint best)' % (path, meta.within.epoch,
                                                                             meta.within.step))
    return Checkpoint(path, arrays, meta)


def _check(ckpt, what, value, shape, dtype=np.float32):
    """An array of the checkpoint against the shape and type its place expects."""
    if value is None:
        raise CheckpointError('%s lacks %s: it was not made for this network' % (ckpt.path, what))
    if tuple(value.shape) != tuple(shape) or np.dtype(value.dtype) != np.dtype(dtype):
        raise CheckpointError('%s holds %s as %s %s where this network needs %s %s: it was made for another '
                              'network, or is damaged' % (ckpt.path, what, np.dtype(value.dtype).name,
                                                         _shape(value.shape), np.dtype(dtype).name, _shape(shape)))
    return value


def _shape(shape):
    return '(%s)' % ', '.join(map(str, shape))


def checked_centers(ckpt, num_classes, feature_size):
    """The checkpoint's centers, checked against (num_classes, feature_size)."""
    return _check(ckpt, 'the centers', ckpt.centers, (num_classes, feature_size))


def restore_trainer(trainer, ckpt, name):
    """Put the optimizer states saved by save_checkpoint (or by a format-1 checkpoint) into ``trainer``."""
    if ckpt.meta.format < 2:
        states, optimizer = _format1_states(ckpt, name)
    else:
        states, optimizer = _array_states(ckpt, name)
    kind = type(trainer._optimizer).__name__.lower()
    if optimizer['optimizer'] != kind:
        raise CheckpointError('%s holds %s states for %s, not %s: resume with --optimizer %s'
                              % (ckpt.path, optimizer['optimizer'], name, kind, optimizer['optimizer']))
    updaters = _updaters(trainer)
    expected = set(range(len(trainer._params)))
    if set(states) - expected or (ckpt.meta.format >= 2 and set(states) != expected):
        raise CheckpointError('%s holds optimizer states that do not fit the network (%s)' % (ckpt.path, name))
    for index, state in states.items():  # each state has its parameter's shape (SGD's momentum, Adam's moments)
        param = trainer._params[index]
        for part in (state if isinstance(state, tuple) else () if state is None else (state,)):
            _check(ckpt, 'the optimizer state of %s' % param.name, part, param.shape, param.dtype)
    for updater in updaters:  # like Trainer.load_states: each device's updater, copied to its context on use
        updater.states = dict(states)
        updater.states_synced = dict.fromkeys(states, False)
    opt = trainer._optimizer
    for updater in updaters:
        updater.optimizer = opt
    opt.num_update = optimizer['num_update']
    opt._all_index_update_counts = {int(ctx): {int(i): c for i, c in per.items()}
                                    for ctx, per in optimizer['update_counts'].items()} or {0: {}}
    opt._index_update_count = opt._all_index_update_counts.setdefault(0, {})


def _array_states(ckpt, name):
    described = ckpt.meta.optimizers.get(name)
    if described is None:
        raise CheckpointError('%s holds no optimizer state for %s' % (ckpt.path, name))
    states = {}
    try:
        for index, layout in described['layout'].items():
            key = '%s%s.%s' % (STATES, name, index)
            if layout is None:
                states[int(index)] = None
            elif layout == 'array':
                states[int(index)] = ckpt.arrays[key]
            else:
                states[int(index)] = tuple(ckpt.arrays['%s.%d' % (key, part)] for part in range(int(layout)))
        return states, described
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CheckpointError('%s: its optimizer states for %s are incomplete' % (ckpt.path, name))


def _format1_states(ckpt, name):
    """A format-1 checkpoint's pickled (states, optimizer), read without running code."""
    blob = ckpt.arrays.get(STATES + name)
    if blob is None:
        raise CheckpointError('%s holds no optimizer state for %s' % (ckpt.path, name))
    try:
        loaded = safepickle.loads(blob.asnumpy().tobytes(), FORMAT1_PICKLE)
    except safepickle.UnsafePickle as e:
        raise CheckpointError('%s: its optimizer states for %s are not plain data: %s' % (ckpt.path, name, e))
    try:
        states, optimizer = loaded
        if not isinstance(states, dict) or not all(
                s is None or isinstance(s, nd.NDArray) or (isinstance(s, tuple) and all(
                    isinstance(v, nd.NDArray) for v in s)) for s in states.values()):
            raise TypeError
        counts = {str(ctx): {str(i): int(c) for i, c in per.items()}
                  for ctx, per in optimizer._all_index_update_counts.items()}
        described = dict(optimizer=type(optimizer).__name__.lower(), num_update=int(optimizer.num_update),
                         update_counts=counts)
        return {int(i): s for i, s in states.items()}, described
    except (TypeError, ValueError, AttributeError):
        raise CheckpointError('%s: its optimizer states for %s are not what this project saves' % (ckpt.path, name))


def restore_net(net, ckpt):
    """Load the network part of a checkpoint into an initialized ``net`` (on all its devices), each
    weight checked against the shape and type the network expects."""
    params = net._collect_params_with_prefix()
    extra = sorted(k for k in ckpt.arrays if k.startswith('net.') and k[4:] not in params)
    if extra:
        raise CheckpointError('%s does not fit the network: it holds %s, which this network does not have'
                              % (ckpt.path, extra[0]))
    for k, p in params.items():
        value = ckpt.arrays.get('net.' + k)
        if value is None or value.shape != p.shape:
            raise CheckpointError('%s does not fit the network at %s' % (ckpt.path, k))
        p.set_data(_check(ckpt, 'the weight ' + k, value, p.shape, p.dtype))
