"""main.py when the disk, the scheduler or a second run gets in the way: one line, a documented
status, and nothing saved before is lost (exit 2 at start, 74 for a failed write, 143 on SIGTERM)."""
import errno
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import imageio.v2 as imageio
import numpy as np
import pytest

from runs import checkpoints
from cli.command import of as command_of
from faults import errors, signals
import main as trainer
from training import stage as train
from helpers import QUICK, ROOT, Touch, assert_clean_error, ctrl_c_on, digits, dirs, run_main as run, write_rec
from runs.files import RunFiles

TINY = ['--train_samples', '300', '--test_samples', '100', '--use_gpu', 'False', '--precision', 'float32',
        '--min_epoch_steps', '0']


# ----------------------------------------------------------------- output locations, checked before training

@pytest.mark.parametrize('flag', ['--ckpt_dir', '--out_dir'])
def test_an_output_location_that_is_a_file(tmp_path, flag):
    (tmp_path / 'a-file').write_text('')
    result = run('--train', '--epochs', '1', *QUICK, *dirs(tmp_path), flag, str(tmp_path / 'a-file'))
    assert_clean_error(result, flag, str(tmp_path / 'a-file'), 'not a folder')
    result = run('--train', '--epochs', '1', *QUICK, *dirs(tmp_path), flag, str(tmp_path / 'a-file' / 'sub'))
    assert_clean_error(result, flag, 'cannot write there')
    assert not os.path.exists(str(tmp_path / 'ckpt' / 'softmax-last.params'))


def test_an_output_location_that_cannot_be_written(tmp_path, monkeypatch, capsys):
    # the tests run as root, where permissions do not bite: the write is refused instead
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    monkeypatch.setattr(tempfile, 'mkstemp', refuse)
    rc = trainer.main(['--train', '--epochs', '1'] + TINY + dirs(tmp_path))
    assert_clean_error((rc, '', capsys.readouterr().err), '--ckpt_dir', 'cannot write there (Permission denied)')


# ----------------------------------------------------------------- a write that fails mid-run

def fail_from_epoch(monkeypatch, epoch, action):
    """Run ``action`` once, just after epoch ``epoch`` is trained and before it is drawn and saved."""
    real = train.report

    def report(stage, record, n):
        if record.epoch == epoch:
            action()
        return real(stage, record, n)
    monkeypatch.setattr(train, 'report', report)


def assert_epoch_one_kept(tmp_path):
    ckpt, out = tmp_path / 'ckpt', tmp_path / 'out'
    assert checkpoints.load_checkpoint(str(ckpt / 'center-loss-last.params')).meta.epoch == 1
    assert checkpoints.load_checkpoint(str(ckpt / 'center-loss-best.params')).meta.epoch == 1
    leftovers = [f for d in (ckpt, out) if d.exists() for f in os.listdir(str(d)) if f.endswith('.tmp')]
    assert leftovers == []


@pytest.mark.parametrize('code', [errno.ENOSPC, errno.EACCES])
def test_a_failed_write_stops_the_stage_and_keeps_what_was_saved(tmp_path, monkeypatch, capsys, code):
    real_fsync, failing = os.fsync, []

    def fsync(fd):
        if failing:
            raise OSError(code, os.strerror(code))
        return real_fsync(fd)
    monkeypatch.setattr(os, 'fsync', fsync)
    fail_from_epoch(monkeypatch, 2, lambda: failing.append(True))
    rc = trainer.main(['--train', '--center_loss', '--epochs', '3'] + TINY + dirs(tmp_path))
    assert_clean_error((rc, '', capsys.readouterr().err), 'could not write', os.strerror(code),
                       'epochs before are kept', status=trainer.EXIT_IO)
    assert_epoch_one_kept(tmp_path)
    for split in ('train', 'test'):  # epoch 1's pictures are whole
        assert imageio.imread(str(tmp_path / 'out' / ('center-loss-%s-epoch-01.png' % split))).shape[0] > 200


def test_an_output_folder_removed_mid_run(tmp_path, monkeypatch, capsys):
    fail_from_epoch(monkeypatch, 2, lambda: shutil.rmtree(str(tmp_path / 'out')))
    rc = trainer.main(['--train', '--center_loss', '--epochs', '3'] + TINY + dirs(tmp_path))
    assert_clean_error((rc, '', capsys.readouterr().err), 'could not write', str(tmp_path / 'out'),
                       status=trainer.EXIT_IO)
    assert_epoch_one_kept(tmp_path)


# ----------------------------------------------------------------- SIGTERM

