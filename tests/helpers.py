"""What several test files share: IDX files, image folders, RecordIO and pair lists written on the fly, and
main.py run as a user runs it."""
import gzip
import io
import os
import pickle
import signal
import struct
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import utils  # noqa: E402

# The flags of a quick run: a slice of MNIST, the CPU, no pictures (add the mode and --epochs); batch 128,
# so that the tests that name a batch count 5 batches of the 600 images.
QUICK = ['--batch_size', '128', '--train_samples', '600', '--test_samples', '200', '--use_gpu', 'False',
         '--min_epoch_steps', '0', '--no_plotting']


def write_idx(path, array, magic=None):
    header = struct.pack('>I', magic if magic is not None else utils.IDX_MAGIC[array.ndim])
    header += struct.pack('>%dI' % array.ndim, *array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    with (gzip.open if path.endswith('.gz') else open)(path, 'wb') as f:
        f.write(blob)
    return path


def make_dataset(directory, n_train=6, n_test=4, drop=None, label_len=None, top_label=9):
    """A tiny dataset of random IDX files; ``drop`` leaves one file out, ``label_len`` mismatches a length."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.RandomState(0)
    for split, n in (('train', n_train), ('test', n_test)):
        img, lbl = utils.FILES[split]
        if img != drop:
            write_idx(os.path.join(directory, img + '.gz'), rng.randint(0, 256, (n, 28, 28)))
        if lbl != drop:
            write_idx(os.path.join(directory, lbl + '.gz'), rng.randint(0, top_label + 1, label_len or n))
    return directory


def a_meta(epoch=1, arch=None, **fields):
    """A checkpoint's description (runs.meta.Meta) of ``epoch`` for a network of ``arch`` (a small LeNet's by
    default), the rest at plain values or as ``fields`` give them (``run``: the records beside the Arch)."""
    from runs.meta import Meta, Run
    from runs.records import Arch
    run = Run(arch or Arch('lenet', 'relu', 2, 10), **fields.pop('run', {}))
    values = dict(stage='first', prefix='test', classes=tuple(range(run.arch.num_classes)), normalisation=(0.0, 1.0),
                  precision='float32', epoch=epoch, best=-1.0, history=[])
    values.update(fields)
    return Meta(run, **values)


def load_bench(name):
    """The module bench/<name>.py (a script, not a package), to call its functions."""
    import importlib.util
    if os.path.join(ROOT, 'bench') not in sys.path:  # as Python runs a script: its folder first on the path
        sys.path.insert(0, os.path.join(ROOT, 'bench'))
    spec = importlib.util.spec_from_file_location('bench_' + name, os.path.join(ROOT, 'bench', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(*args, timeout=600, env=None):
    """Run main.py as a user would; (exit status, stdout, stderr)."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'main.py')] + list(args), cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def dirs(tmp_path):
    """--ckpt_dir and --out_dir inside ``tmp_path``."""
    return ['--ckpt_dir', str(tmp_path / 'ckpt'), '--out_dir', str(tmp_path / 'out')]


def assert_clean_error(result, *fragments, status=2):
    """One line on stderr holding every fragment, no traceback, exit ``status``."""
    rc, out, err = result
    assert rc == status, (rc, out, err)
    assert 'Traceback' not in err and 'Traceback' not in out, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


class Touch(object):
    """Pickles to a call of os.system that creates ``path``: what a crafted checkpoint or .bin would carry."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, ('touch %s' % self.path,)


def ctrl_c_on():
    """In a child (preexec_fn): SIGINT back to its default. A suite started in the background (`make
    test &`, nohup, some CI runners) inherits SIGINT ignored, as shells do for background jobs, and
    Python then never turns Ctrl-C into KeyboardInterrupt: the child would train on."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# ----------------------------------------------------------------- your own images

# A constant rate (step, every 8 epochs): a run extended by --resume --allow_changes --epochs 2 then follows
# the schedule of an uninterrupted 2-epoch run, which a cosine schedule (its length the stage's) would not.
# A --warmup given is taken as it is (half an epoch here), without the default's floor in steps; one pass an
# epoch (--min_epoch_steps 0), as these sets are a few dozen images.
FAST = ['--use_gpu', 'False', '--precision', 'float32', '--batch_size', '32', '--decode_workers', '1', '--lr', '0.05',
        '--lr_schedule', 'step', '--warmup', '0.5', '--shift', '0', '--min_epoch_steps', '0']


def png(img):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format='PNG')
    return buf.getvalue()


def digits(n, seed, size=16, colour=False, classes=3):
    """n images of ``classes`` easy classes: class k is a bright bar at row band k, plus noise."""
    rng = np.random.RandomState(seed)
    labels = np.arange(n) % classes
    imgs = rng.randint(0, 60, (n, size, size)).astype(np.uint8)
    band = size // classes
    for i, k in enumerate(labels):
        imgs[i, k * band:(k + 1) * band] = 255
    if colour:
        imgs = np.stack([imgs, imgs[:, ::-1], imgs.transpose(0, 2, 1)], axis=-1)
    return imgs, labels


