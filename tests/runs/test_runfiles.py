"""runs/files.py: one owner for every name a run writes, and a new run's outputs replacing the old set."""
import os

from runs.files import NOTHING_TO_RESUME, RunFiles, comparison_path


def test_names_of_a_run_and_its_second_stage():
    f = RunFiles('ck', 'out', 'center-loss')
    assert f.best == os.path.join('ck', 'center-loss-best.params')
    assert f.last == os.path.join('ck', 'center-loss-last.params')
    assert f.frame('test', 3) == os.path.join('out', 'center-loss-test-epoch-03.png')
    assert f.gif('train') == os.path.join('out', 'center-loss-train.gif')
    assert f.curves == os.path.join('out', 'center-loss-curves.png')
    assert f.metrics == os.path.join('out', 'center-loss-metrics.json')
    s = f.second()
    assert s.prefix == 'center-loss-second' and s.is_second and not f.is_second
    assert s.best == os.path.join('ck', 'center-loss-second-best.params')
    assert s.first().prefix == 'center-loss' and f.first() is f
    assert comparison_path('out', 'mnist') == os.path.join('out', 'comparison-mnist.png')


def test_where_a_second_stage_starts():
    """--second_train: the first stage's best (or --checkpoint last); with --resume, the second stage's own last."""
    f = RunFiles('ck', 'out', 'p')
    assert f.second_start('best', False) == (f.best, ': run `python main.py --train --center_loss --prefix p` first')
    assert f.second_start('last', False)[0] == f.last
    assert f.second_start('best', True) == (f.second().last, NOTHING_TO_RESUME)


def test_remove_outputs_takes_exactly_the_runs_own_set(tmp_path):
    out = tmp_path / 'out[1]'  # glob characters in folder and prefix must not widen the match
    out.mkdir()
    f = RunFiles(str(tmp_path), str(out), 'a*')
    mine = [f.frame('train', 1), f.frame('test', 12), f.gif('train'), f.gif('test'), f.curves, f.metrics]
    others = ['a*-second-train.gif', 'ab-train.gif', 'a*-notes.txt', 'comparison-mnist.png']
    for path in mine + [str(out / name) for name in others]:
        open(path, 'w').close()
    f.remove_outputs()
    assert sorted(os.listdir(str(out))) == sorted(others)


def test_frames_lists_the_existing_ones_in_order(tmp_path):
    f = RunFiles(str(tmp_path), str(tmp_path), 'p')
    for e in (3, 1, 10):
        open(f.frame('train', e), 'w').close()
    assert f.frames('train', 10) == [f.frame('train', e) for e in (1, 3, 10)]
    assert f.frames('test', 10) == []


def test_the_part_written_files_of_a_killed_save_are_the_runs_own(tmp_path):
    """faults.atomic writes .<name>.<random>.tmp beside <name>: what a save killed mid-write leaves. A run finds
    its own (checkpoints and outputs), never those of another prefix, its second stage's included."""
    ck, out = tmp_path / 'ck', tmp_path / 'out'
    ck.mkdir()
    out.mkdir()
    mine = [ck / '.center-loss-last.params.1a2b3c4d.tmp', ck / '.center-loss-best.params.0000beef.tmp',
            out / '.center-loss-train-epoch-02.png.5e5e5e5e.tmp', out / '.center-loss-metrics.json.77777777.tmp']
    theirs = [ck / '.center-loss-second-last.params.1a2b3c4d.tmp', out / '.center-loss-second-train.gif.0a0a0a0a.tmp',
              ck / '.softmax-last.params.12345678.tmp', ck / 'center-loss-last.params']
    for path in mine + theirs:
        path.write_bytes(b'part')
    f = RunFiles(str(ck), str(out), 'center-loss')
    assert f.leftovers() == sorted(str(p) for p in mine)
    assert [str(p) for p in f.second().leftovers()] == sorted(str(p) for p in theirs[:2])
