"""Bad input, interrupted runs and diverging training: clear one-line errors, nothing lost."""
import os
import re

import numpy as np
import pytest

from runs import checkpoints
import utils
from helpers import QUICK, assert_clean_error, dirs, make_dataset, run_main as run, write_idx


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A one-epoch first stage with 3-D features, to test later stages against."""
    tmp = tmp_path_factory.mktemp('trained')
    rc, out, err = run('--train', '--center_loss', '--epochs', '1', '--feature_size', '3', *QUICK, *dirs(tmp))
    assert rc == 0, err
    return tmp


# ----------------------------------------------------------------- flags

@pytest.mark.parametrize('args,fragments', [
    (['--train', '--bogus'], ['unrecognized arguments: --bogus']),
    (['--train', '--eval_method', 'foo'], ['--eval_method', "invalid choice: 'foo'"]),
    (['--train', '--epochs', '-3'], ['--epochs', 'must be > 0']),
    (['--train', '--batch_size', '0'], ['--batch_size', 'must be > 0']),
    (['--train', '--lr', '0'], ['--lr', 'must be > 0']),
    (['--train', '--lr', 'fast'], ['--lr', 'expected a float']),
    (['--train', '--feature_size', '0'], ['--feature_size', 'must be > 0']),
    (['--train', '--prefix', 'a/b'], ['--prefix', 'plain name']),
    (['--train', '--prefix', '..'], ['--prefix', 'plain name']),
    (['--test', '--gpus', 'x'], ['--gpus']),
    (['--train', '--shift', '-1'], ['--shift', 'must be 0 or more']),
    (['--train', '--shift', '1.5'], ['--shift', 'whole number']),
    (['--train', '--precision', 'fp8'], ['--precision', "invalid choice: 'fp8'"]),
    (['--train', '--wd', 'x'], ['--wd', "expected a float, got 'x'"]),
    (['--train', '--momentum', 'x'], ['--momentum', "expected a float, got 'x'"]),
    (['--train', '--lmbd', '-1'], ['--lmbd', 'must be 0 or more']),
    (['--train', '--lmbd', 'nan'], ['--lmbd', 'expected a finite number']),
    (['--train', '--alpha', 'inf'], ['--alpha', 'expected a finite number']),
    (['--train', '--seed', '1.5'], ['--seed', "expected a whole number, got '1.5'"]),
    (['--train', '--knn_k', 'ten'], ['--knn_k', "expected a whole number, got 'ten'"]),
])
def test_bad_flags(args, fragments):
    assert_clean_error(run(*args), *fragments)


def test_num_classes_smaller_than_labels(tmp_path):
    assert_clean_error(run('--train', '--num_classes', '5', *QUICK, *dirs(tmp_path)),
                       'labels go up to 9', '--num_classes is 5')


def test_knn_k_larger_than_gallery(trained):
    assert_clean_error(run('--test', '--knn_k', '601', *QUICK, *dirs(trained)), '--knn_k 601', '600 training images')


# ----------------------------------------------------------------- data

def test_missing_data_dir(tmp_path):
    assert_clean_error(run('--train', '--data_dir', str(tmp_path / 'nope'), *QUICK, *dirs(tmp_path)),
                       'does not exist')


def test_no_data_anywhere_names_the_flag(monkeypatch, tmp_path, capsys):
    import main as trainer

    def offline(dataset, directory):
        raise utils.DataError('no network')
    monkeypatch.setattr(utils, '_download', offline)
    monkeypatch.setitem(utils.SYSTEM_DIRS, 'fashion-mnist', str(tmp_path / 'none'))
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'home'))
    rc = trainer.main(['--train', '--dataset', 'fashion-mnist', '--precision', 'float32'] + QUICK + dirs(tmp_path))
    assert_clean_error((rc, '', capsys.readouterr().err), 'fashion-mnist not found', str(tmp_path / 'none'),
                       'Pass --data_dir DIR')


def test_missing_file(tmp_path):
    d = make_dataset(str(tmp_path / 'd'), drop='train-labels-idx1-ubyte')
    assert_clean_error(run('--train', '--data_dir', d, *QUICK, *dirs(tmp_path)), 'lacks train-labels-idx1-ubyte')


def test_corrupt_gz(tmp_path):
    d = make_dataset(str(tmp_path / 'd'))
    path = os.path.join(d, 't10k-images-idx3-ubyte.gz')
    blob = open(path, 'rb').read()
    open(path, 'wb').write(blob[:len(blob) // 2])
    assert_clean_error(run('--train', '--data_dir', d, *QUICK, *dirs(tmp_path)),
                       't10k-images-idx3-ubyte.gz', 'corrupt or truncated')


def test_wrong_magic(tmp_path):
    d = make_dataset(str(tmp_path / 'd'))
    write_idx(os.path.join(d, 'train-labels-idx1-ubyte.gz'), np.zeros(6), magic=0x00000803)
    assert_clean_error(run('--train', '--data_dir', d, *QUICK, *dirs(tmp_path)), 'wrong magic number')


def test_lengths_differ(tmp_path):
    d = make_dataset(str(tmp_path / 'd'), label_len=5)
    assert_clean_error(run('--train', '--data_dir', d, *QUICK, *dirs(tmp_path)), '6 images but 5 labels')


def test_labels_outside_num_classes(tmp_path):
    d = make_dataset(str(tmp_path / 'd'), top_label=12)
    assert_clean_error(run('--train', '--data_dir', d, *QUICK, *dirs(tmp_path)),
                       'labels go up to 1', '--num_classes is 10')


# ----------------------------------------------------------------- checkpoints

@pytest.mark.parametrize('args,fragments', [
    (['--second_train'], ['center-loss-best.params not found', 'python main.py --train --center_loss']),
    (['--test', '--prefix', 'softmax'], ['softmax-best.params not found', 'python main.py --train`']),
    (['--test', '--prefix', 'center-loss-second'], ['python main.py --second_train`']),
    (['--train', '--resume'], ['softmax-last.params not found', 'nothing to resume']),
])
def test_missing_checkpoint_names_file_and_command(tmp_path, args, fragments):
    assert_clean_error(run(*(args + QUICK + dirs(tmp_path))), *fragments)


@pytest.mark.parametrize('flag,value', [('--feature_size', '2'), ('--num_classes', '12'), ('--model', 'lenet')])
def test_checkpoint_of_another_shape(trained, flag, value):
    assert_clean_error(run('--second_train', flag, value, *QUICK, *dirs(trained)),
                       'center-loss-best.params was made with %s' % flag, 'drop the flag or retrain')


def test_truncated_or_foreign_checkpoint(tmp_path, trained):
    ckpt = tmp_path / 'ckpt'
    ckpt.mkdir()
    blob = open(str(trained / 'ckpt' / 'center-loss-best.params'), 'rb').read()
    (ckpt / 'center-loss-best.params').write_bytes(blob[:len(blob) // 3])
    assert_clean_error(run('--test', *QUICK, *dirs(tmp_path)), 'center-loss-best.params', 'truncated')
    (ckpt / 'center-loss-best.params').write_bytes(b'PK\x03\x04 a zip file, not a checkpoint')
    assert_clean_error(run('--second_train', *QUICK, *dirs(tmp_path)), 'not a checkpoint')


# ----------------------------------------------------------------- nothing lost

def params_of(path):
    ckpt = checkpoints.load_checkpoint(path)
    return {k: v.asnumpy() for k, v in ckpt.arrays.items() if k.startswith('net.') or k == 'centers'}, ckpt.meta


def test_resume_equals_uninterrupted(tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    # a step schedule does not depend on --epochs, so a 1-epoch run extended to 3 follows the 3-epoch
    # run's rates (a cosine schedule stopped mid-way: test_resume_in_the_middle_of_a_cosine_schedule...)
    # (the warm-up given: the default's floor in steps is clamped to half of a short stage's length)
    # (float32 pinned: with --precision auto the two runs could each measure, and choose differently)
    common = ['--train', '--center_loss', '--lr_schedule', 'step', '--lr_step', '1', '--warmup', '0.5',
              '--precision', 'float32'] + QUICK
    assert run(*common, '--epochs', '3', *dirs(a))[0] == 0
    assert run(*common, '--epochs', '1', *dirs(b))[0] == 0
    rc, out, err = run(*common, '--epochs', '3', '--resume', '--allow_changes', *dirs(b))
    assert rc == 0 and 'resuming center-loss after epoch 1' in out, err
    assert 'resume: --epochs 3 instead of the recorded --epochs 1' in out, out
    pa, ma = params_of(str(a / 'ckpt' / 'center-loss-last.params'))
    pb, mb = params_of(str(b / 'ckpt' / 'center-loss-last.params'))
    assert ma.epoch == mb.epoch == 3 and mb.run.optim.epochs == 3
    for k in pa:
        np.testing.assert_allclose(pb[k], pa[k], rtol=1e-4, atol=1e-5, err_msg=k)
    assert [h.epoch for h in mb.history] == [1, 2, 3]
    assert ma.best == mb.best


def test_divergence_stops_cleanly_and_keeps_the_best(tmp_path):
    assert run('--train', '--epochs', '1', *QUICK, *dirs(tmp_path))[0] == 0
    best = str(tmp_path / 'ckpt' / 'softmax-best.params')
    before = open(best, 'rb').read()
    result = run('--train', '--epochs', '2', '--resume', '--allow_changes', '--lr', '1e12', *QUICK, *dirs(tmp_path))
    assert_clean_error(result, 'epoch 2 at batch', 'lower --lr', status=3)  # 3: it trained, then diverged
    # what to try, as a command line: the same command as a new run, at half the rate and a longer warm-up
    assert 'try  python main.py --train --epochs 2 %s %s --lr 5e+11 --warmup 1' % (
        ' '.join(QUICK), ' '.join(dirs(tmp_path))) in result[2]
    assert open(best, 'rb').read() == before
    assert checkpoints.load_checkpoint(str(tmp_path / 'ckpt' / 'softmax-last.params')).meta.epoch == 1


def test_new_run_replaces_the_old_set_of_pictures(tmp_path):
    common = ['--train', '--train_samples', '300', '--test_samples', '100', '--use_gpu', 'False', '--frames', '1',
              '--min_epoch_steps', '0'] + dirs(tmp_path)
    assert run(*common, '--epochs', '3')[0] == 0
    assert run(*common, '--epochs', '1')[0] == 0
    frames = sorted(f for f in os.listdir(str(tmp_path / 'out')) if 'epoch' in f)
    assert frames == ['softmax-test-epoch-01.png', 'softmax-train-epoch-01.png']


def test_nan_in_the_features_names_the_exact_batch(tmp_path, monkeypatch, capsys):
    import main as trainer
    from imagesets import images
    real = images.InMemory.of

    def poisoned(pixels, mean, std, ctx):
        x = real(pixels, mean, std, ctx)
        if x.shape[0] == 600:  # the training set: one NaN image makes its batch's features NaN
            x.x[5] = float('nan')
        return x
    monkeypatch.setattr(images.InMemory, 'of', poisoned)
    # float32: in this process bfloat16 would switch on MXNet's mixed precision for the tests after it
    rc = trainer.main(['--train', '--center_loss', '--epochs', '2', '--seed', '3', '--precision', 'float32']
                      + QUICK + dirs(tmp_path))
    err = capsys.readouterr().err
    order = np.random.RandomState([3, 1]).permutation(600)
    batch = int(np.flatnonzero(order == 5)[0]) // 128 + 1
    assert rc == trainer.EXIT_DIVERGED and 'Traceback' not in err
    # NaN, or inf where the CPU's pooling kernels drop the NaN: either way the batch is named
    assert re.search('became (nan|inf) in epoch 1 at batch %d of 5' % batch, err), err
    assert not os.path.exists(str(tmp_path / 'ckpt' / 'center-loss-best.params'))


def test_train_and_second_train_in_one_command(tmp_path):
    rc, out, err = run('--train', '--center_loss', '--second_train', '--epochs', '1', *QUICK, *dirs(tmp_path))
    assert rc == 0, err
    assert out.index('first stage "center-loss"') < out.index('second stage "center-loss-second"')
    assert sorted(os.listdir(str(tmp_path / 'ckpt'))) == [
        '.center-loss.lock', 'center-loss-best.params', 'center-loss-last.params',
        'center-loss-second-best.params', 'center-loss-second-last.params']


def test_dist_kvstore_wants_one_stage_and_a_launcher(tmp_path):
    assert_clean_error(run('--train', '--second_train', '--kvstore', 'dist_sync', *QUICK), 'one stage per launch')
    assert_clean_error(run('--train', '--kvstore', 'dist_sync', *QUICK, *dirs(tmp_path)), 'devices.launch')


def test_resume_in_the_middle_of_a_cosine_schedule_ends_where_an_uninterrupted_run_does(tmp_path, monkeypatch,
                                                                                     capsys):
    """Stopped by Ctrl-C after epoch 1 of 3 of a warm-up + cosine schedule with a lambda warm-up, then
    resumed: the rate of every later step comes from the step's place in the whole schedule."""
    import main as trainer
    from training import saves
    a, b = tmp_path / 'a', tmp_path / 'b'
    common = ['--train', '--center_loss', '--epochs', '3', '--lr_schedule', 'cosine', '--lr', '0.03',
              '--warmup', '0.5', '--lmbd_warmup', '1.5', '--precision', 'float32'] + QUICK
    assert run(*common, *dirs(a))[0] == 0
    real = saves.save_epoch

    def stop_after_epoch_one(stage, rt, data, record, centers, dataset):
        real(stage, rt, data, record, centers, dataset)
        if record.epoch == 1:
            raise KeyboardInterrupt
    monkeypatch.setattr(saves, 'save_epoch', stop_after_epoch_one)
    assert trainer.main(common + dirs(b)) == trainer.EXIT_INT
    assert 'continue with' in capsys.readouterr().err
    rc, out, err = run(*common, '--resume', *dirs(b))
    assert rc == 0 and 'resuming center-loss after epoch 1' in out, err
    pa, ma = params_of(str(a / 'ckpt' / 'center-loss-last.params'))
    pb, mb = params_of(str(b / 'ckpt' / 'center-loss-last.params'))
    assert [h.lr for h in mb.history] == pytest.approx([h.lr for h in ma.history])
    for k in pa:
        np.testing.assert_allclose(pb[k], pa[k], rtol=1e-4, atol=1e-5, err_msg=k)
