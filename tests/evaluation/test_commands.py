"""The commands that read checkpoints, used as a library: --test, --verify and --compare on a
checkpoint written here."""
import json
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import nd

import models
from devices.runtime import Runtime
from evaluation import commands, pictures, predict, verify
from faults.errors import UserError
from helpers import a_meta
from imagesets import dataset as data
from runs import checkpoints, records
from runs.files import RunFiles

RT = Runtime([mx.cpu()], 'float32', None, 0, 1, '', 'asked for', None, 'device')


@pytest.fixture(scope='module')
def checkpoint(idx, tmp_path_factory):
    """A checkpoint of an untrained LeNet with 2-D features on the IDX data, classes 1 and 3 held out."""
    tmp = tmp_path_factory.mktemp('ckpt')
    raw = data.open_data(data.settle(records.Data(data_dir=idx)))
    arch = models.new_arch({'model': 'lenet', 'act': 'relu', 'holdout': (1, 3)}, 10, data.image_shape(raw))
    loaded = data.load(raw, arch, RT)
    mx.random.seed(0)
    net = models.build_net(arch, [mx.cpu()])
    files = RunFiles(str(tmp / 'ckpt'), str(tmp / 'out'), 'unit')
    os.makedirs(files.ckpt_dir)
    os.makedirs(files.out_dir)
    meta = a_meta(1, arch, run=dict(data=raw.spec, facts=raw.facts), prefix='unit', classes=tuple(loaded.classes),
                  normalisation=tuple(loaded.normalisation))
    checkpoints.save_checkpoint(files.best, net, nd.array(np.random.RandomState(1).randn(8, 2)), meta)
    return files, checkpoints.load_checkpoint(files.best), loaded


def test_the_test_command_gives_each_method(checkpoint, capsys):
    files, ckpt, loaded = checkpoint
    results = commands.test(ckpt, RT, loaded, knn_k=3)
    assert set(results) == {'softmax', 'center', 'knn'} and all(0 <= v <= 1 for v in results.values())
    out = capsys.readouterr().out
    assert 'test unit (epoch 1): knn (k=3) accuracy' in out
    # which stage it measured, and how to measure another
    assert 'the first stage after epoch 1 (its second stage: --prefix unit-second; the last epoch: --checkpoint last)' in out
    # the same softmax accuracy by hand
    _, net, _ = commands.network(ckpt, [mx.cpu()])
    pred = net(loaded.test_x.x)[0].asnumpy().argmax(axis=1)
    assert results['softmax'] == pytest.approx((pred == loaded.test_y.asnumpy()).mean())


def test_verify_measures_the_held_out_classes(checkpoint):
    files, ckpt, loaded = checkpoint
    verify.verify([(files, ckpt)], RT, lambda c: loaded, files.out_dir, 'mnist')
    result = json.load(open(files.verify_json))
    assert result['holdout'] == [1, 3] and result['images'] == loaded.held_y.shape[0]
    assert 0 <= result['cosine']['auc'] <= 1 and 'open_set_auroc' in result['euclidean']
    assert os.path.isfile(files.roc)


def test_the_pictures_forward_only_the_training_images_drawn(checkpoint):
    files, ckpt, loaded = checkpoint
    _, net, _ = commands.network(ckpt, [mx.cpu()])
    drawn = pictures.plot_sample(loaded.train_x.shape[0], 5, size=30)  # 30 of the 100, not in a row
    everything = net(loaded.train_x.x)[1].asnumpy()
    np.testing.assert_allclose(predict.features_of(net, loaded.train_x, drawn), everything[drawn],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(predict.forward_all(net, loaded.train_x.subset(drawn))[1].asnumpy(), everything[drawn],
                               rtol=1e-5, atol=1e-5)


def test_compare_draws_each_run_and_skips_the_missing(checkpoint, capsys):
    files, ckpt, loaded = checkpoint
    missing = RunFiles(files.ckpt_dir, files.out_dir, 'none')
    path = commands.compare([(files, 'unit run', ckpt), (missing, 'absent', None)], RT, lambda c: loaded,
                            files.out_dir, 'mnist', 0)
    assert os.path.getsize(path) > 0 and 'skipping none' in capsys.readouterr().out
    with pytest.raises(UserError, match='found none of none-best.params'):
        commands.compare([(missing, 'absent', None)], RT, lambda c: loaded, files.out_dir, 'mnist', 0)
    with pytest.raises(UserError, match='found none of none-last.params'):  # --checkpoint last names that file
        commands.compare([(missing, 'absent', None)], RT, lambda c: loaded, files.out_dir, 'mnist', 0, 'last')


def test_verify_names_a_few_held_out_classes_and_counts_the_rest():
    """A glyph set holds out a thousand characters: --verify's line names ten and the count, not a wall."""
    assert verify.held_out_text((5, 6, 7, 8, 9)) == 'held-out classes 5,6,7,8,9'
    assert verify.held_out_text(tuple(range(10))) == 'held-out classes 0,1,2,3,4,5,6,7,8,9'
    assert verify.held_out_text(tuple(range(3, 971))) == 'held-out classes 3,4,5,6,7,8,9,10,11,12,... (968 classes)'
