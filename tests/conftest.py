import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import gzip  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

import compat  # noqa: E402,F401  (numpy alias and thread count, before mxnet)
with warnings.catch_warnings():
    # mxnet 1.9.1 imports distutils' LooseVersion and numpy's removed financial functions
    warnings.simplefilter('ignore', DeprecationWarning)
    import mxnet  # noqa: E402,F401

import utils  # noqa: E402


def write_idx(path, array, magic=None):
    header = struct.pack('>I', magic if magic is not None else utils.IDX_MAGIC[array.ndim])
    header += struct.pack('>%dI' % array.ndim, *array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    with (gzip.open if path.endswith('.gz') else open)(path, 'wb') as f:
        f.write(blob)
    return path


def make_dataset(directory, n_train=6, n_test=4, drop=None, label_len=None, top_label=9):
    os.makedirs(directory, exist_ok=True)
    rng = np.random.RandomState(0)
    for split, n in (('train', n_train), ('test', n_test)):
        img, lbl = utils.FILES[split]
        if img != drop:
            write_idx(os.path.join(directory, img + '.gz'), rng.randint(0, 256, (n, 28, 28)))
        if lbl != drop:
            write_idx(os.path.join(directory, lbl + '.gz'), rng.randint(0, top_label + 1, label_len or n))
    return directory



def run_main(*args, timeout=600):
    """Run main.py as a user would; (exit status, stdout, stderr)."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'main.py')] + list(args), cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr
