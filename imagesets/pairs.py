"""Pair lists for verification, as face benchmarks ship them: LFW's ``pairs.txt`` resolved against an
image folder, and insightface's ``.bin`` (a pickle, read without running code).

LFW's format: a first line with the number of folds and of pairs per kind in a fold (``10 300``; a
single number N means one fold), then, fold after fold, N same pairs ``name n1 n2`` and N different
pairs ``name1 n1 name2 n2``; ``n`` is the n-th image (from 1) of that name's folder in sorted order,
which for LFW's own files, ``name/name_0001.jpg``, is LFW's numbering.

insightface's ``.bin``: a pickle of (list of encoded images, list of same/different flags), image 2k
and 2k+1 making pair k; its benchmarks split the pairs into 10 consecutive folds.
"""
import collections
import os
import unicodedata

import numpy as np

from faults import safepickle
from faults.errors import DataError
from imagesets import decode
from imagesets.listed import IMAGE_EXTENSIONS

# images: a list of (where, encoded bytes or None, path or None); pairs: (P, 2) indices into it;
# same: (P,) bool; folds: (P,) fold of each pair
PairList = collections.namedtuple('PairList', 'name images pairs same folds')
BIN_FOLDS = 10


def read_pairs(path, folder=None):
    """The PairList of ``path``: a ``.bin``, or LFW's text format resolved against ``folder``."""
    if not os.path.isfile(path):
        raise DataError('pair list %s not found' % path)
    if path.endswith('.bin'):
        return read_bin(path)
    if folder is None or not os.path.isdir(folder):
        raise DataError('%s names images by folder: give the folder that holds them (--pairs_dir), '
                          'not %s' % (path, folder))
    return read_lfw(path, folder)


def read_lfw(path, folder):
    with open(path, 'rb') as f:
        text = f.read()
    if text.startswith((b'\xff\xfe', b'\xfe\xff')):  # UTF-16 with its byte-order mark: back to the bytes of names
        text = text.decode('utf-16').encode('utf-8', 'surrogateescape')
    lines = [line.split() for line in text.lstrip(b'\xef\xbb\xbf').splitlines() if line.strip()]
    try:
        head = [int(v) for v in lines[0]]
        folds, per = (1, head[0]) if len(head) == 1 else head[:2]
    except (ValueError, IndexError):
        raise DataError('%s: the first line must give the folds and the pairs per kind, e.g. "10 300"' % path)
    if folds < 1 or per < 1:
        raise DataError('%s: its first line announces %d folds of %d pairs per kind: no pairs to verify'
                          % (path, folds, per))
    if len(lines) - 1 != 2 * folds * per:
        raise DataError('%s announces %d folds of %d + %d pairs but holds %d pair lines'
                          % (path, folds, per, per, len(lines) - 1))
    files, index, images, pairs, same = {}, {}, [], [], []

    def image(raw, n, line_no):
        name = _folder_name(folder, raw)
        if name not in files:
            d = os.path.join(folder, name)
            files[name] = sorted(f for f in os.listdir(d) if f.lower().endswith(IMAGE_EXTENSIONS)
                                 and not f.startswith('.')) if os.path.isdir(d) else []
        if not 1 <= n <= len(files[name]):
            raise DataError('%s line %d: %s has no image %d (%s holds %d)' % (
                path, line_no, name, n, os.path.join(folder, name), len(files[name])))
        p = os.path.join(folder, name, files[name][n - 1])
        if p not in index:
            index[p] = len(images)
            images.append((p, None, p))
        return index[p]
    for k, parts in enumerate(lines[1:]):
        line_no = k + 2
        try:
            if len(parts) == 3:
                first, second = (parts[0], int(parts[1])), (parts[0], int(parts[2]))
            elif len(parts) == 4:
                first, second = (parts[0], int(parts[1])), (parts[2], int(parts[3]))
            else:
                raise ValueError
        except ValueError:
            raise DataError('%s line %d: expected "name n1 n2" or "name1 n1 name2 n2", got %r'
                              % (path, line_no, b' '.join(parts).decode('utf-8', 'replace')))
        a, b = image(first[0], first[1], line_no), image(second[0], second[1], line_no)
        pairs.append((a, b))
        same.append(len(parts) == 3)
    fold = np.repeat(np.arange(folds), 2 * per)
    return PairList(os.path.basename(path), images, np.array(pairs, np.int64), np.array(same), fold)


