"""A run knows what it was: its records in every checkpoint, --resume continuing exactly that run
with no flag but itself, a flag that would change it refused (or applied with --allow_changes and
said), later commands on the data it recorded, and a checkpoint checked before it is used."""
import json
import os
import shutil

import numpy as np
import pytest
from mxnet import nd

from faults.errors import UserError
from runs import checkpoints
from cli import start
from runs import meta as meta_mod
from helpers import QUICK, assert_clean_error, dirs, run_main as run
from helpers import FAST, bin_file, digits, write_folder


@pytest.fixture(scope='module')
def interrupted(tmp_path_factory):
    """A 3-epoch softmax stage stopped after its first epoch (as Ctrl-C would leave it), and its folders."""
    tmp = tmp_path_factory.mktemp('interrupted')
    flags = ['--train', '--lr', '0.05', '--lr_schedule', 'step', '--seed', '5'] + QUICK + dirs(tmp)
    assert run(*flags, '--epochs', '1')[0] == 0
    last = str(tmp / 'ckpt' / 'softmax-last.params')
    arrays = nd.load(last)
    meta = json.loads(arrays['meta'].asnumpy().tobytes().decode())
    meta['run']['optim']['epochs'] = 3  # what a 3-epoch run records after its first epoch
    arrays['meta'] = nd.array(np.frombuffer(json.dumps(meta).encode(), np.uint8), dtype='uint8')
    nd.save(last, arrays)
    return tmp


def test_a_checkpoint_records_its_run(interrupted):
    meta = checkpoints.load_checkpoint(str(interrupted / 'ckpt' / 'softmax-last.params')).meta
    run_ = meta.run
    assert run_.optim.lr == 0.05 and run_.optim.lr_schedule == 'step' and run_.optim.seed == 5
    assert run_.optim.batch_size == 128 and run_.center.center_loss is False
    assert run_.data.dataset == 'mnist' and run_.data.train_samples == 600
    assert run_.facts.kind == 'idx' and run_.facts.classes == tuple(str(i) for i in range(10))
    assert run_.facts.fingerprint and run_.arch.model == 'lenet++'
    assert run_.output.out_dir == str(interrupted / 'out') and run_.output.plotting is False


@pytest.mark.parametrize('flag,value,recorded', [('--lr', '0.1', '--lr 0.05'), ('--epochs', '5', '--epochs 3'),
                                                 ('--lr_schedule', 'cosine', '--lr_schedule step'),
                                                 ('--seed', '1', '--seed 5'),
                                                 ('--center_loss', None, 'no --center_loss'),
                                                 ('--train_samples', '300', '--train_samples 600'),
                                                 ('--dataset', 'fashion-mnist', '--dataset mnist')])
def test_resume_refuses_a_flag_that_changes_the_run(interrupted, flag, value, recorded):
    before = open(str(interrupted / 'ckpt' / 'softmax-last.params'), 'rb').read()
    given = [flag] + ([value] if value else [])
    argv = ['--train', '--resume', '--prefix', 'softmax', *given, '--use_gpu', 'False', *dirs(interrupted)]
    assert_clean_error(run(*argv), flag, recorded)
    assert open(str(interrupted / 'ckpt' / 'softmax-last.params'), 'rb').read() == before


def test_resume_alone_continues_exactly_that_run(interrupted, tmp_path):
    copy = tmp_path / 'copy'
    shutil.copytree(str(interrupted), str(copy))
    rc, out, err = run('--resume', '--use_gpu', 'False', *dirs(copy))
    assert rc == 0, err
    assert 'resuming softmax after epoch 1' in out and 'data: mnist' in out and '600 train / 200 test' in out
    meta = checkpoints.load_checkpoint(str(copy / 'ckpt' / 'softmax-last.params')).meta
    assert meta.epoch == 3 and [h.lr for h in meta.history] == [0.05] * 3
    assert meta.run.optim.seed == 5 and meta.run.optim.epochs == 3


def test_resuming_an_earlier_versions_checkpoint_says_it_records_no_schedule(capsys):
    """A checkpoint of format 2 has no records: --resume takes the flags and the defaults, and says so."""
    import main as trainer
    args, given = trainer.parse_args(['--train', '--resume', '--epochs', '4'])
    old = checkpoints.Checkpoint(path='ckpt/softmax-last.params', arrays={}, meta=meta_mod.from_json(
        {'format': 2, 'epoch': 1, 'model': 'lenet++', 'act': 'leaky', 'feature_size': 2, 'num_classes': 10}))
    optim, center, _ = start.stage_records(args, given, 'first', old, old.meta.run.arch)
    assert optim.epochs == 4 and optim.lr == trainer.STAGE_DEFAULTS['first']['lr'] and not center.center_loss
    assert 'resume: ckpt/softmax-last.params records no schedule (an earlier version)' in capsys.readouterr().out


