"""Checkpoints: the network, the centers, optimizer states and a description in one file, written whole."""
import compat  # noqa: F401

import json
import os
import tempfile

import numpy as np
import mxnet as mx
from mxnet import nd

from runfiles import atomic_write

CKPT_FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, foreign or does not fit the network."""


class CheckpointNotFound(CheckpointError):
    pass


class Checkpoint(object):
    """A checkpoint as read from ``path``: ``arrays`` (name -> NDArray) and ``meta`` (its JSON description)."""

    def __init__(self, path, arrays, meta):
        self.path, self.arrays, self.meta = path, arrays, meta

    @property
    def centers(self):
        return self.arrays['centers']


def save_checkpoint(path, net, centers, meta, trainers=None):
    """One file with the network, the centers (K, d), a JSON description and,
    for resuming, the optimizer states of ``trainers`` ({name: gluon.Trainer})."""
    arrays = {'net.' + k: p.list_data()[0].as_in_context(mx.cpu())
              for k, p in net._collect_params_with_prefix().items()}
    arrays['centers'] = centers.as_in_context(mx.cpu())
    arrays['meta'] = _bytes_array(json.dumps(dict(meta, format=CKPT_FORMAT)).encode())
    directory = os.path.dirname(os.path.abspath(path))
    # mx.nd.save and Trainer.save_states only take file names: use private temp
    # files, then write the whole checkpoint in one atomic rename.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    os.close(fd)
    try:
        for name, trainer in (trainers or {}).items():
            trainer.save_states(tmp)
            with open(tmp, 'rb') as f:
                arrays['states.' + name] = _bytes_array(f.read())
        nd.save(tmp, arrays)
        with open(tmp, 'rb') as f:
            blob = f.read()
    finally:
        if os.path.exists(tmp):  # not when the folder itself was removed meanwhile
            os.remove(tmp)
    atomic_write(path, blob)


def _bytes_array(blob):
    return nd.array(np.frombuffer(blob, dtype=np.uint8), dtype='uint8')


def load_checkpoint(path):
    """The Checkpoint written by save_checkpoint at ``path``; CheckpointError if there is none."""
    if not os.path.isfile(path):
        raise CheckpointNotFound('checkpoint %s not found' % path)
    try:
        arrays = nd.load(path)
        meta = json.loads(arrays.pop('meta').asnumpy().tobytes().decode())
    except Exception:
        raise CheckpointError('%s is not a checkpoint of this project or is truncated; '
                              'retrain to make it again' % path)
    if not isinstance(arrays, dict) or 'centers' not in arrays:
        raise CheckpointError('%s is not a checkpoint of this project' % path)
    return Checkpoint(path, arrays, meta)


def restore_trainer(trainer, ckpt, name):
    """Load optimizer states saved by save_checkpoint into ``trainer``."""
    key = 'states.' + name
    if key not in ckpt.arrays:
        raise CheckpointError('%s holds no optimizer state for %s' % (ckpt.path, name))
    fd, tmp = tempfile.mkstemp(suffix='.states')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(ckpt.arrays[key].asnumpy().tobytes())
        trainer.load_states(tmp)
    finally:
        os.remove(tmp)


def restore_net(net, ckpt):
    """Load the network part of a checkpoint into an initialized ``net`` (on all its devices)."""
    for k, p in net._collect_params_with_prefix().items():
        value = ckpt.arrays.get('net.' + k)
        if value is None or value.shape != p.shape:
            raise CheckpointError('%s does not fit the network at %s' % (ckpt.path, k))
        p.set_data(value)
