"""--holdout (classes kept out of training) and --verify, end to end: the split, what reaches a
batch, what the checkpoint records, the files written, and bad input."""
import json
import os

import imageio.v2 as imageio
import numpy as np
import pytest

from runs import checkpoints
import main as trainer
from training import epoch as train_epoch
import utils
from helpers import QUICK, ROOT, assert_clean_error, dirs, make_dataset, run_main as run, write_idx

HOLD = ['--holdout', '5,6,7,8,9']
FIRST_TEST = utils.load_split(os.path.join(ROOT, 'data', 'mnist'), 'test')[1][:1000]  # labels of the slice used


def test_label_map():
    trained, mapping = utils.split_classes(10, (1, 4, 7))
    assert trained == [0, 2, 3, 5, 6, 8, 9]
    np.testing.assert_array_equal(mapping, [0, -1, 1, 2, -1, 3, 4, -1, 5, 6])
    assert (np.array(trained)[mapping[trained]] == trained).all()  # and back


@pytest.mark.parametrize('value,message', [
    ('1,2,3,4,5,6,7,8,9', 'one class only (0) once --holdout 1,2,3,4,5,6,7,8,9 is left out: a classifier needs at '
                          'least two'),
    ('0,1,2,3,4,5,6,7,8,9', 'training images of no class once --holdout'),
    ('5,10', 'mnist has no class 10 (its classes are 0 to 9)'),
    ('-1', 'has no class -1'),
    ('5,6,5', 'class 5 is named twice'),
    ('5,x', 'expected class ids separated by commas'),
    ('', 'expected class ids'),
])
def test_bad_holdout(value, message):
    assert_clean_error(run('--train', '--holdout', value, '--use_gpu', 'False'), '--holdout', message)


def test_several_prefixes_only_to_verify_or_compare():
    assert_clean_error(run('--train', '--prefix', 'a,b'), 'several prefixes only with --verify and/or --compare')
    assert_clean_error(run('--verify', '--prefix', 'a,a'), 'names a run twice')


def test_a_checkpoint_stays_on_its_dataset(tmp_path):
    """Later commands take the dataset (and its folder, and --train_samples) from the checkpoint
    they start from; naming another dataset is an error."""
    data = str(tmp_path / 'data')
    make_dataset(data, n_train=64, n_test=32)
    rc, _, err = run('--train', '--epochs', '1', '--dataset', 'fashion-mnist', '--data_dir', data,
                     '--train_samples', '40', *QUICK[4:], *dirs(tmp_path))
    assert rc == 0, err
    for mode in ('--verify', '--test', '--second_train'):
        rc, out, err = run(mode, '--prefix', 'softmax', '--epochs', '1', *QUICK[4:], *dirs(tmp_path))
        assert rc == 0, err
        assert 'data: fashion-mnist from %s, 40 train' % data in out, out
        assert_clean_error(run(mode, '--prefix', 'softmax', '--dataset', 'mnist', *QUICK, *dirs(tmp_path)),
                           '--dataset mnist', 'softmax-best.params was made with --dataset fashion-mnist', 'drop')
    rc, out, err = run('--second_train', '--prefix', 'softmax', '--epochs', '1', '--train_samples', '64',
                       *QUICK[4:], *dirs(tmp_path))  # a second stage on more images than the first: a choice
    assert rc == 0 and 'data: fashion-mnist from %s, 64 train' % data in out, err


def test_holdout_and_num_classes_must_agree(tmp_path):
    assert_clean_error(run('--train', *HOLD, '--num_classes', '10', *QUICK, *dirs(tmp_path)),
                       '--num_classes 10', 'one output per trained class, 5')


