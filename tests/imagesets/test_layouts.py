"""The layouts of the field as they come: insightface's training folders (train.rec with its header,
image and identity records, property, verification sets as .bin, no test split) and folders of class
folders with no split; the held-out slice they get, recorded so that every later command uses it; the
verification sets measured each epoch and picking the best checkpoint; many classes."""
import json
import os

import numpy as np
import pytest

from helpers import FAST, assert_clean_error, digits, dirs, load_bench, png, run_main as run, write_folder
from imagesets import dataset, recordio, sources
from runs import checkpoints, records


def insightface_folder(root, n=90, classes=3, pairs=20, size=16):
    """A folder as insightface distributes a training set, its images those of helpers.digits."""
    imgs, labels = digits(n, 0, size=size, classes=classes)
    return load_bench('scale').write_insightface(root, labels, [png(i) for i in imgs], size, bins={'lfw': pairs})


def test_the_held_out_slice_takes_a_share_of_each_class_at_least_one_never_all():
    labels = np.repeat(np.arange(5), [1, 2, 3, 40, 100])
    train, test = dataset.held_out(labels, 0.05)
    assert np.bincount(labels[test], minlength=5).tolist() == [0, 1, 1, 2, 5]
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(len(labels)))  # each image once
    again = dataset.held_out(labels, 0.05)
    assert (again[1] == test).all()  # seeded: the same slice for every run of the set
    assert np.bincount(labels[dataset.held_out(labels, 0.5)[1]], minlength=5).tolist() == [0, 1, 2, 20, 50]


def test_an_insightface_folder_is_read_as_it_comes(tmp_path):
    root = insightface_folder(str(tmp_path / 'faces'))
    src = sources.open_source(root)
    assert src.kind == 'recordio' and src.splits['test'] is None and len(src.splits['train'].labels) == 90
    assert any("insightface's layout" in n and 'the 3 after them name the identities' in n for n in src.notes)
    assert sources.pair_sets(root) == [os.path.join(root, 'lfw.bin')]
    spec = dataset.settle(records.Data(data_dir=root))
    assert spec.test_split == dataset.TEST_SPLIT and spec.val_sets is None
    raw = dataset.open_data(spec)
    assert len(raw.test[0]) == 6 and len(raw.train[0]) == 84 and raw.pair_sets == [('lfw', os.path.join(root,
                                                                                                          'lfw.bin'))]
    assert any('no test split in %s: 6 of its 90 images held out' % root in n for n in raw.notes)


@pytest.fixture(scope='module')
def faces(tmp_path_factory):
    """An insightface folder trained on for one epoch, then resumed and extended to two."""
    tmp = tmp_path_factory.mktemp('faces')
    root = insightface_folder(str(tmp / 'faces'))
    first = run('--train', '--center_loss', '--epochs', '1', '--data_dir', root, *FAST, *dirs(tmp))
    resumed = run('--train', '--center_loss', '--resume', '--allow_changes', '--epochs', '2', *FAST[:4],
                  *dirs(tmp))
    return tmp, root, first, resumed


def test_it_trains_measuring_its_verification_set_each_epoch_and_picks_the_best_on_it(faces):
    tmp, root, (rc, out, err), (rc2, out2, err2) = faces
    assert rc == 0 and rc2 == 0, err + err2
    assert 'no test split in %s' % root in out and "insightface's layout" in out
    assert 'the best checkpoint is picked on the mean 10-fold accuracy of the verification sets lfw' in out
    assert 'resuming center-loss after epoch 1' in out2 and 'best mean verification accuracy' in out2
    meta = checkpoints.load_checkpoint(str(tmp / 'ckpt' / 'center-loss-last.params')).meta
    assert [sorted(h.pairs) for h in meta.history] == [['lfw'], ['lfw']]
    lfw = meta.history[-1].pairs['lfw']
    assert 0 <= lfw['accuracy'] <= 1 and lfw['std'] >= 0 and -1 <= lfw['threshold'] <= 1
    assert meta.best == max(h.pairs['lfw']['accuracy_flip'] for h in meta.history)  # picked on the flip test
    assert meta.run.data.test_split == dataset.TEST_SPLIT and meta.run.facts.test_images == 6
    metrics = json.load(open(str(tmp / 'out' / 'center-loss-metrics.json')))
    assert metrics['epochs'][-1]['pairs']['lfw'] == lfw
    assert 'lfw %.4f+-%.4f' % (lfw['accuracy'], lfw['std']) in out2


def test_later_commands_use_the_recorded_slice_and_the_verification_set(faces):
    tmp, root, _, _ = faces
    rc, out, err = run('--second_train', '--epochs', '1', *FAST, *dirs(tmp))
    assert rc == 0 and '84 train / 6 test images' in out, err
    rc, out, err = run('--test', *FAST[:4], *dirs(tmp))
    assert rc == 0 and '84 train / 6 test images' in out and 'lfw 10-fold accuracy' in out, err
    rc, out, err = run('--verify', *FAST[:4], *dirs(tmp))
    assert rc == 0 and 'lfw.bin: 20 pairs (10 same) of 40 images' in out, err
    assert os.path.isfile(str(tmp / 'out' / 'center-loss-pairs-lfw.json'))
    assert_clean_error(run('--test', '--test_split', '0.2', *FAST[:4], *dirs(tmp)), '--test_split 0.2',
                       'was made with --test_split 0.05')


