"""Your own images on disk: a folder of class folders, or MXNet RecordIO, listed, checked and decoded.

Recognised from what ``--data_dir DIR`` holds:

* an image folder: ``DIR/train/<class>/*`` and ``DIR/test/<class>/*``, in any format MXNet or Pillow
  decodes (IMAGE_EXTENSIONS); class ids are the positions of the class names in the sorted names of
  both splits, so a test class that has no training folder is held out (an open-set class, as
  ``--holdout`` makes them). What is not an image of a class is skipped and counted: hidden files
  (``.DS_Store``, the ``._*`` files a Mac writes beside each file), ``__MACOSX`` folders, other files,
  broken links;
* RecordIO, as MXNet's ``im2rec`` writes it: ``DIR/train.rec`` + ``train.idx`` and ``DIR/test.rec`` +
  ``test.idx``, each record's header holding its label: a number, or an array (``im2rec
  --pack-label``) whose first value is the class. insightface's layout is read too: a first record with
  no image whose header gives the range of the image records (checked against the ``.idx``), and a
  ``property`` file ``num_classes,height,width``. Labels need not be dense (0, 3, 6, ...): the classes
  are the labels found, in order.

Every record is checked when the files are opened: a record cut short, or one with no image, is
named with its file and key before anything trains. Images are decoded by MXNet's own decoder
(``mx.image.imdecode``, its built-in OpenCV), by Pillow for what OpenCV does not read (GIF), and
brought to one size: the most common size of the training images, grey or colour as most of them
are. Only the list of images (paths or record offsets) and their labels are held in memory.
"""
import collections
import hashlib
import io
import os
import struct
import unicodedata

import numpy as np

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.jpe', '.jfif', '.bmp', '.dib', '.gif', '.tif', '.tiff', '.webp',
                    '.pbm', '.pgm', '.ppm', '.pnm', '.tga', '.jp2', '.j2k', '.pcx', '.sgi', '.rgb', '.ras', '.qoi',
                    '.apng')
SPLITS = ('train', 'test')
RECORD_MAGIC = 0xced7230a
IR_FORMAT, IR_SIZE = 'IfQQ', 24  # MXNet's IRHeader: flag, label, id, id2
SIZE_SAMPLE = 500  # training images whose sizes and colours decide the run's


class SourceError(ValueError):
    """Images on disk that cannot be used: the message names the file or folder."""


Split = collections.namedtuple('Split', 'name kind items labels path keys')
# items: image paths (folder) or record offsets in the .rec (recordio); labels: int64 dense class ids;
# keys: the records' keys in the .idx (recordio), for naming one


class Source(object):
    """A dataset of images on disk: its kind ('folder' or 'recordio'), its classes (names, and the
    labels they carry in the files), the two splits, the channels and (height, width) most of its
    training images have, what was skipped while listing, notes on how it was read, and a fingerprint."""

    def __init__(self, kind, root, classes, ids, splits, skipped=None, notes=(), fingerprint=''):
        self.kind, self.root, self.classes, self.ids, self.splits = kind, root, list(classes), list(ids), splits
        self.skipped, self.notes, self.fingerprint = skipped or collections.Counter(), list(notes), fingerprint
        self.channels, self.size = _common_shape(splits['train'])

    def describe(self):
        return '%s %s (%d classes, %s images of %dx%d)' % (
            'image folder' if self.kind == 'folder' else 'RecordIO', self.root, len(self.classes),
            'grey' if self.channels == 1 else 'colour', self.size[0], self.size[1])

    def skipped_line(self):
        """One line on what the listing left out, or None."""
        if not self.skipped:
            return None
        return 'skipped %d: %s' % (sum(self.skipped.values()), ', '.join(
            '%d %s' % (n, what) for what, n in sorted(self.skipped.items(), key=lambda kv: -kv[1])))


def kind_of(root):
    """'folder', 'recordio' or None (an IDX folder, or nothing this module reads)."""
    if any(os.path.isfile(os.path.join(root, s + '.rec')) for s in SPLITS):
        return 'recordio'  # one of the two may be missing: _recordio says which
    idx = any(f.startswith('train-images-idx3-ubyte') for f in os.listdir(root)) if os.path.isdir(root) else False
    if not idx and any(os.path.isdir(os.path.join(root, s)) for s in SPLITS):
        return 'folder'  # one of the two may be missing: _folder says which
    return None