def test_no_held_out_image_reaches_a_training_batch(tmp_path, monkeypatch):
    """Each class's images are one flat grey of its own; every image of every batch is looked at."""
    rng, data = np.random.RandomState(0), tmp_path / 'data'
    data.mkdir()
    grey = np.arange(10) * 20 + 10
    for split, n in (('train', 400), ('test', 100)):
        labels = rng.randint(0, 10, n)
        img, lbl = utils.FILES[split]
        write_idx(str(data / (img + '.gz')), np.repeat(grey[labels], 28 * 28).reshape(n, 28, 28))
        write_idx(str(data / (lbl + '.gz')), labels)
        if split == 'train':
            trained = np.isin(labels, [0, 2, 4, 6, 8])
            values = grey[labels[trained]] / 255.0
    mean, std = values.mean(), values.std()
    seen = []
    real = train_epoch.train_step

    def spy(objective, trainer_, center_trainer, x, y, *args, **kwargs):
        seen.append((x[:, 0, 14, 14].asnumpy(), y.asnumpy()))
        return real(objective, trainer_, center_trainer, x, y, *args, **kwargs)
    monkeypatch.setattr(train_epoch, 'train_step', spy)
    assert trainer.main(['--train', '--center_loss', '--holdout', '1,3,5,7,9', '--epochs', '2', '--shift', '0',
                         '--data_dir', str(data), '--use_gpu', 'False', '--no_plotting', '--min_epoch_steps', '0',
                         '--precision', 'float32']
                        + dirs(tmp_path)) == 0
    pixels, labels = (np.concatenate(a) for a in zip(*seen))
    assert len(pixels) == 2 * trained.sum()  # every trained image, twice
    class_of_pixel = np.rint((pixels * std + mean) * 255 - 10).astype(int) // 20
    assert set(class_of_pixel) == {0, 2, 4, 6, 8}
    np.testing.assert_array_equal(class_of_pixel, np.array([0, 2, 4, 6, 8])[labels.astype(int)])  # mapped labels


@pytest.fixture(scope='module')
def held_run(tmp_path_factory):
    """Softmax and softmax + center loss with classes 5..9 held out, on a slice of MNIST; the
    later commands do not repeat --holdout."""
    tmp = tmp_path_factory.mktemp('holdout')
    common = dirs(tmp) + QUICK[:-1] + ['--test_samples', '1000', '--shift', '0', '--feature_size', '8']
    runs = {'softmax': run('--train', *HOLD, '--epochs', '2', *common),
            'center': run('--train', '--center_loss', *HOLD, '--epochs', '2', *common),
            'second': run('--second_train', '--epochs', '1', *dirs(tmp), *QUICK[:-1], '--test_samples', '1000')}
    return tmp, runs


def test_held_out_training_records_the_split(held_run):
    tmp, runs = held_run
    for name, (rc, out, err) in runs.items():
        assert rc == 0, (name, err)
        assert 'of classes 0,1,2,3,4 (held out: 5,6,7,8,9' in out
    for prefix in ('softmax', 'center-loss', 'center-loss-second'):
        meta = checkpoints.load_checkpoint(str(tmp / 'ckpt' / ('%s-best.params' % prefix))).meta
        arch = meta.run.arch
        assert arch.holdout == (5, 6, 7, 8, 9) and meta.classes == (0, 1, 2, 3, 4)
        assert arch.num_classes == 5
        mean, std = meta.normalisation  # of the trained images, reused by every later command
        assert 0 < mean < 1 and 0 < std < 1


def test_closed_set_accuracy_is_on_the_trained_classes(held_run):
    tmp, _ = held_run
    rc, out, err = run('--test', '--prefix', 'softmax', *dirs(tmp), *QUICK[:-1], '--test_samples', '1000')
    assert rc == 0, err
    assert '/ %d test images of classes 0,1,2,3,4' % (FIRST_TEST < 5).sum() in out, out


def test_a_later_stage_cannot_change_the_split(held_run):
    tmp, _ = held_run
    assert_clean_error(run('--verify', '--holdout', '1,2', *dirs(tmp), *QUICK),
                       'made with --holdout 5,6,7,8,9, not 1,2')
    assert_clean_error(run('--second_train', '--holdout', '1,2', *dirs(tmp), *QUICK),
                       'made with --holdout 5,6,7,8,9, not 1,2')