def test_class_folders_with_no_split_train_and_later_commands_test_on_the_same_images(tmp_path):
    root = write_folder(str(tmp_path / 'flat'), {'.': digits(60, 0)})
    rc, out, err = run('--train', '--epochs', '1', '--data_dir', root, *FAST, *dirs(tmp_path))
    assert rc == 0 and 'no test split in %s: 3 of its 60 images held out' % root in out, err
    assert '57 train / 3 test images' in out and 'by softmax (3 test images)' in out
    rc, out, err = run('--test', '--prefix', 'softmax', *FAST[:4], *dirs(tmp_path))
    assert rc == 0 and '57 train / 3 test images' in out, err
    meta = checkpoints.load_checkpoint(str(tmp_path / 'ckpt' / 'softmax-last.params')).meta
    assert meta.run.data.test_split == 0.05 and meta.run.data.data_dir == root


def test_train_rec_alone_gets_a_slice_and_a_class_of_one_image_is_said(tmp_path):
    imgs, labels = digits(31, 0)
    labels = labels.copy()
    labels[-1] = 3  # a fourth class of one image: trained on, never tested
    scale = load_bench('scale')
    root = scale.write_insightface(str(tmp_path / 'rec'), labels, [png(i) for i in imgs], 16)
    os.remove(os.path.join(root, 'property'))
    rc, out, err = run('--train', '--epochs', '1', '--data_dir', root, '--test_split', '0.1', *FAST, *dirs(tmp_path))
    assert rc == 0, err
    assert '1 trained class has no test images (class 3): the accuracy is over the others' in out
    assert 'by softmax (3 test images)' in out


def test_bad_verification_sets_and_splits_are_one_line(tmp_path):
    root = insightface_folder(str(tmp_path / 'faces'))
    assert_clean_error(run('--train', '--data_dir', root, '--val_sets', 'agedb_30', *FAST, *dirs(tmp_path)),
                       '--val_sets', 'agedb_30.bin is not there', 'beside the images: lfw')
    assert_clean_error(run('--train', '--test_split', '0.7', '--data_dir', root, *FAST, *dirs(tmp_path)),
                       '--test_split', '0.5 or less')
    assert_clean_error(run('--train', '--test_split', '0.1', *FAST, *dirs(tmp_path)),
                       '--test_split is for your own images')
    with open(os.path.join(root, 'train.idx'), 'ab') as f:
        f.write(b'91\tnot a number\n')
    assert_clean_error(run('--train', '--data_dir', root, *FAST, *dirs(tmp_path)), 'train.idx is not an index')


def test_a_broken_image_of_a_verification_set_is_named_before_the_first_step(tmp_path):
    """One image of lfw.bin cut short: the run stops before it trains, the line naming the file and the image
    (not a flag the run was not given), exit 2, nothing saved."""
    import pickle
    root = insightface_folder(str(tmp_path / 'faces'))
    with open(os.path.join(root, 'lfw.bin'), 'rb') as f:
        images, same = pickle.load(f)
    images[3] = images[3][:len(images[3]) // 2]
    with open(os.path.join(root, 'lfw.bin'), 'wb') as f:
        pickle.dump((images, same), f, protocol=4)
    rc, out, err = result = run('--train', '--data_dir', root, *FAST, *dirs(tmp_path))
    assert_clean_error(result, 'lfw.bin (image 3) cannot be decoded as an image')
    assert '--pairs' not in err and 'epoch' not in out and not (tmp_path / 'ckpt' / 'softmax-last.params').exists()


def test_the_index_is_read_whole_and_checked(tmp_path):
    idx = tmp_path / 'a.idx'
    idx.write_bytes(b'2\t64\n0\t0\n1\t32\n')
    keys, offsets = recordio.read_index(str(idx))
    assert keys.tolist() == [0, 1, 2] and offsets.tolist() == [0, 32, 64]
    idx.write_bytes(b'0\t0\n0\t32\n')
    with pytest.raises(Exception, match='lists a key twice'):
        recordio.read_index(str(idx))
    idx.write_bytes(b'0\t0\t7\n')
    with pytest.raises(Exception, match='two whole numbers'):
        recordio.read_index(str(idx))


def test_many_classes_train_and_every_later_command_runs(tmp_path):
    """600 identities of 2 images each, a verification set: trained, a second stage, --test and --verify."""
    root = insightface_folder(str(tmp_path / 'faces'), n=1200, classes=600, pairs=30, size=12)
    rc, out, err = run('--train', '--center_loss', '--epochs', '1', '--data_dir', root, '--feature_size', '16',
                       *FAST, *dirs(tmp_path))
    assert rc == 0 and '600 train / 600 test images' in out, err
    assert 'class layer 40.8 kB, centers 38.4 kB (600 classes x 16-D' in out  # 600 x 16 weights, 600 biases
    assert os.path.getsize(str(tmp_path / 'out' / 'center-loss-train.gif')) > 0
    for command in (['--second_train', '--epochs', '1'], ['--test'], ['--verify']):
        rc, out, err = run(*command, *FAST, *dirs(tmp_path))
        assert rc == 0, (command, err)