def layout_hint(root):
    """For a folder this module does not read but which holds images (class folders without train/ and
    test/ above them, or .rec files with other names): the line that says how to lay them out; else None."""
    parent = os.path.dirname(os.path.abspath(root))
    if os.path.basename(os.path.abspath(root)) in SPLITS and kind_of(parent) == 'folder':
        return '%s is the %s/ folder of %s: name that one' % (root, os.path.basename(os.path.abspath(root)), parent)
    try:
        names = sorted(n for n in os.listdir(root) if not n.startswith('.') and n != '__MACOSX')
    except OSError:
        return None
    recs = [n for n in names if n.endswith('.rec')]
    if recs:
        return ('%s holds %s but not train.rec and test.rec: name the training and test records so, each with '
                'its .idx (docs/own-data.md)' % (root, _few(recs, 3)))
    classes = [n for n in names if os.path.isdir(os.path.join(root, n))]
    for name in classes[:5]:
        try:
            files = os.listdir(os.path.join(root, name))
        except OSError:
            continue
        if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
            return ('%s holds class folders (%s) but no train/ and test/: move them into %s/train/, and a test '
                    'set of the same classes into %s/test/ (docs/own-data.md)' % (root, _few(classes, 3), root, root))
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

def _entries(folder, skipped):
    """(name, is a folder, size) of what ``folder`` holds, less what is skipped (counted in ``skipped``)."""
    out = []
    try:
        with os.scandir(folder) as found:
            for e in sorted(found, key=lambda e: e.name):
                if e.name.startswith('.'):
                    skipped['hidden files (.*)'] += 1
                elif e.name == '__MACOSX':
                    skipped['__MACOSX folders'] += 1
                elif e.is_dir():
                    out.append((e.name, True, 0))
                elif e.is_file():
                    out.append((e.name, False, e.stat().st_size))
                else:
                    skipped['broken links' if e.is_symlink() else 'special files'] += 1
    except OSError as e:
        raise SourceError('cannot read the folder %s (%s)' % (folder, e.strerror or e))
    return out


def _folder(root):
    missing = [s for s in SPLITS if not os.path.isdir(os.path.join(root, s))]
    if missing:
        raise SourceError('%s has no %s/ folder beside its %s/: images are read as train/<class>/* and '
                          'test/<class>/*' % (root, missing[0], [s for s in SPLITS if s not in missing][0]))
    skipped, names, listing = collections.Counter(), {}, []
    for split in SPLITS:
        top = os.path.join(root, split)
        entries = _entries(top, skipped)
        names[split] = [n for n, is_dir, _ in entries if is_dir]
        skipped['files outside class folders'] += sum(1 for _, is_dir, _ in entries if not is_dir)
        if not names[split]:
            raise SourceError('%s holds no class folders' % top)
    # a class is its name however its letters are composed (a Mac writes 'é' as e + accent, most others as one)
    classes = sorted({_nfc(n) for split in SPLITS for n in names[split]})
    ids = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split in SPLITS:
        paths, labels = [], []
        for c in names[split]:
            folder = os.path.join(root, split, c)
            files = []
            for name, is_dir, size in _entries(folder, skipped):
                if is_dir:
                    skipped['folders inside class folders'] += 1
                elif not name.lower().endswith(IMAGE_EXTENSIONS):
                    skipped['not images (%s)' % (os.path.splitext(name)[1].lower() or 'no extension')] += 1
                else:
                    files.append(name)
                    listing.append('%s/%s/%s\t%d' % (split, c, name, size))
            if not files:
                raise SourceError('class folder %s holds no images (%s, ...)'
                                  % (folder, ', '.join(IMAGE_EXTENSIONS[:4])))
            paths += [os.path.join(folder, f) for f in files]
            labels += [ids[_nfc(c)]] * len(files)
        splits[split] = Split(split, 'folder', paths, np.array(labels, np.int64), os.path.join(root, split), None)
    skipped = collections.Counter({k: v for k, v in skipped.items() if v})
    return Source('folder', root, classes, range(len(classes)), splits, skipped,
                  fingerprint=_digest('\n'.join(listing)))