def jpeg(img, quality=90):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format='JPEG', quality=quality)
    return buf.getvalue()


def faces(identities, per_identity, seed=0, size=112):
    """Face-like colour images (uint8 (n, size, size, 3)) and their identities (0, 0, ..., 1, 1, ...): each
    identity an oval of its own colour, with eyes, a nose and a mouth of its own sizes and places, left and
    right alike (a mirrored face is the same person, as real ones are); each image that face moved by a few
    pixels, lit anew and noised. What a test trains a face network on in seconds."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out, labels = [], []
    for person in range(identities):
        skin = rng.uniform(80, 230, 3)
        eye_y, eye_dx, eye_r = rng.uniform(0.35, 0.45), rng.uniform(0.1, 0.2), rng.uniform(0.03, 0.07)
        mouth_y, mouth_w, nose = rng.uniform(0.65, 0.75), rng.uniform(0.08, 0.2), rng.uniform(0.04, 0.1)
        hair = rng.uniform(0, 80, 3)
        for _ in range(per_identity):
            dx, dy = rng.uniform(-0.04, 0.04, 2)
            x, y = xx - dx, yy - dy
            img = np.empty((size, size, 3), np.float32)
            img[:] = rng.uniform(0, 255, 3)                                      # background
            face = ((x - 0.5) / 0.33) ** 2 + ((y - 0.52) / 0.42) ** 2 < 1
            img[face] = skin
            img[face & (y < 0.22)] = hair
            for side in (-1, 1):
                img[(x - 0.5 - side * eye_dx) ** 2 + (y - eye_y) ** 2 < eye_r ** 2] = 20
            img[face & (np.abs(x - 0.5) < nose / 3) & (y > eye_y) & (y < eye_y + nose * 2)] = skin * 0.7
            img[face & (np.abs(x - 0.5) < mouth_w) & (np.abs(y - mouth_y) < 0.02)] = (150, 30, 40)
            img = img * rng.uniform(0.8, 1.2) + rng.normal(0, 8, img.shape)
            out.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(person)
    return np.stack(out), np.array(labels)


def write_folder(root, splits, names=('a', 'b', 'c')):
    for split, (imgs, labels) in splits.items():
        for i, (img, label) in enumerate(zip(imgs, labels)):
            d = os.path.join(root, split, names[label])
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, '%04d.png' % i), 'wb') as f:
                f.write(png(img))
    return root


def write_rec(root, splits, order=None, insightface=False, num_classes=None):
    import mxnet as mx
    os.makedirs(root, exist_ok=True)
    for split, (imgs, labels) in splits.items():
        rec = mx.recordio.MXIndexedRecordIO(os.path.join(root, split + '.idx'), os.path.join(root, split + '.rec'),
                                            'w')
        idx = order[split] if order else np.arange(len(labels))
        key = 0
        if insightface:  # record 0: the image records are 1 .. N (by class), then one record per class
            idx = idx[np.argsort(np.asarray(labels)[idx], kind='stable')]
            classes, counts = np.unique(np.asarray(labels)[idx], return_counts=True)
            n = len(labels)
            rec.write_idx(0, mx.recordio.pack(mx.recordio.IRHeader(2, [n + 1, n + 1 + len(classes)], 0, 0), b''))
            key = 1
        for i in idx:
            label = float(labels[i]) if not insightface else [float(labels[i]), 0.0]
            rec.write_idx(key, mx.recordio.pack(mx.recordio.IRHeader(0, label, key, 0), png(imgs[i])))
            key += 1
        if insightface:
            starts = 1 + np.concatenate([[0], np.cumsum(counts)[:-1]])
            for start, count in zip(starts, counts):
                rec.write_idx(key, mx.recordio.pack(mx.recordio.IRHeader(2, [float(start), float(start + count)],
                                                                         key, 0), b''))
                key += 1
        rec.close()
    if num_classes:
        with open(os.path.join(root, 'property'), 'w') as f:
            f.write('%d,16,16\n' % num_classes)
    return root


def bin_file(path, n_pairs=20, payload=None):
    imgs, _ = digits(2 * n_pairs, 3)
    bins = [png(i) for i in imgs]
    flags = [bool(k % 2) for k in range(n_pairs)]
    with open(str(path), 'wb') as f:
        pickle.dump(payload if payload is not None else (bins, flags), f, protocol=pickle.HIGHEST_PROTOCOL)
    return str(path)


def lfw_lines(folds, per):
    lines = ['%d\t%d' % (folds, per)]
    for f in range(folds):
        lines += ['%s\t%d\t%d' % ('abc'[(f + k) % 3], 1 + k, 2 + k) for k in range(per)]
        lines += ['%s\t%d\t%s\t%d' % ('abc'[(f + k) % 3], 1 + k, 'abc'[(f + k + 1) % 3], 3 + k) for k in range(per)]
    return '\n'.join(lines) + '\n'