@pytest.mark.parametrize('signum,status,word', [(signal.SIGINT, trainer.EXIT_INT, 'interrupted'),
                                                (signal.SIGTERM, trainer.EXIT_TERM, 'terminated')])
def test_ctrl_c_and_sigterm_save_the_run_and_say_how_to_resume(tmp_path, signum, status, word):
    last = tmp_path / 'ckpt' / 'softmax-last.params'
    args = [sys.executable, os.path.join(ROOT, 'main.py'), '--train', '--epochs', '50'] + QUICK + dirs(tmp_path)
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                            preexec_fn=ctrl_c_on)
    deadline = time.time() + 240
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert 'Traceback' not in err and word in err and '--resume' in err
    assert 'softmax' not in err.split('--resume')[1]  # the command to continue is the same one
    meta = checkpoints.load_checkpoint(str(last), within=True).meta  # (saved at the step the stop came)
    assert 1 <= meta.epoch < 50 and (meta.within is None or meta.within.epoch == meta.epoch + 1)
    assert ('saved as it stood, within epoch %d' % (meta.epoch + 1) if meta.within else 'last completed epoch') in err


def test_a_second_signal_does_not_break_into_the_stop(tmp_path, monkeypatch, capsys):
    """Ctrl-C, then SIGTERM while main.py is still reporting the stop (Ctrl-C pressed twice; or Ctrl-C in
    a terminal under bench/heads.py, which stops its main.py with SIGTERM): the first signal's one line and
    status, no traceback; and main() gives the handlers of before back (it is called in-process too)."""
    def run_until_stopped(args, given, command):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100):  # the handler runs between two of these
            time.sleep(0.05)

    real = trainer.how_to_continue

    def reporting(args, command, argv):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the first stop is handled
        time.sleep(0.2)
        return real(args, command, argv)
    monkeypatch.setattr(trainer, 'run', run_until_stopped)
    monkeypatch.setattr(trainer, 'how_to_continue', reporting)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)  # a suite run under nohup ignores Ctrl-C
    try:
        before = signal.getsignal(signal.SIGTERM)
        rc = trainer.main(['--train', '--epochs', '1'] + TINY + dirs(tmp_path))
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == \
            (signal.default_int_handler, before)
    finally:
        signal.signal(signal.SIGINT, outer)
    err = capsys.readouterr().err
    assert rc == trainer.EXIT_INT and 'interrupted: no step was completed' in err and 'Traceback' not in err


# ----------------------------------------------------------------- two runs of one prefix

def test_a_second_run_of_the_same_prefix_stops_at_once(tmp_path):
    (tmp_path / 'ckpt').mkdir()
    files = RunFiles(str(tmp_path / 'ckpt'), str(tmp_path / 'out'), 'center-loss')
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; sys.path.insert(0, %r); '
                               'from runs.files import RunFiles; from runs.lock import lock_run; '
                               'lock_run(RunFiles(%r, %r, "center-loss")); '
                               'print("locked", flush=True); time.sleep(300)'
                               % (ROOT, files.ckpt_dir, files.out_dir)],
                              stdout=subprocess.PIPE, universal_newlines=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        for mode in (['--train', '--center_loss'], ['--second_train']):
            assert_clean_error(run(*mode, '--epochs', '1', *QUICK, *dirs(tmp_path)),
                               '.center-loss.lock is in use by pid %d' % holder.pid, '--prefix')
        rc, out, err = run('--train', '--epochs', '1', *QUICK, *dirs(tmp_path))  # another prefix: allowed
        assert rc == 0, err
    finally:
        holder.kill()  # a lock that dies with its holder, even by SIGKILL
        holder.wait()
    rc, out, err = run('--train', '--center_loss', '--epochs', '1', *QUICK, *dirs(tmp_path))
    assert rc == 0, err


def test_ctrl_c_while_mxnet_loads_is_one_line(tmp_path):
    """Ctrl-C in the first second of `python main.py ...`, while mxnet is being imported (before main()
    sets its handlers): one line and exit 130, where it was the traceback of the import."""
    args = [sys.executable, os.path.join(ROOT, 'main.py'), '--train'] + QUICK + dirs(tmp_path)
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                            preexec_fn=ctrl_c_on)
    try:
        maps = '/proc/%d/maps' % proc.pid
        for _ in range(3000):  # until libmxnet.so is being loaded: the import under way
            if proc.poll() is not None or 'libmxnet' in open(maps).read():
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == trainer.EXIT_INT, err
    assert 'Traceback' not in err and err.strip().splitlines()[-1].startswith('interrupted'), err
    assert not (tmp_path / 'ckpt').exists() or not list((tmp_path / 'ckpt').glob('*.params'))