# --------------------------------------------------------------------------- RecordIO

def _recordio(root):
    found, notes = {}, []
    for split in SPLITS:
        rec, idx = (os.path.join(root, split + ext) for ext in ('.rec', '.idx'))
        if not os.path.isfile(rec):
            raise SourceError('%s is missing (RecordIO needs train.rec and test.rec, each with its .idx)' % rec)
        if not os.path.isfile(idx):
            raise SourceError('%s has no index %s: make it with MXNet\'s im2rec, or pack the records with '
                              'mx.recordio.MXIndexedRecordIO' % (rec, idx))
        found[split] = _records(rec, idx, notes)
    labels = np.concatenate([found[s][2] for s in SPLITS])
    ids = np.unique(labels).astype(np.int64)
    prop = os.path.join(root, 'property')
    if os.path.isfile(prop):
        try:
            with open(prop, 'rb') as f:
                num_classes = int(f.read().decode('ascii', 'replace').strip().split(',')[0])
        except ValueError:
            raise SourceError('%s: expected "num_classes,height,width"' % prop)
        if ids[-1] >= num_classes:
            raise SourceError('a label %d in %s is outside the %d classes its property file gives'
                              % (ids[-1], root, num_classes))
    if len(ids) and (ids[-1] + 1 != len(ids)):
        notes.append('labels %s mapped to classes 0..%d' % (_few(ids), len(ids) - 1))
    dense = {int(v): i for i, v in enumerate(ids)}
    splits = {}
    for split in SPLITS:
        keys, offsets, raw_labels = found[split]
        splits[split] = Split(split, 'recordio', offsets, np.array([dense[int(v)] for v in raw_labels], np.int64),
                              os.path.join(root, split + '.rec'), keys)
    sizes = [os.path.getsize(os.path.join(root, name)) for s in SPLITS for name in (s + '.rec', s + '.idx')]
    fingerprint = _digest(' '.join(map(str, sizes)) + (open(prop, 'rb').read().decode('ascii', 'replace')
                                                       if os.path.isfile(prop) else ''))
    return Source('recordio', root, ['class %d' % v for v in ids], ids.tolist(), splits, notes=notes,
                  fingerprint=fingerprint)


def _read_index(idx):
    """[(key, offset)] of a .idx, sorted by key."""
    try:
        with open(idx, 'rb') as f:
            rows = [line.split(b'\t') for line in f.read().splitlines() if line.strip()]
        index = sorted((int(k), int(v)) for k, v in rows)
    except (ValueError, OSError) as e:
        raise SourceError('%s is not an index of .rec offsets ("key<TAB>offset" lines): %s'
                          % (idx, getattr(e, 'strerror', None) or e))
    if not index:
        raise SourceError('%s lists no records' % idx)
    if len({k for k, _ in index}) != len(index):
        raise SourceError('%s lists a key twice' % idx)
    return index


def _records(rec, idx, notes):
    """(keys, offsets, labels) of the image records of ``rec``, every one checked to lie whole in the file."""
    index = _read_index(idx)
    end = os.path.getsize(rec)
    with open(rec, 'rb') as f:
        headers = [_header(f, key, offset, end, rec) for key, offset in index]
    keys = [k for k, _ in index]
    keep = list(range(len(keys)))
    flag0, labels0, payload0 = headers[0]
    if keys[0] == 0 and flag0 >= 2 and payload0 == 0:  # insightface: record 0 gives the image records' range
        first_free = labels0[0]
        images = [i for i, k in enumerate(keys) if 1 <= k < first_free]
        if first_free != int(first_free) or first_free < 2 or len(images) != int(first_free) - 1:
            raise SourceError('%s: record 0 holds no image and its header reads like insightface\'s (images are '
                              'records 1 to %g), but the .idx lists %d of them; the files do not match'
                              % (rec, first_free - 1, len(images)))
        keep = images
        notes.append('%s: insightface\'s layout (record 0 gives the range of the image records)'
                     % os.path.basename(rec))
    empty = [keys[i] for i in keep if headers[i][2] == 0]
    if empty:
        raise SourceError('%s: record %d holds no image' % (rec, empty[0]))
    if any(headers[i][0] > 1 for i in keep):
        notes.append('%s: records carry several labels (im2rec --pack-label): the class is the first'
                     % os.path.basename(rec))
    labels = np.array([headers[i][1][0] for i in keep], np.float64)
    bad = (labels < 0) | (labels != np.round(labels))
    if bad.any():
        raise SourceError('%s: record %d\'s label is %g, not a class id (0, 1, 2, ...)'
                          % (rec, keys[keep[int(np.flatnonzero(bad)[0])]], labels[bad][0]))
    return [keys[i] for i in keep], [index[i][1] for i in keep], labels.astype(np.int64)