def lfw_pairs(images, rng, folds=10, per=300):
    """The text of LFW's pairs.txt over ``images`` ({class name: number of its images}): ``folds`` folds of ``per`` same
    pairs ("name n1 n2") and ``per`` different ones ("name1 n1 name2 n2"), drawn with ``rng``."""
    names = sorted(images)
    lines = ['%d\t%d' % (folds, per)]
    for _ in range(folds):
        for _ in range(per):
            name = names[rng.randint(len(names))]
            a, b = rng.choice(images[name], 2, replace=False) + 1
            lines.append('%s\t%d\t%d' % (name, a, b))
        for _ in range(per):
            one, other = rng.choice(len(names), 2, replace=False)
            lines.append('%s\t%d\t%s\t%d' % (names[one], rng.randint(images[names[one]]) + 1, names[other],
                                             rng.randint(images[names[other]]) + 1))
    return '\n'.join(lines) + '\n'


def _folder_name(folder, raw):
    """The folder a name in a pair list means, whatever its bytes' encoding: the bytes as they are,
    else read as UTF-8, Windows-1252 or Latin-1 and written in this system's encoding of file names."""
    candidates = [os.fsdecode(raw)]
    for encoding in ('utf-8', 'cp1252', 'latin-1'):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        candidates += [unicodedata.normalize(form, text) for form in ('NFC', 'NFD')]  # as a Mac writes names
    for name in candidates:
        if os.path.isdir(os.path.join(folder, name)):
            return name
    return candidates[0]


# What a .bin may build besides plain data, and nothing else: bytearrays, and numpy's arrays and scalars, as
# conversion scripts write the images (uint8 arrays of the encoded bytes) and the flags (a bool array); numpy
# 1's names and numpy 2's, Python 3's name of bytearray and Python 2's.
BIN_CONSTRUCTORS = {('%s.multiarray' % core, name) for core in ('numpy.core', 'numpy._core')
                    for name in ('_reconstruct', 'scalar')} | \
    {('numpy', 'ndarray'), ('numpy', 'dtype'), ('builtins', 'bytearray'), ('__builtin__', 'bytearray')}


def _encoded(entry):
    """An image entry's bytes: bytes, a bytearray, or a 1-D uint8 numpy array of them; None otherwise."""
    if isinstance(entry, (bytes, bytearray)):
        return bytes(entry)
    if isinstance(entry, np.ndarray) and entry.dtype == np.uint8 and entry.ndim == 1:
        return entry.tobytes()
    return None


def _flags(values):
    """The same/different flags as a list of bools: a list or tuple of bools or 0/1, or a bool (or 0/1
    integer) numpy array; None otherwise."""
    if isinstance(values, np.ndarray):
        if values.ndim != 1 or not (values.dtype == np.bool_ or np.issubdtype(values.dtype, np.integer)):
            return None
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        return None
    flags = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or (isinstance(v, (int, np.integer)) and v in (0, 1)):
            flags.append(bool(v))
        else:
            return None
    return flags


def check_images(pair_list):
    """Decode every image of ``pair_list`` (a .bin's) once, at its own size: a broken one is named now, before a
    run trains, not when the set is first measured after an epoch (imagesets/decode.py says why in plain words)."""
    for where, blob, path in pair_list.images:
        if blob is None:
            continue
        channels, size = decode.shape_of(blob, where)
        decode.decode(blob, channels, size, where)


def read_bin(path):
    """The PairList of insightface's .bin at ``path``: a pickle (Python 2's or 3's) of (the encoded images,
    as bytes, bytearrays or uint8 numpy arrays, in a list or tuple; the same/different flags, as a list of
    bools or a bool numpy array). Read by an unpickler that builds plain data and numpy's arrays and
    scalars, nothing else (faults/safepickle.py)."""
    with open(path, 'rb') as f:
        blob = f.read()
    try:  # Python 2 pickles hold str: read them as bytes
        loaded = safepickle.loads(blob, BIN_CONSTRUCTORS, encoding='bytes')
    except safepickle.UnsafePickle as e:
        raise DataError('%s: %s' % (path, e))
    bins = flags = None
    if isinstance(loaded, (tuple, list)) and len(loaded) == 2 and isinstance(loaded[0], (list, tuple)):
        bins, flags = [_encoded(b) for b in loaded[0]], _flags(loaded[1])
    if bins is None or flags is None or any(b is None for b in bins):
        raise DataError('%s is not an insightface verification set: a pickle of (list of encoded images, '
                        'list of same/different flags)' % path)
    if len(bins) != 2 * len(flags) or not flags:
        raise DataError('%s holds %d images for %d pairs: expected two images a pair' % (path, len(bins),
                                                                                            len(flags)))
    images = [('%s (image %d)' % (path, i), b, None) for i, b in enumerate(bins)]
    pairs = np.arange(len(bins)).reshape(-1, 2)
    n = len(flags)  # 10 consecutive folds, the first n % 10 one pair longer (as scikit-learn's KFold)
    sizes = [n // BIN_FOLDS + (1 if f < n % BIN_FOLDS else 0) for f in range(BIN_FOLDS)]
    fold = np.repeat(np.arange(BIN_FOLDS), sizes)
    return PairList(os.path.basename(path), images, pairs, np.array([bool(s) for s in flags]), fold)
