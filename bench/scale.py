"""Center loss at its field's scale, measured on synthetic sets: tiny images, many records and classes,
laid out as insightface distributes its training sets (train.rec, train.idx, property, a .bin of pairs).

    python bench/scale.py --memory 50000,200000,1000000   # peak memory of a 1-epoch run, 512-D features
    python bench/scale.py --open 1000000 --files 100000   # time to open a .rec of N records, a folder of N files
    python bench/scale.py --classes 50000                 # 2 images a class: 1 epoch, --second_train, --test, --verify
    python bench/scale.py --resnet 32 [--model iresnet50]  # a face network, 512-D, 112x112: memory, time a step
    python bench/scale.py --check 6000                    # a verification set checked before training: LFW's size

Each prints its figures with the CPU and the commit; the sets are written under --work (default: a
temporary folder, removed after) and reused when they are there.
"""
import argparse
import io
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


# --------------------------------------------------------------------------- sets written as insightface's

def encoded(pixels, fmt='JPEG'):
    """The bytes of an image (uint8, (H, W) grey or (H, W, 3) colour) as Pillow encodes it."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, quality=90)
    return buf.getvalue()


def image_pool(size, count=256, colour=False, seed=0):
    """``count`` encoded images of ``size`` pixels for records to share (encoding each of a million images
    would take longer than everything measured): low-frequency noise brought up to size, which compresses
    as photographs do (about 5 KB as a 112x112 colour JPEG, as insightface's face crops are)."""
    from PIL import Image
    rng = np.random.RandomState(seed)
    side = max(2, size // 8)
    return [encoded(np.asarray(Image.fromarray(rng.randint(0, 256, (side, side, 3) if colour else (side, side))
                                               .astype(np.uint8)).resize((size, size), Image.BICUBIC)))
            for _ in range(count)]


def write_insightface(root, labels, images, size, bins=None, seed=0):
    """An insightface training folder in ``root``: train.rec and train.idx (record 0 a header whose label is
    [first identity record, end of the identity records]; records 1..N the images, identity by identity,
    image i of ``labels`` being ``images[i % len(images)]``; then one record per identity, its label the
    range [start, end) of its image records), ``property`` ('classes,height,width'), and for each
    verification set of ``bins`` ({name: pairs}) ``name.bin``: a pickle of (encoded images, same flags),
    images 2k and 2k+1 making pair k."""
    import mxnet as mx
    os.makedirs(root, exist_ok=True)
    labels = np.asarray(labels)
    order = np.argsort(labels, kind='stable')
    ids, counts = np.unique(labels, return_counts=True)
    n = len(labels)
    pack, header = mx.recordio.pack, mx.recordio.IRHeader
    rec = mx.recordio.MXIndexedRecordIO(os.path.join(root, 'train.idx'), os.path.join(root, 'train.rec'), 'w')
    rec.write_idx(0, pack(header(2, [n + 1, n + 1 + len(ids)], 0, 0), b''))
    for key, i in enumerate(order, 1):
        rec.write_idx(key, pack(header(0, float(labels[i]), key, 0), images[i % len(images)]))
    starts = 1 + np.concatenate([[0], np.cumsum(counts)[:-1]])
    for k, (start, count) in enumerate(zip(starts, counts)):
        rec.write_idx(n + 1 + k, pack(header(2, [float(start), float(start + count)], 0, 0), b''))
    rec.close()
    with open(os.path.join(root, 'property'), 'w') as f:
        f.write('%d,%d,%d\n' % (len(ids), size, size))
    rng = np.random.RandomState(seed)
    for name, pairs in (bins or {}).items():
        same = [bool(k % 2 == 0) for k in range(pairs)]
        pictures = [images[int(rng.randint(len(images)))] for _ in range(2 * pairs)]
        with open(os.path.join(root, name + '.bin'), 'wb') as f:
            pickle.dump((pictures, same), f, protocol=4)
    return root


def write_folder(root, labels, images, ext='.jpg'):
    """A folder of class folders (no split), image i of ``labels`` being ``images[i % len(images)]``."""
    for i, label in enumerate(labels):
        folder = os.path.join(root, 'c%06d' % label)
        if not os.path.isdir(folder):
            os.makedirs(folder)
        with open(os.path.join(folder, '%08d%s' % (i, ext)), 'wb') as f:
            f.write(images[i % len(images)])
    return root


# --------------------------------------------------------------------------- a run measured

class Peak(object):
    """The peak resident memory of a process (its high-water mark, VmHWM, as last read) and of it and its
    children together (their proportional set sizes summed, sampled every ``every`` seconds: a run's decoding
    workers are processes of their own, forked from it, whose pages it shares), from /proc."""

    def __init__(self, pid, every=0.2):
        self.pid, self.every, self.peak, self.own, self.done = pid, every, 0, 0, False
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _tree(self):  # this process and its descendants
        pids, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                with open('/proc/%d/task/%d/children' % (pid, pid)) as f:
                    todo += [int(c) for c in f.read().split()]
            except OSError:
                pass
        return pids

    def _read(self, pid, field, name='status'):
        try:
            with open('/proc/%d/%s' % (pid, name)) as f:
                return next(int(line.split()[1]) for line in f if line.startswith(field + ':')) * 1024
        except (OSError, StopIteration):
            return 0

    def _watch(self):
        while not self.done:
            self.own = max(self.own, self._read(self.pid, 'VmHWM'))
            self.peak = max(self.peak, sum(self._read(p, 'Pss', 'smaps_rollup') for p in self._tree()))
            time.sleep(self.every)

    def stop(self):
        """(the process's own peak, the peak of it and its children together), in bytes."""
        self.done = True
        self.thread.join()
        return self.own, self.peak


def main_py(args, work):
    """Run main.py with ``args`` (checkpoints and pictures in ``work``): (seconds to the stage's first line,
    seconds in all, (its peak memory, its and its workers' together) in bytes, its output)."""
    cmd = [sys.executable, os.path.join(ROOT, 'main.py')] + args + [
        '--use_gpu', 'False', '--precision', 'float32', '--ckpt_dir', os.path.join(work, 'ckpt'),
        '--out_dir', os.path.join(work, 'out')]
    tic = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    peak, first, lines = Peak(proc.pid), None, []
    for line in proc.stdout:
        lines.append(line)
        if first is None and ' stage "' in line:
            first = time.time() - tic
    proc.wait()
    total, memory = time.time() - tic, peak.stop()
    if proc.returncode != 0:
        raise RuntimeError('main.py %s failed (exit %d): %s' % (' '.join(args), proc.returncode, lines[-1:]))
    return first, total, memory, ''.join(lines)


def synthetic(work, n, classes, size=8, pairs=300):
    """An insightface folder of ``n`` tiny grey images in ``classes`` identities, written once under ``work``."""
    root = os.path.join(work, 'faces-%d-%d-%dpx' % (n, classes, size))
    if not os.path.isfile(os.path.join(root, 'property')):
        labels = np.arange(n) % classes
        tmp = root + '.part'
        shutil.rmtree(tmp, ignore_errors=True)
        write_insightface(tmp, labels, image_pool(size, colour=False), size, bins={'lfw': pairs})
        os.rename(tmp, root)
    return root


def mb(value):
    return '%.0f MB' % (value / 1e6)  # (decimal megabytes, as the trainer says the class layer's)


# --------------------------------------------------------------------------- the measurements

def memory(work, sizes, classes=1000):
    """The peak memory of a 1-epoch run (softmax + center loss, LeNet++ with 512-D features) on each set
    size: a table whose rows should agree within 10%, the memory being set by the settings."""
    rows = []
    for n in sizes:
        root = synthetic(work, n, classes)
        first, total, (own, together), out = main_py(
            ['--train', '--center_loss', '--epochs', '1', '--feature_size', '512', '--frames', '1', '--data_dir',
             root, '--batch_size', '128'], os.path.join(work, 'run-%d' % n))
        rows.append((n, own, together, first, total))
        print('%9d records, %d classes: peak %s (the trainer), %s (with its decoding workers); first step after '
              '%.0f s, the epoch and its evaluation %.0f s' % (n, classes, mb(own), mb(together), first, total),
              flush=True)
    print('largest peak / smallest: %.3f (the trainer), %.3f (with workers)'
          % (max(r[1] for r in rows) / rows[0][1], max(r[2] for r in rows) / rows[0][2]))


def opening(work, records, files):
    """Seconds to open a .rec of ``records`` records (the .idx read, every record's header checked, the
    fingerprint, the size and colour from 500 images) and a folder of ``files`` images in 1,000 classes."""
    from imagesets import sources
    root = synthetic(work, records, 1000)
    tic = time.time()
    src = sources.open_source(root)
    print('open %s: %d records in %.1f s (%.1f s a million)' % (root, len(src.splits['train'].labels),
                                                                 time.time() - tic,
                                                                 (time.time() - tic) * 1e6 / records), flush=True)
    folder = os.path.join(work, 'folder-%d' % files)
    if not os.path.isdir(folder):
        write_folder(folder + '.part', np.arange(files) % 1000, image_pool(8, colour=False))
        os.rename(folder + '.part', folder)
    tic = time.time()
    src = sources.open_source(folder)
    print('open %s: %d files in %.1f s (%.1f s a million)' % (folder, len(src.splits['train'].labels),
                                                               time.time() - tic,
                                                               (time.time() - tic) * 1e6 / files), flush=True)


def classes(work, identities):
    """A 1-epoch run with ``identities`` classes of 2 images each (512-D), then --second_train, --test and
    --verify: each one's time and peak memory."""
    root = synthetic(work, 2 * identities, identities)
    run = os.path.join(work, 'classes-%d' % identities)
    for args in (['--train', '--center_loss', '--epochs', '1', '--feature_size', '512', '--frames', '1'],
                 ['--second_train', '--epochs', '1', '--frames', '1'], ['--test'], ['--verify']):
        first, total, (own, together), out = main_py(args + ['--data_dir', root] if args[0] == '--train' else args, run)
        sizes = [line.split('; ', 1)[1] for line in out.splitlines() if 'class layer' in line]
        print('%-48s %5.0f s, peak %s (the trainer), %s (with workers)%s'
              % (' '.join(args[:1] + (['(%d classes)' % identities] if args[0] == '--train' else [])), total,
                 mb(own), mb(together), '; ' + sizes[0] if sizes else ''), flush=True)


def resnet_steps(batch, num_classes, head, model='iresnet50', steps=3):
    """In this process: (images/s of the median of ``steps`` training steps, peak memory in bytes) of
    ``model`` with 512-D features and center loss on 112x112 colour images, its class layer ``head``
    ('softmax' or 'arcface') over ``num_classes`` classes, batch ``batch``, float32, on the CPU."""
    from devices import compat  # noqa: F401  (before mxnet)
    import mxnet as mx
    from mxnet import gluon, nd
    import models
    from center_loss import CenterLoss
    from runs.records import Arch
    from training.step import Objective, train_step
    scale, margin = models.head_values(head, None, None)
    arch = Arch(model, 'prelu' if models.is_face(model) else 'leaky', 512, num_classes, (), 3, (112, 112), head,
                scale, margin)
    net = models.build_net(arch, [mx.cpu()])
    closs = CenterLoss(num_classes, 512)
    closs.initialize(ctx=mx.cpu())
    objective = Objective(net, closs)
    objective.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1, 'momentum': 0.9, 'wd': 5e-4})
    ctrainer = gluon.Trainer(closs.collect_params(), 'sgd', {'learning_rate': 0.5})
    rng = np.random.RandomState(0)
    x, y = nd.array(rng.randn(batch, 3, 112, 112)), nd.array(rng.randint(0, num_classes, batch))
    times = []
    for _ in range(steps + 1):  # the first builds the graph: not timed
        tic = time.time()
        train_step(objective, trainer, ctrainer, x, y, [mx.cpu()], num_classes)
        nd.waitall()
        times.append(time.time() - tic)
    import resource
    return batch / float(np.median(times[1:])), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def resnet(batch, model):
    """The worked example's figures on this CPU: ``model`` (the face networks' IR-ResNet-50 by default), 512-D,
    112x112, center loss, with softmax and with ArcFace, at the class counts of CASIA-WebFace (10,572) and MS1M
    (85,742), each in a process of its own; and what an epoch of each set would take at that rate."""
    for head in ('softmax', 'arcface'):
        for num_classes, images, name in ((10572, 490623, 'CASIA-WebFace'), (85742, 5822653, 'MS1M')):
            out = subprocess.run([sys.executable, os.path.abspath(__file__), '--resnet_child', str(batch),
                                  str(num_classes), head, model], check=True, stdout=subprocess.PIPE,
                                 universal_newlines=True).stdout.strip().splitlines()[-1]
            rate, peak = map(float, out.split())
            print('%s 512-D 112x112 + center loss, %s over %d classes (%s), batch %d: %.1f images/s, peak '
                  '%s; an epoch of %d images: %.1f h on this CPU' % (model, head, num_classes, name, batch, rate,
                                                                     mb(peak), images, images / rate / 3600),
                  flush=True)


