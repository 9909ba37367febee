"""The margin heads in the trainer: --head with and without center loss, the second stage after a head,
what --verify measures (retrieval included), --export's files, and the side-by-side figure."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from runs import checkpoints
from evaluation import verification
from helpers import QUICK, ROOT, ctrl_c_on, dirs, load_bench, run_main as run

HELD = ['--holdout', '5,6,7,8,9', '--feature_size', '4', '--test_samples', '600']


@pytest.fixture(scope='module')
def heads(tmp_path_factory):
    """Two epochs of ArcFace + center loss and of SphereFace, classes 5-9 held out, then a second stage."""
    tmp = tmp_path_factory.mktemp('heads')
    runs = {}
    for prefix, flags in (('arc', ['--head', 'arcface', '--center_loss']), ('sphere', ['--head', 'sphereface'])):
        runs[prefix] = run('--train', '--epochs', '2', '--prefix', prefix, *flags, *HELD, *QUICK, *dirs(tmp))
    runs['second'] = run('--second_train', '--prefix', 'arc', '--epochs', '1', *QUICK, *dirs(tmp))
    return tmp, runs


def test_heads_train_and_record_their_margin(heads):
    tmp, runs = heads
    for name, (rc, out, err) in runs.items():
        assert rc == 0, (name, err)
        assert 'Traceback' not in err
    # the report (and the pictures' titles) name the head, not 'softmax'
    assert 'first stage "arc": ArcFace s=64 m=0.5 + center loss, 2 epochs' in runs['arc'][1]
    assert 'first stage "sphere": SphereFace m=4, 2 epochs' in runs['sphere'][1]
    assert 'second stage "arc-second": center loss only, 1 epoch' in runs['second'][1]
    arch = checkpoints.load_checkpoint(str(tmp / 'ckpt' / 'arc-last.params')).meta.run.arch
    assert (arch.head, arch.scale, arch.margin) == ('arcface', 64.0, 0.5)
    sphere = checkpoints.load_checkpoint(str(tmp / 'ckpt' / 'sphere-last.params'))
    assert (sphere.meta.run.arch.scale, sphere.meta.run.arch.margin) == (None, 4)
    # lambda was annealed step by step, the paper's schedule stretched to the stage: 2 epochs of 3 steps (300
    # trained images, batch 128), the last step's lambda the paper's at 5/6 of its 28,000 iterations: its floor
    assert sphere.arrays['net.output.lmbd'].asscalar() == pytest.approx(5.0, rel=1e-5)
    second = checkpoints.load_checkpoint(str(tmp / 'ckpt' / 'arc-second-last.params')).meta.run.arch
    assert second.head == 'arcface'  # the second stage keeps the first stage's head, frozen
    # a normalising head's features are the normalised ones: the centers live near the unit circle
    centers = checkpoints.load_checkpoint(str(tmp / 'ckpt' / 'arc-last.params')).centers.asnumpy()
    assert (np.linalg.norm(centers, axis=1) <= 1.0 + 1e-5).all()


def test_a_heads_run_is_filed_under_its_head(tmp_path):
    """Without --prefix a head's run is not filed as softmax's (a later plain --train would replace it),
    and a second stage given its prefix follows it."""
    rc, out, err = run('--train', '--head', 'normface', '--center_loss', '--epochs', '1', *QUICK, *dirs(tmp_path))
    assert rc == 0, err
    assert sorted(f for f in os.listdir(str(tmp_path / 'ckpt')) if f.endswith('.params')) == \
        ['normface-center-best.params', 'normface-center-last.params']
    rc, out, err = run('--train', '--epochs', '1', *QUICK, *dirs(tmp_path))  # plain softmax beside it
    assert rc == 0, err
    assert (tmp_path / 'ckpt' / 'normface-center-last.params').exists() and 'NormFace' not in out


def test_the_second_stage_starts_from_the_checkpoint_asked(heads):
    """The first stage's best by default, its last with --checkpoint last (as the heads table reads)."""
    tmp, runs = heads
    assert 'second stage from %s (epoch' % (tmp / 'ckpt' / 'arc-best.params') in runs['second'][1]
    rc, out, err = run('--second_train', '--checkpoint', 'last', '--prefix', 'sphere', '--epochs', '1', *QUICK,
                       *dirs(tmp))
    assert rc == 0, err
    assert 'second stage from %s (epoch 2)' % (tmp / 'ckpt' / 'sphere-last.params') in out