def stop_within_an_epoch(argv, folder, signum=signal.SIGTERM):
    """Start ``python main.py argv`` and, once its first save within an epoch is on disk (--save_minutes made
    tiny: every step saves), stop it with ``signum``: (exit status, stdout, stderr)."""
    args = [sys.executable, os.path.join(ROOT, 'main.py')] + argv + ['--save_minutes', '0.00001']
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                            env=dict(os.environ, PYTHONUNBUFFERED='1'), preexec_fn=ctrl_c_on)
    try:
        for _ in range(6000):
            if proc.poll() is not None or list(folder.glob('*-last.params')):
                break
            time.sleep(0.02)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    return proc.returncode, out, err


@pytest.mark.parametrize('source', ['idx', 'recordio'])
def test_a_stop_within_an_epoch_saves_its_step_and_resume_ends_as_an_uninterrupted_run(tmp_path, source):
    """SIGTERM in the middle of an epoch: the run is saved at the step it reached (exit 143, the line saying
    where and how to go on), other commands refuse that mid-epoch checkpoint, and --resume goes on from that
    step with its order, augmentation, rate, optimizer states and centers: the last weights are those of a
    run never stopped, and so is every epoch's training accuracy."""
    if source == 'idx':
        data = ['--train_samples', '1280', '--test_samples', '200', '--batch_size', '128']
    else:
        data = ['--data_dir', write_rec(str(tmp_path / 'rec'), {'train': digits(640, 0), 'test': digits(60, 1)}),
                '--batch_size', '32', '--decode_workers', '1']
    common = ['--train', '--center_loss', '--epochs', '2', '--lr_schedule', 'step', '--warmup', '0.5',
              '--precision', 'float32', '--use_gpu', 'False', '--min_epoch_steps', '0', '--no_plotting'] + data
    a, b = tmp_path / 'a', tmp_path / 'b'
    assert run(*common, *dirs(a))[0] == 0
    rc, out, err = stop_within_an_epoch(common + dirs(b), b / 'ckpt')
    assert rc == trainer.EXIT_TERM and 'Traceback' not in err, err
    last = str(b / 'ckpt' / 'center-loss-last.params')
    within = checkpoints.load_checkpoint(last, within=True).meta.within
    assert within is not None and 0 < within.step
    assert 'terminated: the run is saved as it stood, within epoch %d at step %d, in %s; continue with' % (
        within.epoch, within.step, last) in err and err.strip().endswith('--resume'), err
    assert_clean_error(run('--test', '--checkpoint', 'last', *data, '--use_gpu', 'False', *dirs(b)),
                       'was saved within epoch %d, at step %d' % (within.epoch, within.step), '--resume')
    rc, out, err = run('--resume', '--use_gpu', 'False', *dirs(b))
    assert rc == 0 and 'resuming center-loss within epoch %d at step %d' % (within.epoch, within.step) in out, err
    ours, theirs = (checkpoints.load_checkpoint(str(f / 'ckpt' / 'center-loss-last.params')) for f in (b, a))
    assert ours.meta.within is None and ours.meta.epoch == 2
    for k, v in theirs.arrays.items():
        if k.startswith('net.') or k == 'centers':
            np.testing.assert_allclose(ours.arrays[k].asnumpy(), v.asnumpy(), rtol=1e-5, atol=1e-6, err_msg=k)
    assert [h.train_acc for h in ours.meta.history] == pytest.approx([h.train_acc for h in theirs.meta.history])


def test_a_kill_within_an_epoch_resumes_from_the_last_interval_save(tmp_path):
    """kill -9, which nothing can catch: the last save of the interval (--save_minutes) is the run's, and
    --resume goes on from it."""
    common = ['--train', '--epochs', '1', '--precision', 'float32', '--use_gpu', 'False', '--min_epoch_steps', '0',
              '--no_plotting', '--train_samples', '1280', '--test_samples', '200', '--batch_size', '64']
    rc, out, err = stop_within_an_epoch(common + dirs(tmp_path), tmp_path / 'ckpt', signal.SIGKILL)
    assert rc == -signal.SIGKILL
    within = checkpoints.load_checkpoint(str(tmp_path / 'ckpt' / 'softmax-last.params'), within=True).meta.within
    assert within is not None and within.epoch == 1
    rc, out, err = run('--resume', '--use_gpu', 'False', *dirs(tmp_path))
    assert rc == 0 and 'resuming softmax within epoch 1 at step %d' % within.step in out, err
    assert checkpoints.load_checkpoint(str(tmp_path / 'ckpt' / 'softmax-last.params')).meta.epoch == 1


