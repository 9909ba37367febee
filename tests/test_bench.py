"""The scripts of bench/ as a user runs them: a bad value, log or folder is one line and exit 2, before
any run starts; the logs of the table scripts are JSON lines written and read back by runlog.py."""
import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT, load_bench

BAD = [
    ('set_sizes', ['--sizes', '300,abc'], "--sizes: expected a whole number, got 'abc'"),
    ('set_sizes', ['--sizes', '5'], '--sizes: must be 10 or more'),
    ('set_sizes', ['--losses', 'softmax,arc'], "--losses: 'arc' is not one of softmax, center"),
    ('set_sizes', ['--variant', '--lr "0.1'], 'No closing quotation'),
    ('set_sizes', ['--no_defaults'], 'give --variant'),
    ('set_sizes', ['--table', 'missing.jsonl'], 'No such file or directory'),
    ('set_sizes', ['--table', 'README.md'], 'README.md, line 1: not a JSON line of a bench log'),
    ('set_sizes', ['--table', 'heads.jsonl'], "a line lacks 'size': not a log of this script"),
    ('set_sizes', ['--log', os.path.join('no', 'such', 'folder.jsonl')], 'No such file or directory'),
    ('heads', [], '--table and/or --cost, or --from LOG'),
    ('heads', ['--table', '--datasets', 'cifar'], "--datasets: 'cifar' is not one of mnist, fashion-mnist"),
    ('heads', ['--table', '--runs', 'softmax,bogus'], "--runs: 'bogus' is not one of softmax"),
    ('heads', ['--table', '--seeds', '42,x'], "--seeds: expected a whole number, got 'x'"),
    ('heads', ['--table', '--feature_size', '0'], '--feature_size: must be > 0'),
    ('heads', ['--from', 'sizes.jsonl'], "a line lacks 'dataset': not a log of this script"),
    ('heads', ['--from', 'README.md'], 'README.md, line 1: not a JSON line of a bench log'),
    ('heads', ['--from', 'heads.jsonl', '--seeds', '7'], '--from: no row of seed 7 in these logs'),
    ('heads', ['--table', '--extra', '--lr abc'], "heads.py: --extra: error: argument --lr: expected a float"),
    ('heads', ['--table', '--extra', '--bogus 1'], 'heads.py: --extra: error: unrecognized arguments: --bogus 1'),
    ('speed', ['--samples', '0'], '--samples: must be 128 or more'),
    ('step_speed', ['--acts', 'leaky,swish'], "--acts: 'swish' is not one of prelu, leaky, relu, prelu-sub, prelu-op"),
    ('workers', ['--workers', '1,0'], '--workers: must be > 0'),
    ('workers', ['--workers', '4', '--batch_size', '2'], '--batch_size 2 is split over the workers'),
    ('time_to_accuracy', ['--stages', 'first,third'], "--stages: 'third' is not one of first, second, softmax"),
    ('time_to_accuracy', ['--log', os.path.join('no', 'log.jsonl')], 'No such file or directory'),
    ('sources', ['--limit', '10'], '--limit: must be 100 or more'),
    ('verify', ['--cases', '10x1'], 'expected NxK, N features of K classes'),
    ('image_sets', ['--out', 'o', '--scale', '0'], '--scale: must be 1 or more'),
    ('image_sets', ['--out', os.path.join('README.md', 'o')], '--out %s: cannot write there' % os.path.join(
        'README.md', 'o')),
    ('set_sizes', ['--work', 'README.md'], '--work README.md: not a folder'),
    ('pairs_check', ['--images', 'nowhere', '--ckpt', 'x-best.params'], 'holds no pairs.txt'),
    ('original_style', ['README.md'], 'README.md: not a slice written by bench/speed.py'),
]


@pytest.mark.parametrize('script,flags,message', BAD, ids=['%s %s' % (s, ' '.join(f)) for s, f, _ in BAD])
def test_bad_input_is_one_line_before_any_run(tmp_path, script, flags, message):
    (tmp_path / 'README.md').write_text('# not a log\n')
    (tmp_path / 'heads.jsonl').write_text(json.dumps(dict(dataset='mnist', seed=42, run='softmax')) + '\n')
    (tmp_path / 'sizes.jsonl').write_text(json.dumps(dict(size=300, feature_size=2, loss='softmax')) + '\n')
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'bench', script + '.py')] + flags, cwd=str(tmp_path),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not proc.stdout.strip(), (proc.stdout, proc.stderr)
    assert sorted(os.listdir(str(tmp_path))) == ['README.md', 'heads.jsonl', 'sizes.jsonl']  # nothing written


def test_a_log_is_read_back_as_written(tmp_path):
    runlog = load_bench('runlog')
    log = str(tmp_path / 'a.jsonl')
    rows = [dict(run='softmax', auc=0.5), dict(run='ArcFace', name='é')]
    for row in rows:
        runlog.append(log, row)
    runlog.append(None, dict(run='not logged'))
    with open(log, 'a') as f:
        f.write('\n')  # a blank line is no row
    assert runlog.read([log, log]) == rows + rows
    with open(log, 'a') as f:
        f.write('[1, 2]\n')
    with pytest.raises(ValueError, match='a.jsonl, line 4: not a JSON line'):
        runlog.read([log])
    stamp = runlog.provenance()
    assert set(stamp) == {'cpu', 'cores', 'commit'} and stamp['cores'] >= 1


@pytest.mark.parametrize('act', ['prelu', 'leaky'])
def test_speed_times_our_loop_on_a_slice(tmp_path, act):
    """bench/speed.py's contender 'ours' (a child process of the bench) trains on a slice and reports its
    rates: the code the speed table's rows come from runs against the trainer as it is."""
    import numpy as np
    import utils
    images, labels = utils.load_split(utils.find_data('mnist', download=False), 'train')
    n = 24 * 128  # the bench's 20 warm-up batches and a few timed ones
    slice_path = str(tmp_path / 'slice.npz')
    np.savez(slice_path, images=images[:n], labels=labels[:n])
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'bench', 'speed.py'), '--ours', slice_path, 'float32',
                           act, '0'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row['precision'] == 'float32' and row['why'] == 'asked for'
    assert row['loop'] > 0 and row['epoch'] > 0 and row['ratio'] >= 1.0


def test_step_speed_times_every_way_of_writing_prelu():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'bench', 'step_speed.py'), '--steps', '2',
                           '--batch_size', '8'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rates = dict(line.split()[:2] for line in proc.stdout.splitlines()[1:])
    assert sorted(rates) == sorted(['leaky', 'prelu', 'prelu-sub', 'prelu-op', 'relu'])
    assert all(float(r) > 0 for r in rates.values())
