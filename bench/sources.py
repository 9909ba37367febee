"""The three ways in for the same images, side by side: MNIST's IDX files (held in memory), an image
folder and RecordIO (both streamed from disk); and the memory of a run on a set larger than it holds.

    python bench/sources.py --limit 10000 --epochs 2        # images/s and accuracy of each source
    python bench/sources.py --memory 10000 --size 256       # peak memory on a .rec of noise images

The first writes the first ``--limit`` MNIST images of each split as a folder and as RecordIO
(bench/image_sets.py), then trains the first stage on each source with the same seed and flags
(``--no_plotting``; the flags after ``--`` are added), one process each, and prints each epoch's
images/s (the training loop's, from its report line), the last epoch's test accuracies, the wall time
and the process's peak resident memory.

``--memory N`` writes a RecordIO of N random colour images of ``--size`` pixels (PNG: noise does not
compress, so the file is about N x size x size x 3 bytes), and trains one epoch of LeNet++ on it at
``--image_size 28``: the whole file is read and decoded once for the normalisation and once for the
epoch, while the process holds only the list of records and the batches in flight.
"""
import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

PEAK = ('import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, '
        'stderr=subprocess.STDOUT, universal_newlines=True); print(p.stdout); print("exit", p.returncode); '
        'print("peak_kib", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)')


def train(flags, folder):
    """(stdout, exit status, wall seconds, peak MiB) of a first stage in a process of its own."""
    cmd = [sys.executable, os.path.join(ROOT, 'main.py'), '--train', '--center_loss', '--no_plotting',
           '--ckpt_dir', os.path.join(folder, 'ckpt'), '--out_dir', os.path.join(folder, 'out')] + flags
    tic = time.time()
    out = subprocess.run([sys.executable, '-c', PEAK] + cmd, stdout=subprocess.PIPE, universal_newlines=True).stdout
    wall = time.time() - tic
    status = int(re.search(r'^exit (-?\d+)', out, re.M).group(1))
    peak = int(re.search(r'^peak_kib (\d+)', out, re.M).group(1)) / 1024.0
    return out, status, wall, peak


def epochs_of(out):
    return [(float(s), float(c), int(r)) for s, c, r in
            re.findall(r'test acc: softmax ([0-9.]+) center ([0-9.]+)\s+[0-9.]+s \((\d+) img/s\)', out)]


def compare(args, extra):
    from devices import compat
    from image_sets import write_sets
    work = args.out or tempfile.mkdtemp(prefix='sources-')
    if not os.path.isdir(os.path.join(work, 'recordio')):
        write_sets('mnist', work, args.limit)
    print('%s, %d cores; %d training images of MNIST, %d epochs, seed %d'
          % (compat.cpu_name(), len(os.sched_getaffinity(0)), args.limit, args.epochs, args.seed), flush=True)
    common = ['--epochs', str(args.epochs), '--seed', str(args.seed)] + extra
    runs = [('IDX files, in memory', ['--train_samples', str(args.limit), '--test_samples', str(args.limit)]),
            ('image folder, streamed', ['--data_dir', os.path.join(work, 'folder')]),
            ('RecordIO, streamed', ['--data_dir', os.path.join(work, 'recordio')])]
    print('| source | images/s of each epoch | last epoch: softmax / nearest center | wall | peak memory |')
    print('|---|---|---|---|---|')
    for name, flags in runs:
        out, status, wall, peak = train(flags + common, os.path.join(work, 'run-' + name.split()[0]))
        if status != 0:
            print(out)
            raise SystemExit('%s: exit %d' % (name, status))
        epochs = epochs_of(out)
        print('| %s | %s | %.4f / %.4f | %.0f s | %.0f MiB |' % (
            name, ', '.join(str(e[2]) for e in epochs), epochs[-1][0], epochs[-1][1], wall, peak), flush=True)


def memory(args, extra):
    from devices import compat  # noqa: F401
    import mxnet as mx
    from PIL import Image
    work = args.out or tempfile.mkdtemp(prefix='big-rec-')
    rec_dir = os.path.join(work, 'recordio')
    if not os.path.isfile(os.path.join(rec_dir, 'train.rec')):
        os.makedirs(rec_dir, exist_ok=True)
        rng = np.random.RandomState(0)
        for split, n in (('train', args.memory), ('test', max(100, args.memory // 50))):
            rec = mx.recordio.MXIndexedRecordIO(os.path.join(rec_dir, split + '.idx'),
                                                os.path.join(rec_dir, split + '.rec'), 'w')
            for i in range(n):
                buf = io.BytesIO()
                Image.fromarray(rng.randint(0, 256, (args.size, args.size, 3), dtype=np.uint8)).save(buf, 'PNG')
                rec.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, float(i % 10), i, 0), buf.getvalue()))
            rec.close()
    size = sum(os.path.getsize(os.path.join(rec_dir, f)) for f in os.listdir(rec_dir)) / 2.0 ** 20
    out, status, wall, peak = train(['--data_dir', rec_dir, '--image_size', '28', '--epochs', '1'] + extra,
                                    os.path.join(work, 'run'))
    print(out if status else '\n'.join(l for l in out.splitlines() if l.startswith(('data:', '['))))
    print('RecordIO of %d images of %dx%d colour: %.0f MiB on disk; one epoch (exit %d) in %.0f s, peak resident '
          'memory %.0f MiB' % (args.memory, args.size, args.size, size, status, wall, peak))


def main():
    from cli.flags import Parser, number
    from faults.errors import UserError
    from runs.lock import writable_folder
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--limit', type=number(int, at_least=100, at_most=10000), default=10000,
                   help='MNIST images of each split')
    p.add_argument('--epochs', type=number(int, above=0), default=2)
    p.add_argument('--seed', type=number(int, at_least=0), default=42)
    p.add_argument('--out', default=None, help='where to write the sets (kept); default a new temporary folder')
    p.add_argument('--memory', type=number(int, at_least=100), default=None,
                   help='measure memory on a .rec of this many images')
    p.add_argument('--size', type=number(int, at_least=28), default=256,
                   help='with --memory: the images\' side in pixels')
    p.add_argument('flags', nargs=argparse.REMAINDER, help='-- then flags for main.py')
    args = p.parse_args()
    if args.out:
        try:
            writable_folder(args.out, '--out')
        except UserError as e:
            p.error(str(e))
    extra = args.flags[1:] if args.flags[:1] == ['--'] else args.flags
    (memory if args.memory else compare)(args, extra)


if __name__ == '__main__':
    main()