def test_a_reader_that_goes_away_stops_the_run_in_one_line(tmp_path):
    """`python main.py ... | head -3`: the reader closes stdout after epoch 1's line; the next line stops
    the run as SIGPIPE would (141), with the resume command on stderr, not a traceback or a failed save."""
    args = [sys.executable, os.path.join(ROOT, 'main.py'), '--train', '--epochs', '2'] + QUICK + dirs(tmp_path)
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                            env=dict(os.environ, PYTHONUNBUFFERED='1'))
    for line in proc.stdout:
        if line.startswith('[softmax] epoch  1/2'):
            break
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == errors.EXIT_PIPE, err
    assert 'stopped: standard output was closed; the last completed epoch is saved' in err, err
    assert 'Traceback' not in err and 'could not write' not in err, err
    assert checkpoints.load_checkpoint(str(tmp_path / 'ckpt' / 'softmax-last.params')).meta.epoch >= 1


@pytest.mark.parametrize('argv', [['--compare'], ['--test', '--prefix', 'softmax'], ['--verify']])
def test_stopping_a_command_that_trains_nothing_says_to_run_it_again(tmp_path, argv):
    argv = argv + dirs(tmp_path)
    args = trainer.parse_args(argv)[0]
    message = trainer.how_to_continue(args, command_of(args), argv)
    assert '--resume' not in message and 'run it again' in message, message
    assert message.endswith('python main.py ' + ' '.join(argv)), message


def test_a_signal_after_the_report_line_waits_for_the_save(tmp_path, monkeypatch, capsys):
    """SIGTERM just after epoch 2's line is printed: the epoch the user saw finish is saved whole
    (its pictures and checkpoints) before the run stops with 143."""
    fail_from_epoch(monkeypatch, 2, lambda: os.kill(os.getpid(), signal.SIGTERM))
    rc = trainer.main(['--train', '--center_loss', '--epochs', '3'] + TINY + dirs(tmp_path))
    err = capsys.readouterr().err
    assert rc == trainer.EXIT_TERM and 'terminated' in err and '--resume' in err, err
    ckpt = tmp_path / 'ckpt'
    assert checkpoints.load_checkpoint(str(ckpt / 'center-loss-last.params')).meta.epoch == 2
    for split in ('train', 'test'):
        assert imageio.imread(str(tmp_path / 'out' / ('center-loss-%s-epoch-02.png' % split))).shape[0] > 200


def test_a_failed_checkpoint_write_names_the_checkpoint(tmp_path, monkeypatch, capsys):
    """A full disk in --ckpt_dir (--out_dir fine): the message names the checkpoint file that failed."""
    real_fsync, failing = os.fsync, []
    ckpt_dir = str(tmp_path / 'ckpt')

    def fsync(fd):
        if failing and os.readlink('/proc/self/fd/%d' % fd).startswith(ckpt_dir):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)
    monkeypatch.setattr(os, 'fsync', fsync)
    fail_from_epoch(monkeypatch, 2, lambda: failing.append(True))
    rc = trainer.main(['--train', '--center_loss', '--epochs', '3'] + TINY + dirs(tmp_path))
    assert_clean_error((rc, '', capsys.readouterr().err),
                       'could not write %s (No space left on device)'
                       % os.path.join(ckpt_dir, 'center-loss-last.params'),
                       status=trainer.EXIT_IO)
    assert_epoch_one_kept(tmp_path)


def test_resume_from_a_crafted_checkpoint_runs_nothing(tmp_path):
    """A -last.params whose optimizer states hold a pickle that would create a file: one line,
    exit 2, no file."""
    import json
    import pickle
    import numpy as np
    from mxnet import nd
    assert run('--train', '--epochs', '1', *QUICK, *dirs(tmp_path))[0] == 0
    last = str(tmp_path / 'ckpt' / 'softmax-last.params')
    arrays = nd.load(last)
    meta = json.loads(arrays['meta'].asnumpy().tobytes().decode())
    meta['format'] = 1  # the earlier format, whose states were a pickle
    arrays['meta'] = nd.array(np.frombuffer(json.dumps(meta).encode(), np.uint8), dtype='uint8')
    marker = tmp_path / 'ran'
    arrays['states.net'] = nd.array(np.frombuffer(pickle.dumps(Touch(str(marker))), np.uint8), dtype='uint8')
    nd.save(last, arrays)
    assert_clean_error(run('--train', '--epochs', '2', '--resume', '--allow_changes', *QUICK, *dirs(tmp_path)),
                       'softmax-last.params', 'not plain data', 'nothing was run')
    assert not marker.exists()


