"""Data: MNIST and Fashion-MNIST from their IDX files (found offline, checked), on the device, shifted per batch."""
from devices import compat  # noqa: F401

import gzip
import hashlib
import os
import struct
import urllib.request
import zlib

import numpy as np
from mxnet import nd

from faults.atomic import atomic_write
from faults.errors import DataError


class DataNotFound(DataError):
    """None of the places looked in holds the dataset."""


HERE = os.path.dirname(os.path.abspath(__file__))
FILES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
         'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}
# SHA-256 of the decompressed files: the content is what matters, not the gzip wrapper.
SHA256 = {
    'mnist': {
        'train-images-idx3-ubyte': 'ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db',
        'train-labels-idx1-ubyte': '65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5',
        't10k-images-idx3-ubyte': '0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7',
        't10k-labels-idx1-ubyte': 'ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2'},
    'fashion-mnist': {
        'train-images-idx3-ubyte': 'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888',
        'train-labels-idx1-ubyte': 'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9',
        't10k-images-idx3-ubyte': '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b',
        't10k-labels-idx1-ubyte': '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34'},
}
MIRRORS = {
    'mnist': ['https://ossci-datasets.s3.amazonaws.com/mnist/',
              'https://storage.googleapis.com/cvdf-datasets/mnist/'],
    'fashion-mnist': ['http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/'],
}
SYSTEM_DIRS = {'mnist': os.path.join(HERE, 'data', 'mnist'),          # vendored in this repo
               'fashion-mnist': '/usr/share/datasets/fashion-mnist'}  # Debian dataset-fashion-mnist
CLASS_NAMES = {
    'mnist': [str(i) for i in range(10)],
    'fashion-mnist': ['T-shirt', 'Trouser', 'Pullover', 'Dress', 'Coat',
                      'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Boot'],
}
# IDX magic: two zero bytes, the type code (0x08 = unsigned byte), the number of dimensions.
IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}


def read_idx(path, ndim):
    """Read an IDX file of unsigned bytes (``.gz`` or raw) with ``ndim`` dimensions.

    Checks the magic number, the header and that the payload has exactly the
    announced length; raises DataError naming the file otherwise.
    """
    name = os.path.basename(path)
    try:
        opener = gzip.open if path.endswith('.gz') else open
        with opener(path, 'rb') as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise DataError('%s is corrupt or truncated (%s); delete it and fetch it again' % (path, e))
    if len(raw) < 4 + 4 * ndim:
        raise DataError('%s is too short to be an IDX file (%d bytes)' % (path, len(raw)))
    magic = struct.unpack('>I', raw[:4])[0]
    if magic != IDX_MAGIC[ndim]:
        raise DataError('%s: wrong magic number 0x%08x, expected 0x%08x (an IDX file of %d dimension%s)'
                        % (name, magic, IDX_MAGIC[ndim], ndim, 's' if ndim > 1 else ''))
    shape = struct.unpack('>%dI' % ndim, raw[4:4 + 4 * ndim])
    payload = raw[4 + 4 * ndim:]
    if len(payload) != int(np.prod(shape)):
        raise DataError('%s: header announces shape %s (%d bytes) but holds %d bytes: truncated or corrupt'
                        % (path, shape, int(np.prod(shape)), len(payload)))
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)


def _find(directory, stem):
    for candidate in (stem + '.gz', stem):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


def _complete(directory):
    stems = FILES['train'] + FILES['test']
    return all(_find(directory, s) for s in stems)


def _download(dataset, directory):
    os.makedirs(directory, exist_ok=True)
    for stem in FILES['train'] + FILES['test']:
        if _find(directory, stem):
            continue
        last = None
        for mirror in MIRRORS[dataset]:
            try:
                with urllib.request.urlopen(mirror + stem + '.gz', timeout=30) as r:
                    blob = r.read()
                content = gzip.decompress(blob)
            except Exception as e:  # network or gzip error: try the next mirror
                last = e
                continue
            if hashlib.sha256(content).hexdigest() != SHA256[dataset][stem]:
                last = 'SHA-256 mismatch from %s' % mirror
                continue
            atomic_write(os.path.join(directory, stem + '.gz'), blob)
            break
        else:
            raise DataError('could not download %s (%s)' % (stem, last))


