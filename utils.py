"""Data (IDX files, offline first), batching, evaluation, checkpoints and pictures."""
import compat  # noqa: F401

import glob
import gzip
import hashlib
import json
import os
import struct
import tempfile
import urllib.request
import zlib

import numpy as np
import mxnet as mx
from mxnet import nd


class UserError(Exception):
    """A problem the user can fix (bad flag, missing file): main prints it on one line."""


class DataError(UserError, ValueError):
    pass


class CheckpointError(UserError, ValueError):
    pass


# --------------------------------------------------------------------------- data

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
            _atomic_write(os.path.join(directory, stem + '.gz'), blob)
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
            raise DataError('--data_dir %s does not exist' % data_dir)
        missing = [s for s in stems if not _find(data_dir, s)]
        if missing:
            raise DataError('--data_dir %s lacks %s (.gz or raw IDX)' % (data_dir, ', '.join(missing)))
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
    raise DataError('%s not found; looked in %s. Pass --data_dir DIR holding %s'
                    % (dataset, ', '.join(looked), ', '.join(s + '.gz' for s in stems)))


def load_split(directory, split):
    """(images uint8 (N, 28, 28), labels uint8 (N,)) of 'train' or 'test'."""
    img_stem, lbl_stem = FILES[split]
    images = read_idx(_find(directory, img_stem), 3)
    labels = read_idx(_find(directory, lbl_stem), 1)
    if len(images) != len(labels):
        raise DataError('%s: %d images but %d labels' % (split, len(images), len(labels)))
    return images, labels


def to_nd(images, labels, mean, std, ctx):
    """NCHW float32 normalized images and float32 labels, held on ``ctx``."""
    x = (images.astype(np.float32) / 255.0 - mean) / std
    return nd.array(x[:, None], ctx=ctx), nd.array(labels.astype(np.float32), ctx=ctx)


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


def batch_indices(n, batch_size, ctx, rng=None):
    """Index arrays (on ``ctx``) of consecutive batches; shuffled when ``rng`` is given."""
    order = rng.permutation(n) if rng is not None else np.arange(n)
    order = nd.array(order, ctx=ctx, dtype='int32')
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def forward_all(net, x, batch_size=1000):
    """Class scores and features of every row of ``x``, concatenated on x's context."""
    scores, features = [], []
    for start in range(0, x.shape[0], batch_size):
        s, f = net(x[start:start + batch_size])
        scores.append(s)
        features.append(f)
    return nd.concat(*scores, dim=0), nd.concat(*features, dim=0)


# --------------------------------------------------------------------------- evaluation

KDTREE_MAX_DIM = 16  # beyond this a KD-tree is no faster than brute force


def _sq_dists(a, b):
    """Squared Euclidean distances between rows of a (n, d) and b (m, d): (n, m)."""
    return (nd.sum(a * a, axis=1, keepdims=True) - 2 * nd.dot(a, b, transpose_b=True)
            + nd.sum(b * b, axis=1).reshape((1, -1)))


def predict_softmax(scores):
    return nd.argmax(scores, axis=1)


def predict_center(features, centers):
    """Label of the nearest center (Euclidean)."""
    return nd.argmin(_sq_dists(features, centers.as_in_context(features.context)), axis=1)


def predict_knn(features, gallery, gallery_labels, k, num_classes, chunk=1024):
    """Majority label of the k nearest gallery features (ties: the smaller label).

    On the CPU with low-dimensional features (the 2-D maps of the paper) a
    KD-tree finds the neighbours: 10,000 queries against 60,000 points take
    well under a second, where sorting the full distance matrix took 8 s on 2
    cores. Elsewhere (a GPU, wide features) distances are computed in chunks of
    ``chunk`` queries, so memory stays at chunk x len(gallery).
    """
    if not 1 <= k <= gallery.shape[0]:
        raise UserError('--knn_k %d must be between 1 and the gallery size %d' % (k, gallery.shape[0]))
    if features.context.device_type == 'cpu' and features.shape[1] <= KDTREE_MAX_DIM:
        from scipy.spatial import cKDTree
        _, nearest = cKDTree(gallery.asnumpy()).query(features.asnumpy(), k=k, workers=-1)
        nearest = nearest.reshape(len(nearest), k)
        labels = gallery_labels.asnumpy().astype(np.int64)[nearest]                  # (n, k)
        votes = (labels[:, :, None] == np.arange(num_classes)).sum(axis=1)           # (n, classes)
        return nd.array(votes.argmax(axis=1), ctx=features.context)                 # first max: smaller label
    preds = []
    for start in range(0, features.shape[0], chunk):
        d = _sq_dists(features[start:start + chunk], gallery)
        nearest = nd.topk(d, axis=1, k=k, ret_typ='indices', is_ascend=True)
        votes = nd.one_hot(nd.take(gallery_labels, nearest), num_classes).sum(axis=1)
        preds.append(nd.argmax(votes, axis=1))
    return nd.concat(*preds, dim=0)


