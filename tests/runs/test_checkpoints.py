"""runs/checkpoints.py: one file written whole, read back exactly, and clear errors for what is not one."""
import json
import os
import pickle

import numpy as np
import pytest
from mxnet import autograd, gluon, nd

from runs import checkpoints, records
import models
from helpers import Touch, a_meta


def small_net():
    net = models.LeNet(feature_size=2)
    net.initialize()
    net(nd.zeros((1, 1, 28, 28)))
    return net


def test_checkpoint_is_atomic(tmp_path, monkeypatch):
    net = small_net()
    path = str(tmp_path / 'a.params')
    checkpoints.save_checkpoint(path, net, nd.ones((10, 2)), a_meta(1))
    real_fsync = os.fsync

    def crash(fd):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, 'fsync', crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoints.save_checkpoint(path, net, nd.zeros((10, 2)), a_meta(2))
    monkeypatch.setattr(os, 'fsync', real_fsync)
    ckpt = checkpoints.load_checkpoint(path)
    assert ckpt.meta.epoch == 1 and ckpt.centers.asnumpy().sum() == 20
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
    checkpoints.save_checkpoint(path, net, nd.arange(20).reshape((10, 2)), a_meta(3), {'net': trainer})
    ckpt = checkpoints.load_checkpoint(path)
    assert ckpt.path == path and ckpt.meta.epoch == 3 and ckpt.meta.format == checkpoints.CKPT_FORMAT
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
    checkpoints.save_checkpoint(path, small_net(), nd.zeros((10, 2)), a_meta())
    wider = models.LeNet(feature_size=3)
    wider.initialize()
    wider(nd.zeros((1, 1, 28, 28)))
    with pytest.raises(checkpoints.CheckpointError, match='does not fit the network'):
        checkpoints.restore_net(wider, checkpoints.load_checkpoint(path))


def stepped(optimizer, params):
    net = small_net()
    trainer = gluon.Trainer(net.collect_params(), optimizer, params)
    for _ in range(3):  # Adam's bias correction depends on the update count: make it 3
        with autograd.record():
            loss = net(nd.random.normal(shape=(4, 1, 28, 28)))[0].sum()
        loss.backward()
        trainer.step(4)
    return net, trainer


def assert_same_states(a, b):
    sa, sb = a._updaters[0].states, b._updaters[0].states
    assert sorted(sa) == sorted(sb)
    for i in sa:
        if sa[i] is None:  # SGD without momentum keeps nothing
            assert sb[i] is None
            continue
        left, right = (sa[i], sb[i]) if isinstance(sa[i], tuple) else ((sa[i],), (sb[i],))
        for x, y in zip(left, right):
            np.testing.assert_array_equal(x.asnumpy(), y.asnumpy())
    assert b._optimizer.num_update == a._optimizer.num_update
    assert b._optimizer._index_update_count == a._optimizer._index_update_count


@pytest.mark.parametrize('optimizer,params', [('sgd', {'learning_rate': 0.1, 'momentum': 0.9}),
                                              ('sgd', {'learning_rate': 0.5, 'momentum': 0.0}),
                                              ('adam', {'learning_rate': 0.001})])
def test_optimizer_states_are_arrays_and_come_back(tmp_path, optimizer, params):
    net, trainer = stepped(optimizer, params)
    path = str(tmp_path / 'd.params')
    checkpoints.save_checkpoint(path, net, nd.zeros((10, 2)), a_meta(), {'net': trainer})
    ckpt = checkpoints.load_checkpoint(path)
    assert not any(k == 'states.net' for k in ckpt.arrays)  # no pickled blob: one array per state
    other = gluon.Trainer(small_net().collect_params(), optimizer, params)
    checkpoints.restore_trainer(other, ckpt, 'net')
    assert_same_states(trainer, other)
    wrong = gluon.Trainer(small_net().collect_params(), 'adam' if optimizer == 'sgd' else 'sgd', {})
    with pytest.raises(checkpoints.CheckpointError, match='resume with --optimizer %s' % optimizer):
        checkpoints.restore_trainer(wrong, ckpt, 'net')


# What a format-1 description held: the network's fields at its top, the epoch, the history so far.
FORMAT1_META = {'epoch': 1, 'format': 1, 'model': 'lenet', 'act': 'relu', 'feature_size': 2, 'num_classes': 10,
                'history': []}