def test_verify_gives_retrieval_and_export_writes_the_embeddings(heads):
    tmp, _ = heads
    export = tmp / 'embeddings'
    rc, out, err = run('--verify', '--prefix', 'arc,sphere', '--export', str(export), *QUICK, *dirs(tmp))
    assert rc == 0, err
    assert out.count('retrieval by cosine') == 2 and out.count('retrieval by euclidean') == 2
    assert 'precision@1' in out and 'MAP@R' in out
    result = json.load(open(str(tmp / 'out' / 'arc-verify.json')))
    for key in ('precision_at_1', 'r_precision', 'map_at_r'):
        assert 0 <= result['cosine']['retrieval'][key] <= 1 and 0 <= result['euclidean']['retrieval'][key] <= 1
    for prefix in ('arc', 'sphere'):
        folder = export / prefix
        saved = np.load(str(folder / 'embeddings.npz'))
        n = len(saved['labels'])
        assert saved['features'].shape == (n, 4) and list(saved['class_names']) == [str(i) for i in range(10)]
        assert set(saved['labels'][saved['held_out']]) <= {5, 6, 7, 8, 9} and saved['held_out'].any()
        tensors = np.loadtxt(str(folder / 'tensors.tsv'), delimiter='\t')
        np.testing.assert_allclose(tensors, saved['features'], rtol=1e-6, atol=1e-6)
        lines = open(str(folder / 'metadata.tsv')).read().splitlines()
        assert lines[0] == 'label\tclass\theld_out' and len(lines) == n + 1
        assert all(len(line.split('\t')) == 3 for line in lines)
    direct = verification.retrieval(saved['features'][saved['held_out']], saved['labels'][saved['held_out']])
    sphere = json.load(open(str(tmp / 'out' / 'sphere-verify.json')))['cosine']['retrieval']
    assert sphere['map_at_r'] == pytest.approx(direct['map_at_r'])  # the exported features are those verified


def test_compare_draws_the_heads_side_by_side(heads):
    tmp, _ = heads
    rc, out, err = run('--compare', '--prefix', 'arc,sphere', *QUICK, *dirs(tmp))
    assert rc == 0, err
    assert 'side-by-side figure' in out and os.path.getsize(str(tmp / 'out' / 'heads-mnist.png')) > 0


def test_the_last_checkpoint_is_read_when_asked(heads):
    """--checkpoint last: --verify and --test read the stage's end, not the epoch the test set chose."""
    tmp, _ = heads
    rc, out, err = run('--verify', '--test', '--prefix', 'sphere', '--checkpoint', 'last', *QUICK, *dirs(tmp))
    assert rc == 0, err
    result = json.load(open(str(tmp / 'out' / 'sphere-verify.json')))
    assert result['checkpoint'].endswith('sphere-last.params') and result['epoch'] == 2
    rc, out, err = run('--compare', '--prefix', 'arc,sphere', '--checkpoint', 'last', *QUICK, *dirs(tmp))
    assert rc == 0, err


@pytest.mark.parametrize('flags,message', [
    (['--margin', '0.3'], '--margin is for a margin head'),
    (['--head', 'normface', '--margin', '0.3'], 'NormFace has none'),
    (['--head', 'arcface', '--margin', '2'], "ArcFace's angle must be in [0, pi/2)"),
    (['--head', 'sphereface', '--margin', '2.5'], 'whole margin'),
    (['--export', 'x'], '--export writes the features of --test or --verify'),
])
def test_bad_head_flags(tmp_path, flags, message):
    rc, out, err = run('--train', *flags, *QUICK, *dirs(tmp_path))
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_a_later_command_cannot_change_the_head(heads):
    tmp, _ = heads
    rc, out, err = run('--test', '--prefix', 'arc', '--head', 'cosface', *QUICK, *dirs(tmp))
    assert rc == 2 and 'was made with --head arcface, not cosface' in err, err