def accuracy(pred, labels):
    return float((pred == labels.astype(pred.dtype)).mean().asscalar())


def class_means(features, labels, num_classes):
    """Mean feature of each class (zeros for a class with no sample): (K, d)."""
    onehot = nd.one_hot(labels, num_classes)                       # (N, K)
    sums = nd.dot(onehot, features, transpose_a=True)              # (K, d)
    counts = nd.maximum(onehot.sum(axis=0), 1).reshape((-1, 1))
    return sums / counts


# --------------------------------------------------------------------------- checkpoints

CKPT_FORMAT = 1
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _atomic_write(path, data):
    """Write bytes next to ``path`` then rename over it: a crash leaves the old file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_checkpoint(path, net, centers, meta, trainers=None):
    """One file with the network, the centers (K, d), a JSON description and,
    for resuming, the optimizer states of ``trainers`` ({name: gluon.Trainer})."""
    arrays = {'net.' + k: p.list_data()[0].as_in_context(mx.cpu())
              for k, p in net._collect_params_with_prefix().items()}
    arrays['centers'] = centers.as_in_context(mx.cpu())
    arrays['meta'] = _bytes_array(json.dumps(dict(meta, format=CKPT_FORMAT)).encode())
    directory = os.path.dirname(os.path.abspath(path))
    # mx.nd.save and Trainer.save_states only take file names: use private temp
    # files, then write the whole checkpoint in one atomic rename.
    fd, tmp = tempfile.mkstemp(dir=directory, suffix='.tmp')
    os.close(fd)
    try:
        for name, trainer in (trainers or {}).items():
            trainer.save_states(tmp)
            with open(tmp, 'rb') as f:
                arrays['states.' + name] = _bytes_array(f.read())
        nd.save(tmp, arrays)
        with open(tmp, 'rb') as f:
            blob = f.read()
    finally:
        os.remove(tmp)
    _atomic_write(path, blob)


def _bytes_array(blob):
    return nd.array(np.frombuffer(blob, dtype=np.uint8), dtype='uint8')


def restore_trainer(trainer, arrays, name):
    """Load optimizer states saved by save_checkpoint into ``trainer``."""
    key = 'states.' + name
    if key not in arrays:
        raise CheckpointError('the checkpoint holds no optimizer state for %s' % name)
    fd, tmp = tempfile.mkstemp(suffix='.states')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(arrays[key].asnumpy().tobytes())
        trainer.load_states(tmp)
    finally:
        os.remove(tmp)


def load_checkpoint(path, make_hint=''):
    """(arrays dict, meta dict) of a checkpoint written by save_checkpoint."""
    if not os.path.isfile(path):
        raise CheckpointError('checkpoint %s not found%s' % (path, make_hint))
    try:
        arrays = nd.load(path)
        meta = json.loads(arrays.pop('meta').asnumpy().tobytes().decode())
    except Exception:
        raise CheckpointError('%s is not a checkpoint of this project or is truncated; '
                              'retrain to make it again' % path)
    if not isinstance(arrays, dict) or 'centers' not in arrays:
        raise CheckpointError('%s is not a checkpoint of this project' % path)
    return arrays, meta


def restore_net(net, arrays):
    """Load the network part of a checkpoint into an initialized ``net`` (on all its devices)."""
    for k, p in net._collect_params_with_prefix().items():
        value = arrays.get('net.' + k)
        if value is None or value.shape != p.shape:
            raise CheckpointError('checkpoint does not fit the network at %s' % k)
        p.set_data(value)


# --------------------------------------------------------------------------- pictures

class Projection(object):
    """Identity for 2-D features; otherwise PCA to 2-D, fitted once per run so
    that every frame of a GIF is drawn in the same plane."""

    def __init__(self, mean=None, components=None):
        self.mean = None if mean is None else np.asarray(mean)
        self.components = None if components is None else np.asarray(components)

    def state(self):
        """JSON-able, to carry the same plane over a resumed run."""
        if self.components is None:
            return {}
        return {'mean': self.mean.tolist(), 'components': self.components.tolist()}

    def fit(self, features):
        if features.shape[1] > 2 and self.components is None:
            self.mean = features.mean(axis=0)
            _, _, vt = np.linalg.svd(features - self.mean, full_matrices=False)
            self.components = vt[:2].T
        return self

    def __call__(self, features):
        if features.shape[1] <= 2:
            return features
        return (features - self.mean) @ self.components


def class_colors(num_classes):
    """A fixed colour per class, the same in every frame and run."""
    import matplotlib
    cmap = matplotlib.colormaps['tab10' if num_classes <= 10 else 'tab20' if num_classes <= 20 else 'hsv']
    return [cmap(i if num_classes <= 20 else i / num_classes) for i in range(num_classes)]


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')  # no display needed
    import matplotlib.pyplot as plt
    return plt


def draw_features(ax, features, labels, num_classes, title, centers=None, class_names=None):
    """Scatter 2-D features coloured by class on ``ax``, centers as black-edged stars."""
    colors = class_colors(num_classes)
    names = class_names or [str(i) for i in range(num_classes)]
    for k in range(num_classes):
        pts = features[labels == k]
        ax.scatter(pts[:, 0], pts[:, 1], s=2, color=colors[k], alpha=0.6, linewidths=0,
                   label=names[k], rasterized=True)
    if centers is not None:
        ax.scatter(centers[:, 0], centers[:, 1], s=90, marker='*', c=colors[:len(centers)],
                   edgecolors='black', linewidths=0.8, zorder=3)
    ax.legend(loc='upper right', markerscale=5, fontsize=7, framealpha=0.8,
              ncol=2 if num_classes > 10 else 1)
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=7)


def plot_features(path, features, labels, num_classes, title, centers=None, class_names=None):
    """One feature map, as a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=90)
    draw_features(ax, features, labels, num_classes, title, centers, class_names)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_comparison(path, rows, num_classes, class_names=None):
    """The original port's figure: one row per run, training and test maps side by side.

    rows: [(run title, {'train': (features, labels), 'test': (...)}, centers)].
    """
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 4.8 * len(rows)), dpi=80, squeeze=False)
    for (title, splits, centers), row in zip(rows, axes):
        for ax, split in zip(row, ('train', 'test')):
            features, labels = splits[split]
            draw_features(ax, features, labels, num_classes, '%s: %s set' % (title, split), centers, class_names)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def make_gif(path, frames, frame_ms=400, last_ms=2000):
    """Looping GIF of the PNG ``frames``; the last one is held longer."""
    import imageio.v2 as imageio
    images = [imageio.imread(f)[..., :3] for f in frames]
    durations = [frame_ms] * (len(images) - 1) + [last_ms]
    # Pillow takes a list only for several frames.
    imageio.mimsave(path, images, duration=durations if len(images) > 1 else last_ms, loop=0)