def test_allow_changes_applies_and_says_them(interrupted, tmp_path):
    copy = tmp_path / 'copy'
    shutil.copytree(str(interrupted), str(copy))
    rc, out, err = run('--train', '--resume', '--allow_changes', '--epochs', '2', '--lr', '0.02', '--use_gpu',
                       'False', *dirs(copy))
    assert rc == 0, err
    assert 'resume: --epochs 2 instead of the recorded --epochs 3' in out
    assert 'resume: --lr 0.02 instead of the recorded --lr 0.05' in out
    meta = checkpoints.load_checkpoint(str(copy / 'ckpt' / 'softmax-last.params')).meta
    assert meta.epoch == 2 and meta.run.optim.lr == 0.02


def test_a_second_stage_continues_the_first_stages_run(interrupted, tmp_path):
    copy = tmp_path / 'copy'
    shutil.copytree(str(interrupted), str(copy))
    rc, out, err = run('--second_train', '--prefix', 'softmax', '--epochs', '1', '--min_epoch_steps', '0',
                       '--use_gpu', 'False', *dirs(copy))
    assert rc == 0, err
    meta = checkpoints.load_checkpoint(str(copy / 'ckpt' / 'softmax-second-last.params')).meta
    optim = meta.run.optim
    assert optim.seed == 5 and optim.batch_size == 128  # the first stage's
    assert optim.lr == 0.01 and optim.lr_schedule == 'cosine'  # the second stage's defaults
    assert meta.run.data.train_samples == 600 and meta.run.center.center_loss is True


# ----------------------------------------------------------------- data a checkpoint was made on

@pytest.fixture(scope='module')
def own_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('own-run')
    root = write_folder(str(tmp / 'faces'), {'train': digits(60, 0), 'test': digits(15, 1)})
    rc, out, err = run('--train', '--epochs', '1', '--data_dir', root, '--no_plotting', *FAST, *dirs(tmp))
    assert rc == 0, err
    return tmp, root


def test_later_commands_refuse_data_that_changed(own_run, tmp_path):
    tmp, root = own_run
    copy = shutil.copytree(root, str(tmp_path / 'faces'))
    ckpt = dirs(tmp)
    extra = os.path.join(copy, 'train', 'a', 'new.png')
    shutil.copy(os.path.join(copy, 'train', 'a', '0000.png'), extra)
    assert_clean_error(run('--test', '--prefix', 'softmax', '--data_dir', copy, *FAST, *ckpt),
                       'was made on other data', '60 train', '61 / 15')
    os.remove(extra)
    rc, out, err = run('--test', '--prefix', 'softmax', '--data_dir', copy, *FAST, *ckpt)  # the same images, moved
    assert rc == 0 and 'softmax accuracy' in out, err
    assert_clean_error(run('--test', '--prefix', 'softmax', '--dataset', 'mnist', *FAST, *ckpt),
                       '--dataset mnist', 'was made with --dataset images')


def test_a_bin_pair_list_needs_no_training_folder(own_run, tmp_path):
    tmp, root = own_run
    moved = tmp_path / 'run'
    shutil.copytree(str(tmp / 'ckpt'), str(moved / 'ckpt'))
    shutil.move(root, str(tmp_path / 'elsewhere'))  # the training folder is gone
    try:
        rc, out, err = run('--verify', '--prefix', 'softmax', '--pairs', bin_file(tmp_path / 'v.bin', 10), *FAST,
                           *dirs(moved))
        assert rc == 0 and '10 pairs (5 same) of 20 images' in out, err
    finally:
        shutil.move(str(tmp_path / 'elsewhere'), root)


def test_a_checkpoint_whose_arrays_do_not_fit_is_refused_before_anything_changes(own_run, tmp_path):
    tmp, root = own_run
    ckpt = tmp_path / 'ckpt'
    shutil.copytree(str(tmp / 'ckpt'), str(ckpt))
    last = str(ckpt / 'softmax-last.params')
    arrays = nd.load(last)
    state = sorted(k for k in arrays if k.startswith('states.net.'))[0]
    arrays[state] = nd.zeros((3, 3))  # an optimizer state of another shape than its weight
    nd.save(last, arrays)
    def checkpoints_now():  # the lock file says who ran last: not a checkpoint
        return {f: open(str(ckpt / f), 'rb').read() for f in os.listdir(str(ckpt)) if not f.startswith('.')}
    before = checkpoints_now()
    result = run('--train', '--resume', '--allow_changes', '--epochs', '2', *FAST, '--ckpt_dir', str(ckpt),
                 '--out_dir', str(tmp_path / 'out'))
    assert_clean_error(result, 'softmax-last.params', 'the optimizer state of', '(3, 3)', 'another network')
    assert checkpoints_now() == before and len(before) == 2
    arrays = nd.load(str(tmp / 'ckpt' / 'softmax-best.params'))
    arrays['centers'] = nd.zeros((3, 5))
    nd.save(str(ckpt / 'softmax-best.params'), arrays)
    assert_clean_error(run('--test', '--prefix', 'softmax', *FAST, '--ckpt_dir', str(ckpt)), 'the centers',
                       '(3, 5)', '(3, 2)')


