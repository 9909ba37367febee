"""imagesets/dataset.py used as a library, on records built here: a dataset settled, opened, described
and loaded (the classes trained on, the normalisation)."""
import os

import mxnet as mx
import numpy as np
import pytest

import models
from devices.runtime import Runtime
from faults.errors import UserError
from helpers import digits, write_folder
from imagesets import dataset as data
from runs import records

RT = Runtime([mx.cpu()], 'float32', None, 0, 1, '', 'asked for', None, 'device')


def test_settle_says_what_a_folder_holds(idx, tmp_path):
    assert data.settle(records.Data(data_dir=idx)) == records.Data('mnist', os.path.abspath(idx))
    folder = write_folder(str(tmp_path / 'f'), {'train': digits(6, 0), 'test': digits(3, 1)})
    assert data.settle(records.Data(data_dir=folder)).dataset == 'images'
    with pytest.raises(UserError, match='holds image folders, not the IDX files of fashion-mnist'):
        data.settle(records.Data('fashion-mnist', folder))
    with pytest.raises(UserError, match='--dataset images needs --data_dir'):
        data.settle(records.Data('images'))
    with pytest.raises(UserError, match='--image_size is for your own images'):
        data.settle(records.Data('mnist', idx, image_size=(32, 32)))


def test_open_describes_the_data_and_notices_a_change(idx, tmp_path):
    raw = data.open_data(data.settle(records.Data(data_dir=idx, train_samples=40)))
    assert raw.facts.kind == 'idx' and raw.facts.train_images == 100 and raw.facts.test_images == 200
    assert len(raw.train[1]) == 40 and raw.shape == (1, (28, 28)) and raw.facts.classes == tuple('0123456789')
    data.check_same(raw, raw.facts, 'ckpt')
    data.check_same(raw, None, 'ckpt')  # a checkpoint of an earlier version records nothing to check
    other = records.Facts('idx', raw.facts.classes, raw.facts.ids, 101, 200, 'another')
    with pytest.raises(UserError, match='ckpt was made on other data.*101 train / 200 test'):
        data.check_same(raw, other, 'ckpt')


def test_load_keeps_the_trained_classes_and_normalises_with_their_statistics(idx):
    raw = data.open_data(data.settle(records.Data(data_dir=idx)))
    arch = models.new_arch({'holdout': data.dense_holdout(raw, (1, 3))}, 10, data.image_shape(raw))
    assert arch.num_classes == 8 and arch.holdout == (1, 3)
    loaded = data.load(raw, arch, RT)
    train_img, train_lbl = raw.train
    kept = ~np.isin(train_lbl, [1, 3])
    mean, std = train_img[kept].mean() / 255.0, train_img[kept].std() / 255.0
    assert loaded.normalisation == pytest.approx([mean, std])
    assert loaded.train_x.shape == (kept.sum(), 1, 28, 28) and loaded.classes.tolist() == [0, 2, 4, 5, 6, 7, 8, 9]
    np.testing.assert_allclose(loaded.train_x.x.asnumpy()[:, 0], (train_img[kept] / 255.0 - mean) / std, atol=1e-5)
    np.testing.assert_array_equal(loaded.classes[loaded.train_y.asnumpy().astype(int)], train_lbl[kept])
    assert set(loaded.held_y.asnumpy().astype(int)) <= {1, 3} and loaded.background == pytest.approx(-mean / std)
    with pytest.raises(UserError, match='has no class 12'):
        data.dense_holdout(raw, (12,))


def test_own_images_hold_out_test_classes_without_training_images(tmp_path):
    root = write_folder(str(tmp_path / 'f'), {'train': digits(12, 0), 'test': digits(8, 1, classes=4)},
                        names=('a', 'b', 'c', 'd'))
    raw = data.open_data(data.settle(records.Data(data_dir=root)))
    assert raw.facts.kind == 'folder' and raw.facts.classes == ('a', 'b', 'c', 'd')
    assert data.dense_holdout(raw, None) == (3,)
