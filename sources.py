"""Your own images on disk: a folder of class folders, or MXNet RecordIO, listed, checked and decoded.

Recognised from what ``--data_dir DIR`` holds:

* an image folder: ``DIR/train/<class>/*`` and ``DIR/test/<class>/*`` (PNG, JPEG, BMP); class ids are
  the positions of the class names in the sorted names of both splits, so a test class that has no
  training folder is held out (an open-set class, as ``--holdout`` makes them);
* RecordIO, as MXNet's ``im2rec`` writes it: ``DIR/train.rec`` + ``train.idx`` and ``DIR/test.rec`` +
  ``test.idx``, each record's header holding its label (a number, or an array whose first value is
  the label); insightface's layout is read too: a first record whose header flags the range of the
  image records, and a ``property`` file ``num_classes,height,width``.

Images are decoded with MXNet's own decoder (``mx.image.imdecode``, its built-in OpenCV), grey or colour
as the first training image is, and brought to one size. Only the list of images (paths or record
offsets) and their labels are held in memory: the pixels are read when a batch needs them.
"""
import collections
import os
import struct

import numpy as np

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp')
SPLITS = ('train', 'test')
RECORD_MAGIC = 0xced7230a
IR_FORMAT, IR_SIZE = 'IfQQ', 24  # MXNet's IRHeader: flag, label, id, id2


class SourceError(ValueError):
    """Images on disk that cannot be used: the message names the file or folder."""


Split = collections.namedtuple('Split', 'name kind items labels path')
# items: image paths (folder) or record offsets in the .rec (recordio); labels: int64 class ids


class Source(object):
    """A dataset of images on disk: its kind ('folder' or 'recordio'), the class names, the two
    splits, and the channels and size of its images (of the first training image)."""

    def __init__(self, kind, root, classes, splits, channels, size):
        self.kind, self.root, self.classes, self.splits = kind, root, classes, splits
        self.channels, self.size = channels, size

    def describe(self):
        return '%s %s (%d classes, %s images of %dx%d)' % (
            'image folder' if self.kind == 'folder' else 'RecordIO', self.root, len(self.classes),
            'grey' if self.channels == 1 else 'colour', self.size[0], self.size[1])


def kind_of(root):
    """'folder', 'recordio' or None (an IDX folder, or nothing this module reads)."""
    if all(os.path.isfile(os.path.join(root, s + '.rec')) for s in SPLITS):
        return 'recordio'
    if any(os.path.isfile(os.path.join(root, s + '.rec')) for s in SPLITS):
        return 'recordio'  # one of the two is missing: open() says which
    if all(os.path.isdir(os.path.join(root, s)) for s in SPLITS):
        return 'folder'
    return None


def open_source(root):
    """The Source in ``root``; SourceError naming what is wrong."""
    kind = kind_of(root)
    if kind == 'folder':
        return _folder(root)
    if kind == 'recordio':
        return _recordio(root)
    raise SourceError('%s holds neither train/ and test/ class folders nor train.rec and test.rec' % root)


# --------------------------------------------------------------------------- image folders

def _folder(root):
    names = {}
    for split in SPLITS:
        top = os.path.join(root, split)
        names[split] = sorted(d for d in os.listdir(top) if os.path.isdir(os.path.join(top, d))
                              and not d.startswith('.'))
        if not names[split]:
            raise SourceError('%s holds no class folders' % top)
    classes = sorted(set(names['train']) | set(names['test']))
    ids = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split in SPLITS:
        paths, labels = [], []
        for c in names[split]:
            folder = os.path.join(root, split, c)
            files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
            if not files:
                raise SourceError('class folder %s holds no images (%s)' % (folder, ', '.join(IMAGE_EXTENSIONS)))
            paths += [os.path.join(folder, f) for f in files]
            labels += [ids[c]] * len(files)
        splits[split] = Split(split, 'folder', paths, np.array(labels, np.int64), os.path.join(root, split))
    channels, size = _shape_of(read_bytes(splits['train'], 0), splits['train'].items[0])
    return Source('folder', root, classes, splits, channels, size)


# --------------------------------------------------------------------------- RecordIO

def _recordio(root):
    splits, top = {}, -1
    for split in SPLITS:
        rec, idx = (os.path.join(root, split + ext) for ext in ('.rec', '.idx'))
        if not os.path.isfile(rec):
            raise SourceError('%s is missing (RecordIO needs train.rec and test.rec, each with its .idx)' % rec)
        if not os.path.isfile(idx):
            raise SourceError('%s has no index %s: make it with MXNet\'s im2rec, or pack the records with '
                              'mx.recordio.MXIndexedRecordIO' % (rec, idx))
        offsets, labels = _records(rec, idx)
        splits[split] = Split(split, 'recordio', offsets, labels, rec)
        top = max(top, int(labels.max()))
    num_classes = top + 1
    prop = os.path.join(root, 'property')
    if os.path.isfile(prop):
        try:
            num_classes = int(open(prop).read().strip().split(',')[0])
        except ValueError:
            raise SourceError('%s: expected "num_classes,height,width"' % prop)
        if top >= num_classes:
            raise SourceError('a label %d in %s is outside the %d classes its property file gives'
                              % (top, root, num_classes))
    classes = ['class %d' % i for i in range(num_classes)]
    channels, size = _shape_of(read_bytes(splits['train'], 0), splits['train'].path + ' (first record)')
    return Source('recordio', root, classes, splits, channels, size)