HEADS_PY = [sys.executable, os.path.join(ROOT, 'bench', 'heads.py')]


def heads_py(*flags):
    """bench/heads.py as a user runs it (stderr with stdout)."""
    return subprocess.run(HEADS_PY + list(flags), timeout=900, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)


def test_the_table_joins_logs_and_counts_a_run_once(tmp_path, capsys):
    """bench/heads.py --from: rows of several logs (a table run in parts), a run logged twice counted once."""
    bench = load_bench('heads')
    row = dict(dataset='mnist', run='softmax', accuracy=0.99, auc=0.8, tar=0.1, precision_at_1=0.9,
               r_precision=0.6, map_at_r=0.5)
    a, b = tmp_path / 'a.jsonl', tmp_path / 'b.jsonl'
    a.write_text(json.dumps(dict(row, seed=42, auc=0.5)) + '\n' + json.dumps(dict(row, seed=7, auc=0.7)) + '\n')
    b.write_text(json.dumps(dict(row, seed=42, auc=0.9)) + '\n' + json.dumps(dict(row, seed=3, run='ArcFace')) + '\n'
                 + json.dumps(dict(row, seed=42, auc=0.1, feature_size=2, precision='bfloat16')) + '\n'
                 + json.dumps(dict(row, seed=7, auc=0.2, feature_size=2, precision='float32')) + '\n')
    bench.print_table(bench.logged([str(a), str(b)]))
    out = capsys.readouterr().out
    tables = {part.split(' ')[0]: part for part in out.split('mnist, classes 5-9 never trained on, ')}
    lines = tables['32-D'].splitlines()
    assert [l for l in tables['2-D'].splitlines() if l.startswith('| softmax |')][0].split(' | ')[1:4] == [
        '2', '0.9900 +- 0.0000', '0.1500 +- 0.0500']
    # rows logged before the field were float32; a table mixing precisions says so
    assert 'trained in float32 (3 rows)\n' in tables['32-D']
    assert 'trained in bfloat16 (1 row), float32 (1 row): not one protocol' in tables['2-D']
    softmax = [l for l in lines if l.startswith('| softmax |')][0]
    assert softmax.split(' | ')[1:3] == ['2', '0.9900 +- 0.0000'] and '| 0.8000 +- 0.1000 |' in softmax  # 0.9, 0.7
    assert [l for l in lines if l.startswith('| ArcFace |')][0].split(' | ')[1:3] == ['1', '0.9900']
    # --seeds with --from: the table over the seeds a half-run third seed leaves complete
    proc = heads_py('--from', str(a), str(b), '--seeds', '42,7')
    assert proc.returncode == 0 and 'over seeds 7,42' in proc.stdout and '| ArcFace |' not in proc.stdout
    proc = heads_py('--from', str(a), '--seeds', '42')  # one seed: no spread to speak of
    assert proc.returncode == 0 and '32-D features (seed 42)\n' in proc.stdout and 'over seeds' not in proc.stdout


def test_the_euclidean_table_shows_the_runs_whose_features_are_raw(capsys):
    """Retrieval by Euclidean distance beside cosine for softmax, center loss and SphereFace (their --extra
    variants too), not for the heads that normalise (there the two rank alike); rows logged before the
    Euclidean figures are left out of it."""
    bench = load_bench('heads')
    row = dict(dataset='mnist', seed=42, feature_size=32, precision='float32', accuracy=0.99, auc=0.8, tar=0.1,
               precision_at_1=0.9, r_precision=0.6, map_at_r=0.5, euclidean_precision_at_1=0.8,
               euclidean_r_precision=0.7, euclidean_map_at_r=0.4)
    rows = [dict(row, run='softmax'), dict(row, run='SphereFace (--lr 0.01)', euclidean_map_at_r=0.3),
            dict(row, run='ArcFace'), dict(row, run='softmax + center loss', seed=7),
            {k: v for k, v in dict(row, run='center loss, second stage').items() if not k.startswith('euclidean')}]
    bench.print_table(rows)
    table = capsys.readouterr().out.split('retrieval by Euclidean distance / by cosine')[1]
    lines = [line for line in table.splitlines() if line.startswith('| ') and not line.startswith('| run')]
    assert [line.split(' | ')[0][2:] for line in lines] == ['softmax', 'softmax + center loss',
                                                         'SphereFace (--lr 0.01)']
    assert lines[0].split(' | ')[2:] == ['0.8000 / 0.9000', '0.7000 / 0.6000', '0.4000 / 0.5000 |']
    assert lines[2].endswith('| 0.3000 / 0.5000 |')