def main():
    from cli.flags import Parser, listed, number
    from runs.records import MODELS
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--memory', type=listed(number(int, at_least=1000)), help='set sizes, in records')
    p.add_argument('--open', type=number(int, at_least=1000), help='records of the .rec opened')
    p.add_argument('--files', type=number(int, at_least=1000), default=100000, help='files of the folder opened')
    p.add_argument('--classes', type=number(int, at_least=10), help='identities of 2 images each')
    p.add_argument('--resnet', type=number(int, at_least=1), help='batch of the face network\'s steps timed')
    p.add_argument('--check', type=number(int, at_least=10), help='pairs of the .bin whose check before training is timed')
    p.add_argument('--model', choices=MODELS, default='iresnet50', help='the network --resnet times')
    p.add_argument('--work', default=None, help='where the sets are written (default: a temporary folder)')
    p.add_argument('--resnet_child', nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.resnet_child:
        return print('%f %d' % resnet_steps(int(args.resnet_child[0]), int(args.resnet_child[1]),
                                            *args.resnet_child[2:]))
    if not (args.memory or args.open or args.classes or args.resnet or args.check):
        p.error('nothing to measure: --memory, --open, --classes, --resnet or --check')
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import runlog
    where = runlog.provenance()
    print('CPU: %s, %d cores; commit %s' % (where['cpu'], where['cores'], where['commit']), flush=True)
    work = args.work or tempfile.mkdtemp(prefix='scale-')
    try:
        measure(args, work)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


def checking(work, pairs_count):
    """The check a run makes of a verification set before its first step (imagesets.pairs: read, then every
    image decoded), on a .bin of ``pairs_count`` pairs of photograph-like 112x112 colour JPEGs (LFW's has 6,000
    pairs; cfp_fp 7,000, agedb_30 6,000): seconds, the median of 3."""
    from imagesets import pairs
    pool = image_pool(112, colour=True)
    path = os.path.join(work, 'check-%d.bin' % pairs_count)
    with open(path, 'wb') as f:
        # each image an object of its own, so that the pickle holds every one (it would keep one of each alike)
        images = [bytes(bytearray(pool[i % len(pool)])) for i in range(2 * pairs_count)]
        pickle.dump((images, [k % 2 == 0 for k in range(pairs_count)]), f, protocol=4)
    times = []
    for _ in range(3):
        tic = time.time()
        pairs.check_images(pairs.read_bin(path))
        times.append(time.time() - tic)
    print('a .bin of %d pairs (%d images of 112x112, %.0f MB) read and every image decoded: %.1f s'
          % (pairs_count, 2 * pairs_count, os.path.getsize(path) / 1e6, float(np.median(times))), flush=True)


def measure(args, work):
    if args.check:
        checking(work, args.check)
    if args.open:
        opening(work, args.open, args.files)
    if args.memory:
        memory(work, args.memory)
    if args.classes:
        classes(work, args.classes)
    if args.resnet:
        resnet(args.resnet, args.model)


if __name__ == '__main__':
    main()
