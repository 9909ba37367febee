"""checkpoints.py: one file written whole, read back exactly, and clear errors for what is not one."""
import os

import numpy as np
import pytest
from mxnet import autograd, gluon, nd

import checkpoints
import models


def small_net():
    net = models.LeNet(feature_size=2)
    net.initialize()
    net(nd.zeros((1, 1, 28, 28)))
    return net


def test_checkpoint_is_atomic(tmp_path, monkeypatch):
    net = small_net()
    path = str(tmp_path / 'a.params')
    checkpoints.save_checkpoint(path, net, nd.ones((10, 2)), {'epoch': 1})
    real_fsync = os.fsync

    def crash(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, 'fsync', crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save_checkpoint(path, net, nd.zeros((10, 2)), {'epoch': 2})
    monkeypatch.setattr(os, 'fsync', real_fsync)
    ckpt = checkpoints.load_checkpoint(path)
    assert ckpt.meta['epoch'] == 1 and ckpt.centers.asnumpy().sum() == 20
    assert sorted(os.listdir(str(tmp_path))) == ['a.params']
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # an ordinary file's mode, not mkstemp's 0600
    open(path, 'wb').write(b'not a checkpoint')
    with pytest.raises(checkpoints.CheckpointError, match='not a checkpoint'):
        checkpoints.load_checkpoint(path)


def test_roundtrip_restores_network_and_optimizer_state(tmp_path):
    net = small_net()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1, 'momentum': 0.9})
    x = nd.random.normal(shape=(4, 1, 28, 28))
    with autograd.record():
        loss = net(x)[0].sum()
    loss.backward()
    trainer.step(4)  # momentum now holds a state worth saving
    path = str(tmp_path / 'b.params')
    checkpoints.save_checkpoint(path, net, nd.arange(20).reshape((10, 2)), {'epoch': 3}, {'net': trainer})
    ckpt = checkpoints.load_checkpoint(path)
    assert ckpt.path == path and ckpt.meta['epoch'] == 3 and ckpt.meta['format'] == checkpoints.CKPT_FORMAT
    other = small_net()
    checkpoints.restore_net(other, ckpt)
    for (k, p), q in zip(net.collect_params().items(), other.collect_params().values()):
        np.testing.assert_array_equal(p.data().asnumpy(), q.data().asnumpy(), err_msg=k)
    other_trainer = gluon.Trainer(other.collect_params(), 'sgd', {'learning_rate': 0.1, 'momentum': 0.9})
    checkpoints.restore_trainer(other_trainer, ckpt, 'net')
    for i, state in trainer._updaters[0].states.items():
        np.testing.assert_array_equal(state.asnumpy(), other_trainer._updaters[0].states[i].asnumpy())
    with pytest.raises(checkpoints.CheckpointError, match='no optimizer state for centers'):
        checkpoints.restore_trainer(other_trainer, ckpt, 'centers')


def test_missing_and_misfitting_checkpoints(tmp_path):
    with pytest.raises(checkpoints.CheckpointNotFound, match='nothere.params not found'):
        checkpoints.load_checkpoint(str(tmp_path / 'nothere.params'))
    path = str(tmp_path / 'c.params')
    checkpoints.save_checkpoint(path, small_net(), nd.zeros((10, 2)), {})
    wider = models.LeNet(feature_size=3)
    wider.initialize()
    wider(nd.zeros((1, 1, 28, 28)))
    with pytest.raises(checkpoints.CheckpointError, match='does not fit the network'):
        checkpoints.restore_net(wider, checkpoints.load_checkpoint(path))