def _records(rec, idx):
    """(offsets of the image records, their labels) from the index and each record's header."""
    try:
        with open(idx) as f:
            rows = [line.split('\t') for line in f if line.strip()]
        index = sorted((int(k), int(v)) for k, v in rows)
    except (ValueError, OSError) as e:
        raise SourceError('%s is not an index of .rec offsets ("key<TAB>offset" lines): %s' % (idx, e))
    if not index:
        raise SourceError('%s lists no records' % idx)
    with open(rec, 'rb') as f:
        headers = [_header(f, offset, rec) for _, offset in index]
    keys = [k for k, _ in index]
    offsets = [o for _, o in index]
    first_flag, first_label = headers[0]
    if keys[0] == 0 and first_flag > 0:  # insightface: record 0 says the images are records 1 .. label[0] - 1
        keep = [i for i, k in enumerate(keys) if 1 <= k < int(first_label[0])]
    else:
        keep = list(range(len(keys)))
    labels = np.array([headers[i][1][0] for i in keep], np.float64)
    if not len(labels):
        raise SourceError('%s holds no image records' % rec)
    if (labels < 0).any() or (labels != np.round(labels)).any():
        bad = labels[(labels < 0) | (labels != np.round(labels))][0]
        raise SourceError('%s: a record\'s label is %g, not a class id (0, 1, 2, ...)' % (rec, bad))
    return [offsets[i] for i in keep], labels.astype(np.int64)


def _header(f, offset, rec):
    """(flag, labels) of the record at ``offset``: the RecordIO frame, then MXNet's image header."""
    f.seek(offset)
    frame = f.read(8 + IR_SIZE)
    if len(frame) < 8 + IR_SIZE:
        raise SourceError('%s is truncated (a record at byte %d of it is cut short)' % (rec, offset))
    magic, length = struct.unpack('<II', frame[:8])
    if magic != RECORD_MAGIC:
        raise SourceError('%s: no record at byte %d (its .idx does not match it)' % (rec, offset))
    flag, label, _, _ = struct.unpack(IR_FORMAT, frame[8:8 + IR_SIZE])
    if flag > 0:
        extra = f.read(4 * flag)
        if len(extra) < 4 * flag:
            raise SourceError('%s is truncated at byte %d' % (rec, offset))
        return flag, list(struct.unpack('%df' % flag, extra))
    return flag, [label]


def read_bytes(split, i):
    """The encoded image ``i`` of ``split``: a file's bytes, or a record's payload."""
    if split.kind == 'folder':
        try:
            with open(split.items[i], 'rb') as f:
                return f.read()
        except OSError as e:
            raise SourceError('cannot read %s (%s)' % (split.items[i], e.strerror or e))
    return _payload(_handle(split.path), split.items[i], split.path)


_HANDLES = {}


def _handle(path):
    """One open file per .rec and process (DataLoader workers each open their own)."""
    key = (path, os.getpid())
    if key not in _HANDLES:
        try:
            _HANDLES[key] = open(path, 'rb')
        except OSError as e:
            raise SourceError('cannot read %s (%s)' % (path, e.strerror or e))
    return _HANDLES[key]


def _payload(f, offset, rec):
    """A record's image bytes: the frame's parts joined, MXNet's header (and label array) dropped."""
    f.seek(offset)
    data = b''
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise SourceError('%s is truncated at byte %d' % (rec, offset))
        magic, word = struct.unpack('<II', head)
        if magic != RECORD_MAGIC:
            raise SourceError('%s: no record at byte %d' % (rec, offset))
        cflag, length = word >> 29, word & ((1 << 29) - 1)
        part = f.read(length)
        f.read((4 - length % 4) % 4)  # records are padded to 4 bytes
        data += part
        if cflag in (0, 3):  # a whole record, or the last part of one
            break
        data += struct.pack('<I', RECORD_MAGIC)  # the writer split the record at a magic number in it
    flag = struct.unpack(IR_FORMAT, data[:IR_SIZE])[0]
    return data[IR_SIZE + 4 * flag:]


def item_name(split, i):
    """How an error names image ``i``: its path, or the .rec and the record's byte offset."""
    if split.kind == 'folder':
        return split.items[i]
    return '%s (the record at byte %d)' % (split.path, split.items[i])


# --------------------------------------------------------------------------- decoding

def _shape_of(blob, name):
    """(channels, (height, width)) of an encoded image: grey stays grey, anything else is colour."""
    import io
    from PIL import Image
    try:
        with Image.open(io.BytesIO(blob)) as im:
            grey = im.mode in ('1', 'L', 'I;16', 'I', 'F')
            return (1 if grey else 3), (im.height, im.width)
    except Exception as e:
        raise SourceError('%s cannot be decoded as an image (%s)' % (name, e))


def decode(blob, channels, size, name):
    """An encoded image as uint8 (channels, height, width), decoded by MXNet and resized to ``size``;
    SourceError naming the image when it cannot be decoded."""
    import mxnet as mx
    try:
        img = mx.image.imdecode(blob, flag=1 if channels == 3 else 0, to_rgb=True)
        img.wait_to_read()  # MXNet decodes asynchronously: its error comes with the result
    except Exception as e:  # MXNet's message ends with what OpenCV said: "... Invalid image file."
        said = [line for line in str(e).strip().splitlines() if line.strip()][-1].split('Check failed:')[-1]
        raise SourceError('%s cannot be decoded as an image (%s)' % (name, said.strip()))
    if img.shape[0] != size[0] or img.shape[1] != size[1]:
        # area interpolation when shrinking, cubic when enlarging
        interp = 3 if img.shape[0] * img.shape[1] > size[0] * size[1] else 2
        img = mx.image.imresize(img, size[1], size[0], interp=interp)
    return np.ascontiguousarray(img.asnumpy().transpose(2, 0, 1))