def plot_curves(path, history, title):
    """Loss and accuracy per epoch from the history list written by main.py."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    epochs = [h['epoch'] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=90)
    for key, label in (('loss_softmax', 'softmax loss'), ('loss_center', 'center loss')):
        if any(h.get(key) is not None for h in history):
            ax1.plot(epochs, [h.get(key) for h in history], marker='.', label=label)
    ax1.set_xlabel('epoch')
    ax1.set_ylabel('training loss (mean per sample)')
    ax1.set_yscale('log')
    ax1.legend()
    for key, label in (('train_acc', 'train (softmax)'), ('test_acc_softmax', 'test (softmax)'),
                       ('test_acc_center', 'test (nearest center)')):
        ax2.plot(epochs, [h[key] for h in history], marker='.', label=label)
    ax2.set_xlabel('epoch')
    ax2.set_ylabel('accuracy')
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.legend(loc='lower right')
    ax2.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


FRAME_NAME = '{prefix}-{split}-epoch-{epoch}.png'  # one feature-map frame per split and epoch


def frame_path(out_dir, prefix, split, epoch):
    return os.path.join(out_dir, FRAME_NAME.format(prefix=prefix, split=split, epoch='%02d' % epoch))


def remove_outputs(out_dir, prefix):
    """Delete the frames, GIFs and curves an earlier run of ``prefix`` left, so a
    new run's set is never mixed with an old one's."""
    prefix = glob.escape(prefix)
    names = [FRAME_NAME.format(prefix=prefix, split=split, epoch='*') for split in ('train', 'test')]
    names += [prefix + suffix for suffix in ('-train.gif', '-test.gif', '-curves.png', '-metrics.json')]
    for name in names:
        for path in glob.glob(os.path.join(glob.escape(out_dir), name)):
            os.remove(path)


def write_json(path, obj):
    _atomic_write(path, json.dumps(obj, indent=1).encode())