def _header(f, key, offset, end, rec):
    """(flag, labels, payload length or -1 if unknown) of the record at ``offset``: the RecordIO
    frame, then MXNet's image header; SourceError when the record does not lie whole in the file."""
    f.seek(offset)
    frame = f.read(8 + IR_SIZE)
    if len(frame) < 8:
        raise SourceError('%s is cut short: record %d at byte %d lies past its end (%d bytes)'
                          % (rec, key, offset, end))
    magic, word = struct.unpack('<II', frame[:8])
    if magic != RECORD_MAGIC:
        raise SourceError('%s: no record at byte %d, where its .idx puts record %d (the .idx does not match it)'
                          % (rec, offset, key))
    cflag, length = word >> 29, word & ((1 << 29) - 1)
    if offset + 8 + length > end:
        raise SourceError('%s is cut short: record %d (at byte %d) needs %d bytes, the file ends %d bytes after '
                          'its start' % (rec, key, offset, 8 + length, end - offset))
    if cflag == 0 and length < IR_SIZE:
        raise SourceError('%s: record %d is too short to hold an image header (%d bytes)' % (rec, key, length))
    flag, label, _, _ = struct.unpack(IR_FORMAT, frame[8:8 + IR_SIZE])
    labels = [label]
    if flag > 0:
        extra = f.read(4 * flag)
        if len(extra) < 4 * flag or (cflag == 0 and IR_SIZE + 4 * flag > length):
            raise SourceError('%s: record %d announces %d labels it does not hold' % (rec, key, flag))
        labels = list(struct.unpack('<%df' % flag, extra))
    return flag, labels, (length - IR_SIZE - 4 * flag) if cflag == 0 else -1


def read_bytes(split, i):
    """The encoded image ``i`` of ``split``: a file's bytes, or a record's payload (the file opened
    and closed for each: nothing stays open, in this process or a decoding worker)."""
    try:
        with open(split.items[i] if split.kind == 'folder' else split.path, 'rb') as f:
            if split.kind == 'folder':
                return f.read()
            return _payload(f, split.items[i], item_name(split, i))
    except OSError as e:
        raise SourceError('cannot read %s (%s)' % (item_name(split, i), e.strerror or e))


def _payload(f, offset, name):
    """A record's image bytes: the frame's parts joined, MXNet's header (and label array) dropped."""
    f.seek(offset)
    data = b''
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise SourceError('%s is cut short' % name)
        magic, word = struct.unpack('<II', head)
        if magic != RECORD_MAGIC:
            raise SourceError('%s: no record there' % name)
        cflag, length = word >> 29, word & ((1 << 29) - 1)
        part = f.read(length)
        if len(part) < length:
            raise SourceError('%s is cut short' % name)
        f.read((4 - length % 4) % 4)  # records are padded to 4 bytes
        data += part
        if cflag in (0, 3):  # a whole record, or the last part of one
            break
        data += struct.pack('<I', RECORD_MAGIC)  # the writer split the record at a magic number in it
    flag = struct.unpack(IR_FORMAT, data[:IR_SIZE])[0] if len(data) >= IR_SIZE else -1
    if flag < 0 or len(data) <= IR_SIZE + 4 * flag:
        raise SourceError('%s holds no image' % name)
    return data[IR_SIZE + 4 * flag:]


def item_name(split, i):
    """How an error names image ``i``: its path, or the .rec and the record's key."""
    if split.kind == 'folder':
        return split.items[i]
    return '%s record %d' % (split.path, split.keys[i])


