"""The defaults on sets of any size: train at the defaults, with no flag but the data, on small balanced
slices of MNIST, and against a small search of the schedule at each size.

    python bench/set_sizes.py --sizes 300,1000,3000,10000 --features 2,8,128 --log sizes.jsonl
    python bench/set_sizes.py --sizes 300 --features 8 --variant "--lr 0.01" --variant "--min_epoch_steps 400"

Each size N is written once as IDX files (N / 10 training images of each class, the first of each in
MNIST's order; the whole 10,000-image test set) and trained on with ``main.py --train [--center_loss]
--data_dir DIR --feature_size F`` (``--no_plotting``, which changes no number), one process a run. A
``--variant`` adds its flags to every run; the defaults are always run too. Prints, and appends to
``--log`` as JSON lines: the last epoch's test accuracy (softmax, nearest center), its training
accuracy, the steps, whether the loss became NaN (exit status 3), the seconds; then a table of the
defaults against the best variant at each size.
"""
import argparse
import gzip
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def write_idx(path, array):
    magic = 0x00000800 | array.ndim
    with gzip.open(path, 'wb') as f:
        f.write(struct.pack('>I', magic) + struct.pack('>%dI' % array.ndim, *array.shape) + array.tobytes())


def write_slice(size, folder):
    """MNIST with size / 10 training images of each class (the first ones), and the whole test set."""
    import utils
    if os.path.isdir(folder):
        return folder
    final, folder = folder, folder + '.partial-%d' % os.getpid()  # renamed when whole: a killed run leaves no half
    os.makedirs(folder)
    source = utils.find_data('mnist')
    images, labels = utils.load_split(source, 'train')
    keep = np.sort(np.concatenate([np.flatnonzero(labels == k)[:size // 10] for k in range(10)]))
    write_idx(os.path.join(folder, 'train-images-idx3-ubyte.gz'), images[keep])
    write_idx(os.path.join(folder, 'train-labels-idx1-ubyte.gz'), labels[keep])
    test_images, test_labels = utils.load_split(source, 'test')
    write_idx(os.path.join(folder, 't10k-images-idx3-ubyte.gz'), test_images)
    write_idx(os.path.join(folder, 't10k-labels-idx1-ubyte.gz'), test_labels)
    try:
        os.rename(folder, final)
    except OSError:  # another run wrote it first
        shutil.rmtree(folder)
    return final


def train(data_dir, feature_size, center, variant, folder):
    prefix = 'center-loss' if center else 'softmax'
    cmd = [sys.executable, os.path.join(ROOT, 'main.py'), '--train'] + (['--center_loss'] if center else []) + [
        '--data_dir', data_dir, '--feature_size', str(feature_size), '--no_plotting',
        '--ckpt_dir', os.path.join(folder, 'ckpt'), '--out_dir', os.path.join(folder, 'out')] + shlex.split(variant)
    tic = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    row = dict(variant=variant or 'defaults', loss='softmax + center loss' if center else 'softmax',
               feature_size=feature_size, exit=proc.returncode, nan=proc.returncode == 3,
               wall=time.time() - tic)
    steps = re.search(r'(\d+) steps in all', proc.stdout)
    row['steps'] = int(steps.group(1)) if steps else None
    metrics = os.path.join(folder, 'out', prefix + '-metrics.json')
    if os.path.isfile(metrics):
        last = json.load(open(metrics))['epochs'][-1]
        row.update(epochs=last['epoch'], softmax=last['test_acc_softmax'], center=last['test_acc_center'],
                   train_acc=last['train_acc'], seconds=last['seconds'])
    if proc.returncode not in (0, 3):
        row['error'] = proc.stdout.strip().splitlines()[-1:]
    return row


def print_table(rows):
    """The defaults against the best run of the search at each size, features and loss (by softmax accuracy
    of the last epoch); 'within' is whether the defaults are within 0.02 of that best. Where the defaults
    reach 0.98 no search is needed to know it (no accuracy exceeds 1): 'yes, bound', unless a search ran."""
    keys = sorted({(r['size'], r['feature_size'], r['loss']) for r in rows})
    print('\n| images | features | loss | defaults: softmax / center (train acc, steps) | best of the search '
          '| within 0.02 |')
    print('|---|---|---|---|---|---|')
    for key in keys:
        runs = [r for r in rows if (r['size'], r['feature_size'], r['loss']) == key and 'softmax' in r]
        default = next((r for r in runs if r['variant'] == 'defaults'), None)
        best = max(runs, key=lambda r: r['softmax']) if len(runs) > 1 else None  # None: no search ran
        text = lambda r: '-' if r is None else '%.4f / %.4f (%.3f, %s)%s' % (
            r['softmax'], r['center'], r['train_acc'], r['steps'], ' NaN' if r['nan'] else '')
        if default is not None and len(runs) > 1:
            within = 'yes' if best['softmax'] - default['softmax'] <= 0.02 else 'no'
        else:
            within = 'yes, bound' if default is not None and default['softmax'] >= 0.98 else '-'
        searched = '%s: %s' % (best['variant'], text(best)) if best else '-'
        print('| %d | %d | %s | %s | %s | %s |' % (key + (text(default), searched, within)))


def main():
    import runlog
    from cli.flags import Parser, listed, number, shell_words
    from faults.errors import UserError
    from runs.lock import writable_folder
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sizes', type=listed(number(int, at_least=10)), default='300,1000,3000,10000',
                   help='training images (N / 10 of each class)')
    p.add_argument('--features', type=listed(number(int, above=0)), default='2,8,128')
    p.add_argument('--losses', type=listed(('softmax', 'center')), default='softmax,center',
                   help='softmax, center (softmax + center loss), or both')
    p.add_argument('--variant', type=shell_words, action='append', default=[],
                   help='flags added to a run of the search (repeat)')
    p.add_argument('--no_defaults', action='store_true', help='run only the variants')
    p.add_argument('--work', default=None, help='where the slices and runs go (default: a new temporary folder)')
    p.add_argument('--log', default=None, help='append each run as a JSON line to this file')
    p.add_argument('--table', nargs='+', metavar='LOG', help='only print the table of these logs\' runs')
    args = p.parse_args()
    try:
        if args.table:
            rows = runlog.read(args.table)
            try:
                return print_table(rows)
            except (KeyError, TypeError) as e:
                p.error('--table: a line lacks %s: not a log of this script' % e)
        if args.no_defaults and not args.variant:
            p.error('--no_defaults runs only the variants: give --variant')
        runlog.ready(args.log)
        if args.work:
            writable_folder(args.work, '--work')
    except (OSError, ValueError, UserError) as e:
        p.error(str(e).splitlines()[0])
    work = args.work or tempfile.mkdtemp(prefix='set-sizes-')
    head = runlog.provenance()
    print('set sizes on %(cpu)s, %(cores)d cores, commit %(commit)s' % head, flush=True)
    variants = ([] if args.no_defaults else ['']) + args.variant
    rows = []
    for size in args.sizes:
        data_dir = write_slice(size, os.path.join(work, 'mnist-%d' % size))
        for feature_size in args.features:
            for center in [loss == 'center' for loss in args.losses]:
                for variant in variants:
                    slug = re.sub(r'[^a-z0-9.]+', '', variant.lower()) or 'defaults'
                    folder = os.path.join(work, 'run-%d-%d-%s-%s' % (size, feature_size, int(center), slug))
                    row = dict(head, size=size, **train(data_dir, feature_size, center, variant, folder))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    runlog.append(args.log, row)
    print_table(rows)


if __name__ == '__main__':
    main()