def format1_checkpoint(path, net, trainer, states_blob=None):
    """A checkpoint as this project wrote them before format 2: the optimizer states as
    Trainer.save_states' pickle, in a uint8 array."""
    tmp = path + '.states'
    trainer.save_states(tmp)
    blob = open(tmp, 'rb').read() if states_blob is None else states_blob
    arrays = {'net.' + k: p.data() for k, p in net._collect_params_with_prefix().items()}
    arrays['centers'] = nd.zeros((10, 2))
    arrays['meta'] = nd.array(np.frombuffer(json.dumps(FORMAT1_META).encode(), np.uint8), dtype='uint8')
    arrays['states.net'] = nd.array(np.frombuffer(blob, np.uint8), dtype='uint8')
    nd.save(path, arrays)
    return path


def test_a_checkpoint_of_the_earlier_format_still_resumes(tmp_path):
    net, trainer = stepped('sgd', {'learning_rate': 0.1, 'momentum': 0.9})
    ckpt = checkpoints.load_checkpoint(format1_checkpoint(str(tmp_path / 'old.params'), net, trainer))
    other = gluon.Trainer(small_net().collect_params(), 'sgd', {'learning_rate': 0.1, 'momentum': 0.9})
    checkpoints.restore_trainer(other, ckpt, 'net')
    assert_same_states(trainer, other)


def test_a_crafted_checkpoint_runs_nothing(tmp_path):
    marker = tmp_path / 'ran'
    net, trainer = stepped('sgd', {'learning_rate': 0.1, 'momentum': 0.9})
    path = format1_checkpoint(str(tmp_path / 'evil.params'), net, trainer, pickle.dumps(Touch(str(marker))))
    other = gluon.Trainer(small_net().collect_params(), 'sgd', {'learning_rate': 0.1, 'momentum': 0.9})
    with pytest.raises(checkpoints.CheckpointError, match='not plain data.*refused, nothing was run'):
        checkpoints.restore_trainer(other, checkpoints.load_checkpoint(path), 'net')
    assert not marker.exists()
    pickle.loads(pickle.dumps(Touch(str(marker))))  # the same bytes through pickle itself: the file appears
    assert marker.exists()


@pytest.mark.parametrize('edit,said', [
    (lambda m: m.update(best='0.99'), "best '0.99'"),
    (lambda m: m.update(normalisation='0.1,0.3'), "normalisation '0.1,0.3'"),
    (lambda m: m.update(normalisation=[0.1, 0.0]), 'standard deviation above 0'),
    (lambda m: m.update(epoch=3), 'epoch 3 with a history of epochs [1]'),
    (lambda m: m['history'][0].update(test_acc_softmax=1.5), 'test_acc_softmax 1.5'),
    (lambda m: m['run']['optim'].update(lr='fast'), "Optim.lr is 'fast'"),
    (lambda m: m['run']['arch'].update(model='vgg16'), '--model vgg16: choose from'),
    (lambda m: m['run'].update(arch=None), 'no \'network\''),
    (lambda m: m.update(precision='float16'), "precision 'float16'"),
])
def test_an_edited_description_is_refused_with_what_is_wrong(tmp_path, edit, said):
    """Each value of a checkpoint's description is checked for its type and range when it is read: an
    edited one is refused before anything uses it (a TypeError mid-run otherwise)."""
    from runs.meta import Epoch
    path = str(tmp_path / 'e.params')
    meta = a_meta(1, history=[Epoch(1, 0.01, 1.0, None, 0.5, 0.5, 0.4)], best=0.5,
                  run=dict(optim=records.Optim()))
    checkpoints.save_checkpoint(path, small_net(), nd.zeros((10, 2)), meta)
    assert checkpoints.load_checkpoint(path).meta.history[0].test_acc_softmax == 0.5
    arrays = nd.load(path)
    described = json.loads(arrays['meta'].asnumpy().tobytes().decode())
    edit(described)
    arrays['meta'] = nd.array(np.frombuffer(json.dumps(described).encode(), np.uint8), dtype='uint8')
    nd.save(path, arrays)
    with pytest.raises(checkpoints.CheckpointError, match='is not a checkpoint of this project, or was edited'):
        checkpoints.load_checkpoint(path)
    try:
        checkpoints.load_checkpoint(path)
    except checkpoints.CheckpointError as e:
        assert said in str(e), str(e)