# --------------------------------------------------------------------------- decoding

def _common_shape(split, sample=SIZE_SAMPLE, seed=0):
    """(channels, (height, width)) of most of ``split``'s images, from a seeded sample of them: one
    large image among small ones is resized to theirs rather than sizing the network."""
    n = len(split.labels)
    picked = np.arange(n) if n <= sample else np.sort(np.random.RandomState(seed).choice(n, sample, replace=False))
    shapes = [shape_of(read_bytes(split, int(i)), item_name(split, int(i))) for i in picked]
    sizes = collections.Counter(size for _, size in shapes)
    colour = sum(1 for channels, _ in shapes if channels == 3)
    return (3 if colour * 2 > len(shapes) else 1), sizes.most_common(1)[0][0]


def shape_of(blob, name):
    """(channels, (height, width)) of an encoded image: grey stays grey, anything else is colour."""
    from PIL import Image
    try:
        with Image.open(io.BytesIO(blob)) as im:
            grey = im.mode in ('1', 'L', 'LA', 'I;16', 'I;16B', 'I', 'F') or (im.mode == 'P' and _grey_palette(im))
            return (1 if grey else 3), (im.height, im.width)
    except Exception:  # what Pillow does not read, MXNet's OpenCV may: as colour (its flag has no "as it is")
        img = _mx_decode(blob, 1, name).asnumpy()
        return (1 if (img == img[:, :, :1]).all() else 3), img.shape[:2]


def _grey_palette(im):
    palette = np.array(im.getpalette() or [0, 0, 1], np.int64)[:768].reshape(-1, 3)
    return bool((palette == palette[:, :1]).all())


def _mx_decode(blob, flag, name):
    import mxnet as mx
    try:
        img = mx.image.imdecode(blob, flag=flag, to_rgb=True)
        img.wait_to_read()  # MXNet decodes asynchronously: its error comes with the result
        return img
    except Exception as e:
        raise SourceError('%s cannot be decoded as an image (%s)' % (name, decode_reason(str(e))))


def decode_reason(said):
    """What MXNet's decoding error says, in a user's words. Its last line is "MXNetError: Check failed:
    !res.empty(): Decoding failed. Invalid image file."; a header whose width and height are garbage makes
    the decoder ask for memory it cannot have ("Failed to allocate CPU Memory"), which is no memory problem."""
    last = ([line for line in said.strip().splitlines() if line.strip()] or ['?'])[-1]
    if 'allocate' in last:
        return 'a broken header: its size is not one an image has'
    return last.split('Check failed:')[-1].split('): ', 1)[-1].replace('MXNetError: ', '').strip()


def _pil_decode(blob, channels):
    import mxnet as mx
    from PIL import Image
    with Image.open(io.BytesIO(blob)) as im:
        pixels = np.asarray(im.convert('RGB' if channels == 3 else 'L'), np.uint8)
    return mx.nd.array(pixels.reshape(pixels.shape[:2] + (channels,)), dtype='uint8')


def decode(blob, channels, size, name):
    """An encoded image as uint8 (channels, height, width): decoded by MXNet (Pillow for what MXNet's
    OpenCV does not read) and resized to ``size``; SourceError naming the image when neither can."""
    import mxnet as mx
    try:
        img = _mx_decode(blob, 1 if channels == 3 else 0, name)
    except SourceError as mx_error:
        try:
            img = _pil_decode(blob, channels)
        except Exception:
            raise mx_error
    if img.shape[0] != size[0] or img.shape[1] != size[1]:
        # area interpolation when shrinking, cubic when enlarging
        interp = 3 if img.shape[0] * img.shape[1] > size[0] * size[1] else 2
        img = mx.image.imresize(img, size[1], size[0], interp=interp)
    return np.ascontiguousarray(img.asnumpy().reshape(size[0], size[1], channels).transpose(2, 0, 1))


def _nfc(name):
    return unicodedata.normalize('NFC', name)


def _digest(text):
    return hashlib.sha256(text.encode('utf-8', 'surrogateescape')).hexdigest()[:16]


def _few(values, most=6):
    shown = ','.join(str(v) for v in values[:most])
    return shown + (',...' if len(values) > most else '')