# ----------------------------------------------------------------- data that cannot train a network

def test_one_class_and_images_too_small_are_refused(tmp_path):
    one = write_folder(str(tmp_path / 'one'), {'train': digits(12, 0, classes=1), 'test': digits(6, 1, classes=3)})
    assert_clean_error(run('--train', '--data_dir', one, *FAST, *dirs(tmp_path)), 'one class only (a)',
                       'at least two classes')
    small = write_folder(str(tmp_path / 'small'), {'train': digits(12, 0, size=6), 'test': digits(6, 1, size=6)})
    assert_clean_error(run('--train', '--data_dir', small, *FAST, *dirs(tmp_path)),
                       'lenet++ takes images of at least 8x8', 'these are 6x6', '--image_size 8')
    assert_clean_error(run('--train', '--data_dir', small, '--model', 'lenet', '--image_size', '12', *FAST,
                           *dirs(tmp_path)), 'lenet takes images of at least 16x16')
    assert not os.path.exists(str(tmp_path / 'ckpt' / 'softmax-last.params'))


def test_a_set_that_is_not_fit_says_so(tmp_path):
    rng = np.random.RandomState(0)
    noise = (rng.randint(0, 255, (40, 16, 16)).astype(np.uint8), np.arange(40) % 4)
    root = write_folder(str(tmp_path / 'noise'), {'train': noise, 'test': digits(8, 1)}, names='abcd')
    rc, out, err = run('--train', '--epochs', '1', '--data_dir', root, '--no_plotting', *FAST, *dirs(tmp_path))
    assert rc == 0, err
    assert 'note: the training accuracy is' in out and 'has not fit its training images' in out


def test_an_edited_checkpoint_is_refused_before_anything_trains(interrupted, tmp_path):
    copy = tmp_path / 'copy'
    shutil.copytree(str(interrupted), str(copy))
    last = str(copy / 'ckpt' / 'softmax-last.params')
    arrays = nd.load(last)
    meta = json.loads(arrays['meta'].asnumpy().tobytes().decode())
    meta['best'] = 'high'
    arrays['meta'] = nd.array(np.frombuffer(json.dumps(meta).encode(), np.uint8), dtype='uint8')
    nd.save(last, arrays)
    before = open(last, 'rb').read()
    for command in (['--resume'], ['--test', '--prefix', 'softmax', '--checkpoint', 'last']):
        rc, out, err = run(*command, '--use_gpu', 'False', *dirs(copy))
        assert_clean_error((rc, out, err), 'softmax-last.params is not a checkpoint of this project, or was edited',
                           "best 'high'")
        assert 'epoch' not in out
    assert open(last, 'rb').read() == before


def test_resume_alone_continues_the_newest_stage_stopped_before_its_end(interrupted, tmp_path):
    """--resume with no stage named skips a newer stage that is complete, and with nothing stopped says so."""
    from cli import command as commands_of
    import main as trainer
    ckpt = tmp_path / 'ckpt'
    ckpt.mkdir()
    shutil.copy(str(interrupted / 'ckpt' / 'softmax-last.params'), str(ckpt / 'softmax-last.params'))
    arrays = nd.load(str(ckpt / 'softmax-last.params'))
    meta = json.loads(arrays['meta'].asnumpy().tobytes().decode())
    meta['run']['optim']['epochs'], meta['prefix'] = 1, 'done'  # one epoch of one: complete, and newer
    arrays['meta'] = nd.array(np.frombuffer(json.dumps(meta).encode(), np.uint8), dtype='uint8')
    nd.save(str(ckpt / 'done-last.params'), arrays)
    os.utime(str(ckpt / 'softmax-last.params'), (1, 1))
    args, _ = trainer.parse_args(['--resume', '--ckpt_dir', str(ckpt)])
    found = commands_of.resumed(commands_of.of(args), str(ckpt), 'out')
    assert found.train and found.prefix == 'softmax'
    os.remove(str(ckpt / 'softmax-last.params'))
    with pytest.raises(UserError, match=r'every stage in .* is complete \(the newest, done: 1 of 1 epochs\)'):
        commands_of.resumed(commands_of.of(args), str(ckpt), 'out')
