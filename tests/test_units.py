"""data.py, frames.py and commands.py used as a library: records built here, no command line.

data: a dataset settled, opened, described and loaded (the classes trained on, the normalisation);
frames: where the frames of an epoch fall, and that a frame within an epoch draws the images' latest
features; commands: --test, --verify and --compare on a checkpoint written here."""
import json
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import nd

import checkpoints
import commands
import data
import frames
import models
import pictures
import records
from errors import UserError
from helpers import make_dataset
from runfiles import RunFiles
from runtime import Runtime
from test_own_data import digits, write_folder

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
    arch = models.new_arch({'holdout': data.dense_holdout(raw, (1, 3))}, 10, data.image_shape(raw), 'mnist')
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

def loaded_for_frames(n_train=40, n_test=20):
    rng = np.random.RandomState(0)
    x = lambda n: data.images.InMemory(nd.array(rng.randn(n, 1, 28, 28)))  # noqa: E731
    y = lambda n: nd.array(rng.randint(0, 3, n))  # noqa: E731
    return data.Loaded(x(n_train), y(n_train), x(n_test), y(n_test), None, None, np.arange(3), 3, [0.0, 1.0],
                       ['a', 'b', 'c'], 0.0)


@pytest.mark.parametrize('frames_wanted,epochs,steps,after', [
    (20, 6, 938, {234: 1, 469: 2, 704: 3}),   # 4 an epoch: three within, the epoch's end the fourth
    (6, 6, 100, {}),                          # one an epoch: its end
    (20, 2, 5, {1: 2, 2: 3, 3: 6, 4: 7}),     # more frames than steps: each step draws the earliest it stands for
])
def test_where_the_frames_of_an_epoch_fall(frames_wanted, epochs, steps, after):
    f = frames.Frames(np.arange(10), loaded_for_frames(), frames_wanted, epochs, 0, steps)
    assert f.after == after and all(f.due(s) for s in after) and not f.due(steps)


def test_a_frame_within_an_epoch_draws_the_latest_features(tmp_path):
    data_ = loaded_for_frames()
    arch = models.Arch('lenet', 'relu', 2, 3)
    net = models.build_net(arch, [mx.cpu()])
    plot_idx = np.arange(0, 40, 2)
    f = frames.Frames(plot_idx, data_, 4, 1, 0, 10)

    class Stage(object):  # what a frame reads of train.Stage
        pass
    stage = Stage()
    stage.net, stage.center_loss, stage.arch, stage.kind, stage.shown = net, None, arch, 'first', 'softmax'
    stage.projection, stage.files = pictures.Projection(), RunFiles(str(tmp_path), str(tmp_path), 'u')
    seen = [np.array([0, 1, 2, 3]), np.array([2, 5, 6])]  # image 2 seen twice: its later feature is drawn
    feats = [nd.array([[0, 0], [1, 1], [2, 2], [3, 3]]), nd.array([[20, 20], [5, 5], [6, 6]])]
    f.within(stage, data_, 1, 5, feats, seen, 0.5)
    assert f.latest[1].tolist() == [20, 20] and f.latest[0].tolist() == [0, 0] and f.latest[3].tolist() == [6, 6]
    assert np.isnan(f.latest[2]).all()  # image 4: not yet trained on in this epoch, not drawn
    assert sorted(os.listdir(str(tmp_path))) == ['u-test-epoch-00.50.png', 'u-train-epoch-00.50.png']


# ----------------------------------------------------------------- the commands on a checkpoint

@pytest.fixture(scope='module')
def checkpoint(idx, tmp_path_factory):
    """A checkpoint of an untrained LeNet with 2-D features on the IDX data, classes 1 and 3 held out."""
    tmp = tmp_path_factory.mktemp('ckpt')
    raw = data.open_data(data.settle(records.Data(data_dir=idx)))
    arch = models.new_arch({'model': 'lenet', 'act': 'relu', 'holdout': (1, 3)}, 10, data.image_shape(raw), 'mnist')
    loaded = data.load(raw, arch, RT)
    mx.random.seed(0)
    net = models.build_net(arch, [mx.cpu()])
    files = RunFiles(str(tmp / 'ckpt'), str(tmp / 'out'), 'unit')
    os.makedirs(files.ckpt_dir)
    os.makedirs(files.out_dir)
    meta = dict(run=dict(records.describe(data=raw.spec, facts=raw.facts), arch=arch.to_json()), prefix='unit',
                epoch=1, normalisation=loaded.normalisation, history=[])
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
    commands.verify([(files, ckpt)], RT, lambda c: loaded, files.out_dir, 'mnist')
    result = json.load(open(files.verify_json))
    assert result['holdout'] == [1, 3] and result['images'] == loaded.held_y.shape[0]
    assert 0 <= result['cosine']['auc'] <= 1 and 'open_set_auroc' in result['euclidean']
    assert os.path.isfile(files.roc)


def test_the_pictures_forward_only_the_training_images_drawn(checkpoint):
    files, ckpt, loaded = checkpoint
    _, net, _ = commands.network(ckpt, [mx.cpu()])
    drawn = pictures.plot_sample(loaded.train_x.shape[0], 5, size=30)  # 30 of the 100, not in a row
    everything = net(loaded.train_x.x)[1].asnumpy()
    np.testing.assert_allclose(commands.sample_features(net, loaded.train_x, drawn), everything[drawn],
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
