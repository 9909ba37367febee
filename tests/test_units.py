"""imagesets.dataset, evaluation.frames, training.epoch and the commands used as a library: records built
here, no command line.

dataset: a dataset settled, opened, described and loaded (the classes trained on, the normalisation);
frames: where the frames of an epoch fall, what an epoch keeps of its features (the latest of each
image), a frame drawing what it is handed; commands: --test, --verify and --compare on a checkpoint
written here."""
import json
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import nd

import models
from devices.runtime import Runtime
from evaluation import commands, frames, pictures, predict, verify
from faults.errors import UserError
from helpers import a_meta, make_dataset
from imagesets import dataset as data
from runs import checkpoints, records
from runs.files import RunFiles
from test_own_data import digits, write_folder
from training import epoch

RT = Runtime([mx.cpu()], 'float32', None, 0, 1, '', 'asked for', None, 'device')


@pytest.fixture(scope='module')
def idx(tmp_path_factory):
    """A tiny IDX dataset: 100 training and 200 test images of random pixels, labels 0..9."""
    return make_dataset(str(tmp_path_factory.mktemp("idx") / "d"), n_train=100, n_test=200)


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


# ----------------------------------------------------------------- frames

def frames_of(folder, wanted, epochs, steps):
    return frames.Frames(RunFiles(folder, folder, 'u'), wanted, epochs, steps, 'softmax (first stage)', np.arange(3), 3,
                         ['a', 'b', 'c'], pictures.Projection())


@pytest.mark.parametrize('frames_wanted,epochs,steps,after', [
    (20, 6, 938, {234: 1, 469: 2, 704: 3}),   # 4 an epoch: three within, the epoch's end the fourth
    (6, 6, 100, {}),                          # one an epoch: its end
    (20, 2, 5, {1: 2, 2: 3, 3: 6, 4: 7}),     # more frames than steps: each step draws the earliest it stands for
])
def test_where_the_frames_of_an_epoch_fall(frames_wanted, epochs, steps, after, tmp_path):
    f = frames_of(str(tmp_path), frames_wanted, epochs, steps)
    assert f.after == after and all(f.due(s) for s in after) and not f.due(steps)


def test_an_epoch_keeps_the_latest_feature_of_each_reference_image_and_every_class_sum():
    gathered = epoch.Gathered(10, np.array([0, 1, 2, 3, 5, 6]), 3)  # images 4, 7, 8, 9 outside the reference
    gathered.add(np.array([0, 1, 2, 3]), nd.array([[0, 0], [1, 1], [2, 2], [3, 3]]), nd.array([0, 1, 2, 0]))
    gathered.add(np.array([2, 4, 6]), nd.array([[20, 20], [4, 4], [6, 6]]), nd.array([2, 1, 0]))
    rows, feats = gathered.latest()
    assert rows.tolist() == [0, 1, 2, 3, 5]  # image 6 is the reference's row 5; image 5 not seen yet
    assert feats.asnumpy().tolist() == [[0, 0], [1, 1], [20, 20], [3, 3], [6, 6]]  # image 2: its later feature
    gathered.flush()
    assert not gathered.covers and gathered.counts.tolist() == [3, 2, 2]
    assert gathered.sums.tolist() == [[9, 9], [5, 5], [22, 22]]  # every image trained on, 4 included


def test_a_frame_draws_what_it_is_handed_and_leaves_out_images_not_yet_trained_on(tmp_path):
    f = frames_of(str(tmp_path), 4, 1, 10)
    train = np.array([[0, 0], [np.nan, np.nan], [1, 1]], np.float32)
    f.draw(f.position(1, 5), (train, np.array([0, 1, 2]), 0.5), (np.zeros((2, 2)), np.array([0, 1]), 0.5),
           np.zeros((3, 2)))
    assert sorted(os.listdir(str(tmp_path))) == ['u-test-epoch-00.50.png', 'u-train-epoch-00.50.png']
    f.draw(1, (np.full((3, 2), np.nan), np.array([0, 1, 2]), 0.5), (np.zeros((2, 2)), np.array([0, 1]), 0.5),
           np.zeros((3, 2)))
    assert len(os.listdir(str(tmp_path))) == 2  # nothing trained on yet: no frame


# ----------------------------------------------------------------- the commands on a checkpoint

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