def test_the_table_runs_logs_a_failed_run_and_files_a_fix_apart(tmp_path):
    """bench/heads.py --table end to end on a slice (--extra carries the slice's flags): rows logged with
    their run names, a run that diverges logged as failed and listed under the table, the compared figure;
    a run trained but not measured is resumed (complete: nothing trained) and measured."""
    tiny = ' '.join(QUICK + ['--epochs', '1', '--knn_k', '3'])
    work, log = tmp_path / 'w', tmp_path / 'h.jsonl'

    def table(*flags):
        proc = heads_py('--table', '--datasets', 'mnist', '--seeds', '1', '--work', str(work), '--log', str(log),
                        *flags)
        assert proc.returncode == 0, proc.stdout
        return proc.stdout

    table('--runs', 'softmax,normface', '--extra', tiny)
    out = table('--runs', 'softmax', '--extra', tiny + ' --lr 1e12')  # diverges in its first steps
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r['run'] for r in rows] == ['softmax (%s)' % tiny, 'NormFace (%s)' % tiny,
                                        'softmax (%s --lr 1e12)' % tiny]
    assert all(0 <= r['auc'] <= 1 and 0 <= r['map_at_r'] <= 1 and r['precision'] == 'float32' for r in rows[:2])
    assert all(0 <= r['euclidean_map_at_r'] <= 1 for r in rows[:2])  # both rankings logged for every run
    assert '--precision float32' in out  # pinned, whatever main.py's auto would pick on this CPU
    assert 'the loss became' in rows[2]['failed'] and 'failed: softmax (%s --lr 1e12), seed 1: error:' % tiny in out
    assert '| 0 (1 failed) |' in out
    ckpt = work / 'mnist-seed1' / 'ckpt'
    assert not list(ckpt.glob('softmax-*')) and len(list(ckpt.glob('softmax+*-last.params'))) == 1  # filed apart
    assert (work / 'mnist-seed1' / 'out' / 'heads-mnist.png').is_file()
    # a run trained but not measured (a table stopped before --verify): resumed, so not trained again
    trained = list(ckpt.glob('normface+*-last.params'))[0]
    before = trained.stat().st_mtime_ns
    [verify] = (work / 'mnist-seed1' / 'out').glob('normface+*-verify.json')
    verify.unlink()
    out = table('--runs', 'normface', '--extra', tiny)
    assert '$ python main.py --train --resume --prefix normface+' in out and trained.stat().st_mtime_ns == before
    again = json.loads(log.read_text().splitlines()[-1])
    assert again['run'] == rows[1]['run'] and again['auc'] == rows[1]['auc'] and verify.is_file()


def test_the_compared_runs_are_in_the_tables_order_each_followed_by_its_fixes(tmp_path):
    names = ['arcface', 'sphereface+lr-0.01', 'sphereface', 'center-loss-short+lr-0.01-second',
             'center-loss-short-second', 'center-loss', 'center-loss+lr-0.01', 'center-loss-short', 'mine']
    for name in names:
        (tmp_path / (name + '-last.params')).write_bytes(b'')
    (tmp_path / 'softmax-best.params').write_bytes(b'')
    assert load_bench('heads').trained_runs(str(tmp_path)) == [
        'center-loss', 'center-loss+lr-0.01', 'center-loss-short-second', 'center-loss-short+lr-0.01-second',
        'sphereface', 'sphereface+lr-0.01', 'arcface']