def test_sigterm_while_the_loader_starts_its_decoding_workers(tmp_path):
    """The decoding workers take SIGTERM's default action in the child itself, after the fork: the
    training process keeps its own handler all along, so a SIGTERM that comes while the workers
    start is the documented stop (Terminated, exit 143), not a kill by the signal."""
    from helpers import digits, write_folder
    folder = write_folder(str(tmp_path / 'd'), {'train': digits(8, 0), 'test': digits(4, 1)})
    script = '\n'.join([
        'import os, signal, sys, multiprocessing.pool',
        'sys.path.insert(0, %r)' % ROOT,
        'from devices import compat; from faults import signals; from imagesets import images, sources; import numpy as np, mxnet as mx',
        'signal.signal(signal.SIGTERM, signals.on_stop)',
        'real = multiprocessing.pool.Pool.__init__',
        'def starting(self, *a, **k):',
        '    os.kill(os.getpid(), signal.SIGTERM)  # arrives while the loader makes its pool',
        '    real(self, *a, **k)',
        'multiprocessing.pool.Pool.__init__ = starting',
        'src = sources.open_source(%r)' % folder,
        'x = images.Streamed(src.splits["train"], np.arange(4), 1, src.size, 0.0, 1.0, mx.cpu(), 1)',
        'try:',
        '    next(x.batches([[0, 1]]))',
        '    print("no signal")',
        'except signals.Terminated:',
        '    print("terminated")'])
    proc = subprocess.run([sys.executable, '-c', script], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == 'terminated', (proc.returncode, proc.stderr[-2000:])


def test_a_stop_that_library_code_swallowed_is_raised_at_the_next_check():
    """A signal whose exception lands in a bare ``except:`` (MXNet's and numpy's code has them) would be lost,
    and later ones are ignored: ``raise_if_stopped``, called between steps, raises it again."""
    with signals.stops_handled():
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # SIGTERM: a suite run in the background ignores SIGINT
            time.sleep(1)
        except:  # noqa: E722  (what a library's bare except does)
            pass
        with pytest.raises(signals.Terminated):
            signals.raise_if_stopped()
    with signals.stops_handled():
        signals.raise_if_stopped()  # a later block of the same process starts clean


def test_a_run_removes_what_a_killed_save_of_its_prefix_left_and_says_so(tmp_path):
    (tmp_path / 'ckpt').mkdir()
    part = tmp_path / 'ckpt' / '.softmax-last.params.1a2b3c4d.tmp'
    other = tmp_path / 'ckpt' / '.center-loss-last.params.1a2b3c4d.tmp'
    part.write_bytes(b'\x00' * 1000)  # what kill -9 during a save leaves
    other.write_bytes(b'\x00' * 1000)
    rc, out, err = run('--train', '--epochs', '1', *QUICK, *dirs(tmp_path))
    assert rc == 0, err
    assert 'removed 1 part-written file an interrupted save of softmax left: %s' % part in out
    assert not part.exists() and other.exists()  # another run's: not this one's to remove


def test_a_complete_run_whose_pictures_were_not_made_gets_them_on_resume(tmp_path):
    """The disk filled while the GIFs were written after the last epoch (exit 74): once there is room,
    --resume makes the GIFs and curves from the frames and the figures the run saved."""
    flags = ['--train', '--epochs', '1', '--frames', '2'] + [f for f in QUICK if f != '--no_plotting'] + dirs(tmp_path)
    assert run(*flags)[0] == 0
    out = tmp_path / 'out'
    made = {p: (out / p).read_bytes() for p in ('softmax-train.gif', 'softmax-test.gif', 'softmax-curves.png')}
    for name in made:
        (out / name).unlink()
    rc, stdout, err = run('--resume', '--use_gpu', 'False', *dirs(tmp_path))
    assert rc == 0 and 'its GIFs and curves were not made: drawing them from what it saved' in stdout, err
    assert all((out / name).stat().st_size > 0 for name in made)
    # --resume alone now finds nothing stopped before its end: one line, exit 2, naming the newest stage
    assert_clean_error(run('--resume', '--use_gpu', 'False', *dirs(tmp_path)),
                       'every stage in %s is complete (the newest, softmax: 1 of 1 epochs): nothing to resume'
                       % (tmp_path / 'ckpt'))
    rc, stdout, err = run('--train', '--resume', '--use_gpu', 'False', *dirs(tmp_path))  # the stage named: said
    assert rc == 0 and 'softmax is complete (1 epoch); nothing to resume' in stdout, err