def find_data(dataset, data_dir=None, download=True):
    """Directory holding the four IDX files of ``dataset``.

    With ``data_dir`` only that directory is used (an explicit choice should
    not silently fall back to another copy).  Otherwise: the vendored MNIST or
    Debian's Fashion-MNIST, then ``$MXNET_HOME/datasets/<name>``, then a
    download into the latter with each file's SHA-256 checked.
    """
    if dataset not in SHA256:
        raise DataError('unknown dataset %r: choose from %s' % (dataset, ', '.join(SHA256)))
    stems = FILES['train'] + FILES['test']
    if data_dir is not None:
        if not os.path.isdir(data_dir):
            raise DataError('data directory %s %s' % (data_dir, 'is not a folder' if os.path.exists(data_dir)
                                                      else 'does not exist'))
        missing = [s for s in stems if not _find(data_dir, s)]
        if missing:
            raise DataError('data directory %s lacks %s (.gz or raw IDX)' % (data_dir, ', '.join(missing)))
        return data_dir
    home = os.path.join(os.environ.get('MXNET_HOME', os.path.join(os.path.expanduser('~'), '.mxnet')),
                        'datasets', dataset)
    looked = [SYSTEM_DIRS[dataset], home]
    for d in looked:
        if _complete(d):
            return d
    if download:
        try:
            _download(dataset, home)
            return home
        except DataError as e:
            looked.append('the public mirrors (%s)' % e)
    raise DataNotFound('%s not found; looked in %s' % (dataset, ', '.join(looked)))


def load_split(directory, split):
    """(images uint8 (N, 28, 28), labels uint8 (N,)) of 'train' or 'test'."""
    img_stem, lbl_stem = FILES[split]
    images = read_idx(_find(directory, img_stem), 3)
    labels = read_idx(_find(directory, lbl_stem), 1)
    if len(images) != len(labels):
        raise DataError('%s: %d images but %d labels' % (split, len(images), len(labels)))
    return images, labels


def fingerprint(directory):
    """The four files' names and sizes, cheap to recompute: whether a later command reads the same IDX files."""
    stems = FILES['train'] + FILES['test']
    return '|'.join('%s:%d' % (os.path.basename(_find(directory, s)), os.path.getsize(_find(directory, s)))
                    for s in stems)


def split_classes(num_classes, holdout):
    """(trained class ids, label map) when the classes ``holdout`` are kept out of training:
    trained class c gets label map[c] in 0..K-1 (the class layer's outputs), a held-out one -1."""
    trained = [c for c in range(num_classes) if c not in set(holdout)]
    mapping = np.full(num_classes, -1, np.int64)
    mapping[trained] = np.arange(len(trained))
    return trained, mapping


def random_mirror(x, flips):
    """Each image of ``x`` (B, C, H, W) mirrored left to right where ``flips`` (B,) is 1, as it is elsewhere:
    one select on x's device."""
    return nd.where(flips, nd.flip(x, axis=3), x)


def random_shift(x, shifts, background, max_shift):
    """Translate each image of ``x`` (B, C, H, W) by its own whole-pixel offset.

    ``shifts`` (B, 2) holds (dx, dy) in pixels (positive: right, down), each
    within [-max_shift, max_shift]; the uncovered border takes the value
    ``background`` (a blank pixel after normalisation). One gather from a
    padded copy, on x's device: pixels are copied exactly and no data goes
    back to the host.
    """
    b, c, h, w = x.shape
    p, ctx = max_shift, x.context
    hp, wp = h + 2 * p, w + 2 * p
    padded = nd.pad(x - background, mode='constant', constant_value=0, pad_width=(0, 0, 0, 0, p, p, p, p))
    dx = nd.repeat(shifts[:, 0], c).reshape((-1, 1, 1))      # one offset per image and channel
    dy = nd.repeat(shifts[:, 1], c).reshape((-1, 1, 1))
    base = (nd.arange(b * c, ctx=ctx) * (hp * wp)).reshape((-1, 1, 1))
    rows = nd.arange(h, ctx=ctx).reshape((1, h, 1))
    cols = nd.arange(w, ctx=ctx).reshape((1, 1, w))
    # out[n, y, x] = in[n, y - dy, x - dx] = padded[n, y - dy + p, x - dx + p]
    src = nd.broadcast_add(nd.broadcast_add(base, nd.broadcast_sub(rows + p, dy) * wp),
                           nd.broadcast_sub(cols + p, dx))
    return nd.take(padded.reshape((-1,)), src.reshape((-1,))).reshape((b, c, h, w)) + background