def test_the_second_stage_row_trains_as_many_epochs_as_every_other(tmp_path):
    """Its first stage (not a row) trains --epochs less the second stage's 2, so the two together train
    what every other row does; one stopped before its second stage is resumed, not trained again."""
    work, log = tmp_path / 'w', tmp_path / 'h.jsonl'
    extra = ' '.join(QUICK + ['--epochs', '3', '--knn_k', '3'])
    flags = ['--table', '--datasets', 'mnist', '--seeds', '1', '--work', str(work), '--log', str(log),
             '--runs', 'center-loss-short-second', '--extra']
    proc = heads_py(*flags, extra)
    assert proc.returncode == 0, proc.stdout
    out = work / 'mnist-seed1' / 'out'
    [first] = out.glob('center-loss-short+*[0-9]-metrics.json')
    [second] = out.glob('center-loss-short+*-second-metrics.json')
    assert [len(json.load(open(str(f)))['epochs']) for f in (first, second)] == [1, 2]
    [row] = [json.loads(line) for line in log.read_text().splitlines()]
    assert row['run'] == 'center loss, second stage, same epochs (%s)' % extra and row['epoch'] == 2
    assert 0 <= row['auc'] <= 1
    # a table stopped after the first stage: that stage is taken as it is, the second trained
    ckpt = work / 'mnist-seed1' / 'ckpt'
    for path in list(ckpt.glob('*-second-*')) + list(out.glob('*-second-*')):
        path.unlink()
    [trained] = ckpt.glob('center-loss-short+*[0-9]-last.params')
    before = trained.stat().st_mtime_ns
    proc = heads_py(*flags, extra)
    assert proc.returncode == 0 and '$ python main.py --train --resume --prefix center-loss-short+' in proc.stdout
    assert trained.stat().st_mtime_ns == before and len(json.load(open(str(second)))['epochs']) == 2
    # too few epochs for a first stage before the second's two: one line, nothing trained
    proc = heads_py(*flags, extra.replace('--epochs 3', '--epochs 2'))
    assert proc.returncode == 2 and 'leaves no epoch for the first stage' in proc.stdout.splitlines()[-1]


@pytest.mark.parametrize('how', ['sigterm', 'ctrl-c'])
def test_a_table_stopped_stops_its_run_which_saves_where_it_stood(tmp_path, how):
    """SIGTERM to bench/heads.py (a kill, a batch job's end) stops the main.py it runs, which saves as it
    stops, instead of leaving it training on alone. Ctrl-C in a terminal reaches both, and heads.py's
    SIGTERM then comes while main.py is handling its Ctrl-C: one line each, no traceback in the log."""
    work = tmp_path / 'w'
    ckpt = work / 'mnist-seed1' / 'ckpt'
    extra = ' '.join(QUICK + ['--epochs', '500'])  # far longer than the test waits
    proc = subprocess.Popen(HEADS_PY + ['--table', '--datasets', 'mnist', '--seeds', '1', '--runs', 'softmax',
                                        '--work', str(work), '--extra', extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                            start_new_session=True, preexec_fn=ctrl_c_on)  # a group of its own, as a terminal's
    try:
        for _ in range(600):  # until the run has saved an epoch
            if list(ckpt.glob('*-last.params')) or proc.poll() is not None:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[0]
        if how == 'sigterm':
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        out = proc.communicate(timeout=300)[0]
    finally:
        proc.kill()
    word = {'sigterm': 'terminated', 'ctrl-c': 'interrupted'}[how]
    assert proc.returncode == {'sigterm': 143, 'ctrl-c': 130}[how], out
    assert out.strip().splitlines()[-1] == '%s: run the same command again to continue' % word
    log = (work / 'mnist-seed1.log').read_text()
    assert '%s: the run is saved as it stood, within epoch' % word in log and '--resume' in log  # main.py saved
    assert 'Traceback' not in log + out
    still = [p for p in os.listdir('/proc') if p.isdigit() and str(work).encode() in _cmdline(p)]
    assert not still, 'main.py still running after the table stopped'


def test_ctrl_c_on_the_cost_bench_is_one_line(tmp_path):
    """--cost (a minute of timed steps) stopped by Ctrl-C: one line and exit 130, not a traceback."""
    proc = subprocess.Popen(HEADS_PY + ['--cost'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, start_new_session=True, preexec_fn=ctrl_c_on)
    try:
        for _ in range(1200):  # until its handlers are set (SIGTERM caught), its imports done
            if _catches(proc.pid, signal.SIGTERM) or proc.poll() is not None:
                break
            time.sleep(0.05)
        time.sleep(1)  # into the timed steps
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.strip() == 'interrupted: run the same command again to continue'


def _catches(pid, signum):
    """Whether process ``pid`` has a handler of its own for ``signum`` (Linux /proc)."""
    with open('/proc/%d/status' % pid) as f:
        caught = next(line.split()[1] for line in f if line.startswith('SigCgt:'))
    return int(caught, 16) >> (signum - 1) & 1


def _cmdline(pid):
    try:
        with open('/proc/%s/cmdline' % pid, 'rb') as f:
            return f.read()
    except OSError:  # gone meanwhile
        return b''


def test_glyph_tables_measure_the_unseen_characters_and_choose_on_a_fifth_of_the_trained(tmp_path):
    """--datasets glyphs trains on G/train and measures the characters in G/test alone; glyphs-validation
    trains on G/train less a fifth of its characters (seed 0: the same fifth for every seed and run) and
    measures that fifth on its quarter of test images, so that a schedule is chosen without the unseen ones."""
    from imagesets import glyphs
    heads = load_bench('heads')
    g, work, log = tmp_path / 'g', tmp_path / 'w', tmp_path / 'g.jsonl'
    about = glyphs.build(str(g), 0, 24)
    trained = sorted(os.listdir(str(g / 'train')))
    work.mkdir()
    flags = heads.data_flags('glyphs-validation', str(g), str(work))
    assert flags[2:4] == ['--test_split', '0.25'] and flags[4] == '--holdout'
    assert sorted(os.listdir(flags[1])) == trained  # G/train alone, through a link
    fifth = [int(i) for i in flags[5].split(',')]
    assert len(fifth) == round(len(trained) / 5) and fifth == sorted(set(fifth)) and max(fifth) < len(trained)
    assert heads.data_flags('glyphs-validation', str(g), str(work)) == flags
    assert heads.data_flags('glyphs', str(g), str(work)) == ['--data_dir', str(g)]
    tiny = '--epochs 1 --batch_size 32 --min_epoch_steps 10 --no_plotting'
    proc = heads_py('--table', '--datasets', 'glyphs-validation,glyphs', '--glyphs', str(g), '--seeds', '1',
                    '--runs', 'softmax', '--work', str(work), '--log', str(log), '--extra', tiny)
    assert proc.returncode == 0, proc.stdout
    rows = {r['dataset']: r for r in map(json.loads, log.read_text().splitlines())}
    per_class = about['images_per_class']
    # the fifth's test slice (a quarter of each of its characters' images) and every image of the unseen third
    assert rows['glyphs-validation']['queries'] == len(fifth) * len(os.listdir(str(g / 'train' / trained[0]))) // 4
    assert rows['glyphs']['queries'] == about['unseen'] * per_class
    assert {r['glyph_fingerprint'] for r in rows.values()} == {about['fingerprint']}
    assert 'glyphs-validation, a fifth of the trained characters never trained on' in proc.stdout
    assert 'glyphs, the third of the characters never trained on' in proc.stdout


@pytest.mark.parametrize('glyphs, message', [
    ([], '--datasets glyphs: needs --glyphs G, a set built by: python -m cli.glyphs G'),
    (['--glyphs', 'README.md'], '--datasets glyphs: README.md is not a set cli.glyphs built')])
def test_a_glyph_table_wants_a_glyph_set(glyphs, message):
    proc = heads_py('--table', '--datasets', 'glyphs', *glyphs)
    assert proc.returncode == 2 and message in proc.stdout.strip().splitlines()[-1], proc.stdout