def test_verify_writes_every_figure(held_run):
    tmp, _ = held_run
    rc, out, err = run('--verify', *dirs(tmp), *QUICK[:-1], '--test_samples', '1000')
    assert rc == 0, err
    result = json.load(open(str(tmp / 'out' / 'center-loss-verify.json')))
    held = int((FIRST_TEST >= 5).sum())
    assert result['holdout'] == [5, 6, 7, 8, 9] and result['images'] == held
    for metric in ('cosine', 'euclidean'):
        r = result[metric]
        assert r['pairs'] == held * (held - 1) // 2
        for key in ('auc', 'eer', 'tar_at_far_0.01', 'tar_at_far_0.001', 'tar_at_far_0.0001', 'open_set_auroc'):
            assert 0 <= r[key] <= 1, key
        assert r['lfw_protocol']['folds'] == 10 and len(r['lfw_protocol']['fold_accuracies']) == 10
        assert len(r['roc']['far']) == len(r['roc']['tar'])
    assert imageio.imread(str(tmp / 'out' / 'center-loss-roc.png')).shape[0] > 300
    assert 'open-set AUROC' in out


def test_verify_into_an_out_dir_of_its_own(held_run, tmp_path):
    """--verify makes its --out_dir (it wrote into one that was missing: a SaveError, exit 74), and
    refuses one it cannot write in, before any work."""
    tmp, _ = held_run
    ckpt, fresh = ['--ckpt_dir', str(tmp / 'ckpt')], tmp_path / 'new' / 'out'
    rc, out, err = run('--verify', *ckpt, '--out_dir', str(fresh), *QUICK[:-1], '--test_samples', '1000')
    assert rc == 0, err
    assert os.path.isfile(str(fresh / 'center-loss-verify.json')) and os.path.isfile(str(fresh / 'center-loss-roc.png'))
    (tmp_path / 'a-file').write_text('')
    assert_clean_error(run('--verify', *ckpt, '--out_dir', str(tmp_path / 'a-file'), *QUICK),
                       '--out_dir', 'not a folder')


def test_verify_and_compare_several_runs(held_run):
    tmp, _ = held_run
    rc, out, err = run('--verify', '--compare', '--prefix', 'softmax,center-loss,center-loss-second', *dirs(tmp),
                       *QUICK[:-1])
    assert rc == 0, err
    for name in ('softmax-verify.json', 'center-loss-second-verify.json', 'verify-mnist.png',
                 'comparison-mnist.png'):
        assert os.path.isfile(str(tmp / 'out' / name)), name
    assert 'verification figure' in out and '(3 runs)' in out and 'comparison figure' in out


def test_a_new_run_removes_the_old_verification(held_run, tmp_path):
    tmp, _ = held_run
    assert os.path.isfile(str(tmp / 'out' / 'softmax-verify.json'))
    rc, _, err = run('--train', '--epochs', '1', *dirs(tmp), *QUICK)
    assert rc == 0, err
    assert not os.path.exists(str(tmp / 'out' / 'softmax-verify.json'))
    assert not os.path.exists(str(tmp / 'out' / 'softmax-roc.png'))


def test_the_test_frames_draw_the_held_out_classes_as_crosses(tmp_path, monkeypatch):
    """Each test frame of a --holdout run (within the epochs and at their ends) draws the held-out classes' test
    images as crosses, at their features as the network gives them then; the training frames draw none."""
    from evaluation import pictures
    import main as trainer
    drawn = []
    real = pictures.plot_features

    def spy(path, *args, **kwargs):
        drawn.append((os.path.basename(path), kwargs.get('held')))
        return real(path, *args, **kwargs)
    monkeypatch.setattr(pictures, 'plot_features', spy)
    assert trainer.main(['--train', *HOLD, '--epochs', '1', '--frames', '2', *QUICK[:-1], '--precision', 'float32']
                        + dirs(tmp_path)) == 0
    tests = [(name, held) for name, held in drawn if '-test-' in name]
    assert len(tests) == 2 and all(held is None for name, held in drawn if '-train-' in name)
    for name, (features, ids) in tests:
        assert features.shape == (len(ids), 2) and np.isfinite(features).all() and set(ids) <= {5, 6, 7, 8, 9}
    assert len(set(tests[0][1][1])) == 5 and not np.allclose(tests[0][1][0], tests[1][1][0])  # they move
