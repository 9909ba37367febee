"""Decoding that keeps a GPU fed: the trainer's streamed pipeline against MXNet's own ImageRecordIter on
the same 112x112 JPEG records (photograph-like, about 5 KB each), per core, round after round in turn,
each in a process of its own; and Pillow alone, the decoder the pipeline uses.

    python bench/decoding.py --records 10000

Prints each rate with the CPU and the commit, then ours (one decoding worker) against ImageRecordIter
(one decoding thread). The records are written under --work (default: a temporary folder).
"""
import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)


def plain_rec(work, n, size=112):
    """``n`` photograph-like colour JPEG records of ``size`` pixels as im2rec writes them (no header record:
    ImageRecordIter reads every record as an image), written once; its folder."""
    import mxnet as mx
    root = os.path.join(work, 'jpeg-%d-%dpx' % (n, size))
    if not os.path.isfile(os.path.join(root, 'train.idx')):
        os.makedirs(root, exist_ok=True)
        pool = __import__('scale').image_pool(size, colour=True)
        rec = mx.recordio.MXIndexedRecordIO(os.path.join(root, 'train.idx'), os.path.join(root, 'train.rec'), 'w')
        for i in range(n):
            rec.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, float(i % 100), i, 0), pool[i % len(pool)]))
        rec.close()
    return root


def ours(root, workers, size=112):
    """Images/s of the trainer's streamed pipeline over every record of ``root``: decoded and resized by
    imagesets.images.Streamed with ``workers`` decoding processes (0: in this one), in batches of 128."""
    from devices import compat  # noqa: F401  (before mxnet)
    import mxnet as mx
    from imagesets import images, recordio
    listing = recordio.open_recordio(root)
    split = listing.splits['train']
    n = len(split.labels)
    streamed = images.Streamed(split, np.arange(n), 3, (size, size), 0.0, 1.0, mx.cpu(), workers)
    tic = time.time()
    for batch in streamed.batches([np.arange(s, min(s + 128, n)) for s in range(0, n, 128)]):
        batch.wait_to_read()
    return n / (time.time() - tic)


def theirs(root, threads=1, size=112):
    """Images/s of MXNet's own ImageRecordIter over every record of ``root`` with ``threads`` decoding threads."""
    from devices import compat  # noqa: F401  (before mxnet)
    import mxnet as mx
    it = mx.io.ImageRecordIter(path_imgrec=os.path.join(root, 'train.rec'), path_imgidx=os.path.join(root, 'train.idx'),
                               data_shape=(3, size, size), batch_size=128, preprocess_threads=threads,
                               prefetch_buffer=1, round_batch=False)
    n, tic = 0, time.time()
    for batch in it:
        batch.data[0].wait_to_read()
        n += batch.data[0].shape[0] - batch.pad
    return n / (time.time() - tic)


def pillow(root, size=112):
    """Images/s of Pillow alone over every record's payload (read, decode, convert)."""
    from PIL import Image
    from imagesets import recordio
    split = recordio.open_recordio(root).splits['train']
    tic = time.time()
    with open(split.path, 'rb') as f:
        for offset in split.items:
            with Image.open(io.BytesIO(recordio.payload(f, int(offset), ''))) as im:
                np.asarray(im.convert('RGB'))
    return len(split.items) / (time.time() - tic)


def decoding(work, n, rounds=3):
    """The decoding rates, per core, in turn round after round (each in a process of its own): ours with
    one decoding worker and in-process, ImageRecordIter with one thread, Pillow alone."""
    root = plain_rec(work, n)
    found = {}
    for r in range(rounds):
        for name in ('ours-1-worker', 'ours-in-process', 'imagerecorditer-1-thread', 'pillow'):
            found.setdefault(name, []).append(child(['--rate', name, root]))
    for name, rates in found.items():
        print('%-26s %s images/s (median %.0f)' % (name, ', '.join('%.0f' % v for v in rates), np.median(rates)))
    print('ours (1 worker) / ImageRecordIter (1 thread): %.2f' % (np.median(found['ours-1-worker']) /
                                                                np.median(found['imagerecorditer-1-thread'])))
    return found


def child(args):
    """Run this script with ``args`` in a process of its own; its last line, a number."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__)] + args, check=True, stdout=subprocess.PIPE,
                         universal_newlines=True).stdout
    return float(out.strip().splitlines()[-1])


def main():
    from cli.flags import Parser, number
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--records', type=number(int, at_least=256), default=10000, help='112x112 JPEG records decoded')
    p.add_argument('--rounds', type=number(int, at_least=1), default=3, help='rounds of every contender in turn')
    p.add_argument('--work', default=None, help='where the records are written (default: a temporary folder)')
    p.add_argument('--rate', nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rate:  # a child: one decoding rate
        name, root = args.rate
        return print({'ours-1-worker': lambda: ours(root, 1), 'ours-in-process': lambda: ours(root, 0),
                      'imagerecorditer-1-thread': lambda: theirs(root), 'pillow': lambda: pillow(root)}[name]())
    import runlog
    where = runlog.provenance()
    print('CPU: %s, %d cores; commit %s' % (where['cpu'], where['cores'], where['commit']), flush=True)
    work = args.work or tempfile.mkdtemp(prefix='decoding-')
    try:
        decoding(work, args.records, args.rounds)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()
