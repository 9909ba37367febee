"""Time to accuracy: train a schedule and print when each stage reached this project's floors.

    python bench/time_to_accuracy.py --name cosine -- --lr_schedule cosine --lr 0.05 --warmup 0.5 --epochs 6
    python bench/time_to_accuracy.py --stages first,second --second "--epochs 2 --lr 0.01" -- --epochs 6

Runs ``main.py`` as a user would, one process per stage, on the full MNIST training set
unless the flags say otherwise, into a folder of its own (``--keep DIR`` to keep it):
``first`` is ``--train --center_loss``, ``second`` is ``--second_train`` from it, ``softmax``
is ``--train`` alone. The flags after ``--`` go to every stage; ``--second`` and
``--softmax`` add flags to that stage only. Prints, per stage, every epoch's test
accuracies, the first epoch (images, seconds) at which each floor held (training/floors.py:
first stage softmax >= 0.992 and nearest center >= 0.989; second stage nearest center
>= 0.990; softmax run softmax >= 0.991), whether the last epoch holds them all, and one
Markdown row for the docs; ``--log FILE`` appends the figures as a JSON line.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

STAGES = {'first': ['--train', '--center_loss'], 'second': ['--second_train'], 'softmax': ['--train']}
PREFIX = {'first': 'center-loss', 'second': 'center-loss-second', 'softmax': 'softmax'}


def run_stage(stage, flags, folder):
    cmd = [sys.executable, os.path.join(ROOT, 'main.py')] + STAGES[stage] + flags + [
        '--ckpt_dir', os.path.join(folder, 'ckpt'), '--out_dir', os.path.join(folder, 'out')]
    print('$ ' + ' '.join(shlex.quote(c) for c in cmd[1:]), flush=True)
    tic = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    wall = time.time() - tic
    for line in proc.stdout.splitlines():
        if line.startswith('[') or line.startswith('best') or line.startswith('error'):
            print('  ' + line, flush=True)
    if proc.returncode != 0:
        raise SystemExit('%s stage failed (exit %d)' % (stage, proc.returncode))
    with open(os.path.join(folder, 'out', PREFIX[stage] + '-metrics.json')) as f:
        metrics = json.load(f)
    metrics['wall'] = wall
    return metrics


def summary(stage, metrics):
    """(dict of figures, one-line text) of a stage's metrics JSON."""
    last = metrics['epochs'][-1]
    floors = metrics['floors']
    held = all(last['test_acc_' + f.split(' ')[0]] >= float(f.split(' ')[-1]) for f in floors)
    reached = {f: (at and at['epoch']) for f, at in floors.items()}
    figures = dict(stage=stage, epochs=len(metrics['epochs']), last_softmax=last['test_acc_softmax'],
                   last_center=last['test_acc_center'], reached=reached, last_holds_all=held,
                   seconds=last['seconds'], frame_seconds=sum(h.get('frame_time', 0) for h in metrics['epochs']),
                   wall=metrics['wall'], cpu=metrics['cpu'])
    text = '%s: last epoch %d softmax %.4f center %.4f; floors first reached %s; last epoch holds all: %s; %.0f s' % (
        stage, figures['epochs'], figures['last_softmax'], figures['last_center'],
        ', '.join('%s at %s' % (f, e or 'never') for f, e in reached.items()), 'yes' if held else 'no',
        figures['seconds'])
    return figures, text


def main():
    import runlog
    from cli.flags import Parser, listed, shell_words
    from faults.errors import UserError
    from runs.lock import writable_folder
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--name', default='run', help='the row\'s name')
    p.add_argument('--stages', type=listed(tuple(STAGES)), default='first,second',
                   help='any of first, second, softmax, in order')
    p.add_argument('--second', type=shell_words, default='', help='flags for the second stage only')
    p.add_argument('--softmax', type=shell_words, default='', help='flags for the softmax run only')
    p.add_argument('--keep', default=None, help='keep checkpoints and pictures in this folder')
    p.add_argument('--log', default=None, help='append the figures as a JSON line to this file')
    p.add_argument('flags', nargs=argparse.REMAINDER, help='-- then flags for every stage')
    args = p.parse_args()
    flags = args.flags[1:] if args.flags[:1] == ['--'] else args.flags
    try:
        runlog.ready(args.log)
        if args.keep:
            writable_folder(args.keep, '--keep')
    except (OSError, UserError) as e:
        p.error(str(e))
    folder = args.keep or tempfile.mkdtemp(prefix='tta-')
    from devices import compat
    print('%s on %s, %d cores' % (args.name, compat.cpu_name(), len(os.sched_getaffinity(0))), flush=True)
    rows = []
    for stage in args.stages:
        extra = shlex.split(args.second if stage == 'second' else args.softmax if stage == 'softmax' else '')
        figures, text = summary(stage, run_stage(stage, flags + extra, folder))
        print(text, flush=True)
        figures.update(name=args.name, flags=' '.join(flags + extra))
        rows.append(figures)
    print('| %s | %s |' % (args.name, ' | '.join(
        '%s %d ep: %.4f / %.4f, floors at %s' % (r['stage'], r['epochs'], r['last_softmax'], r['last_center'],
                                                   '/'.join(str(e or '-') for e in r['reached'].values()))
        for r in rows)))
    for r in rows:
        runlog.append(args.log, r)


if __name__ == '__main__':
    main()
