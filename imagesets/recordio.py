"""MXNet RecordIO as im2rec and insightface write it: ``train.rec`` + ``train.idx``, and ``test.rec`` +
``test.idx`` where the set has a test split (insightface's training sets have none).

Every record's frame and image header are read when the files are opened (one read of a few bytes at
each offset the .idx gives, in file order; nothing is decoded), so that a record cut short or one with
no image is named with its file and key before anything trains. Each record's header holds its label:
a number, or an array (im2rec --pack-label) whose first value is the class. insightface's layout: a
first record with no image whose header gives [first identity record, end of the identity records];
the images are records 1 up to that, then one record per identity with the range of its images (not
images: left out); a ``property`` file ``num_classes,height,width``. Labels need not be dense (0, 3,
6, ...): the classes are the labels found, in order. What is held: the records' offsets, keys and
labels as arrays (20 bytes a record: int64 offsets and keys, int32 labels)."""
import os
import struct
import warnings

import numpy as np

from faults.errors import DataError
from imagesets.listed import SPLITS, Listing, Skipped, Split, digest, few

RECORD_MAGIC = 0xced7230a
IR_FORMAT, IR_SIZE = 'IfQQ', 24  # MXNet's IRHeader: flag, label, id, id2
HEAD = 8 + IR_SIZE + 4 * 8       # bytes read at each record: the frame, the header, up to 8 labels


def open_recordio(root):
    """The Listing of the RecordIO in ``root``; its test split None where there is no test.rec."""
    found, notes = {}, []
    for split in SPLITS:
        rec, idx = (os.path.join(root, split + ext) for ext in ('.rec', '.idx'))
        if not os.path.isfile(rec):
            if split == 'test':
                continue
            raise DataError('%s is missing: RecordIO is read as train.rec (and test.rec where the set has a test '
                            'split), each with its .idx' % rec)
        if not os.path.isfile(idx):
            raise DataError('%s has no index %s: make it with MXNet\'s im2rec, or pack the records with '
                            'mx.recordio.MXIndexedRecordIO' % (rec, idx))
        found[split] = _records(rec, idx, notes)
    ids = np.unique(np.concatenate([labels for _, _, labels, _ in found.values()]))
    prop = os.path.join(root, 'property')
    text = _property(prop, ids, root, found['train'][3], notes)
    if len(ids) and (ids[-1] + 1 != len(ids)):
        notes.append('labels %s mapped to classes 0..%d' % (few(ids), len(ids) - 1))
    splits = dict.fromkeys(SPLITS)
    for split, (keys, offsets, labels, _) in found.items():
        splits[split] = Split(split, 'recordio', offsets, np.searchsorted(ids, labels).astype(np.int32),
                              os.path.join(root, split + '.rec'), keys)
    sizes = [os.path.getsize(os.path.join(root, s + ext)) for s in found for ext in ('.rec', '.idx')]
    return Listing(['class %d' % v for v in ids], ids.tolist(), splits, Skipped(), notes,
                   digest(' '.join(map(str, sizes)) + text))


def _property(path, ids, root, identities, notes):
    """The text of insightface's property file ('' without one), its class count checked against the labels
    (a label past it is refused) and against the identity records (``identities``, None where there are
    none): where they differ the classes are the labels found, said in ``notes``."""
    if not os.path.isfile(path):
        return ''
    with open(path, 'rb') as f:
        text = f.read().decode('ascii', 'replace')
    try:
        num_classes = int(text.strip().split(',')[0])
    except ValueError:
        raise DataError('%s: expected "num_classes,height,width"' % path)
    if len(ids) and ids[-1] >= num_classes:
        raise DataError('a label %d in %s is outside the %d classes its property file gives'
                        % (ids[-1], root, num_classes))
    if identities is not None and identities != num_classes:
        notes.append('%s gives %d classes, train.rec has %d identity records and its images %d labels: the classes '
                     'are the labels found' % (path, num_classes, identities, len(ids)))
    return text


def read_index(idx):
    """(keys, offsets) of a .idx ("key<TAB>offset" lines), sorted by key, as int64 arrays: parsed by numpy in
    one pass (a million lines in a tenth of a second), each line checked to hold two whole numbers."""
    try:
        with open(idx, 'rb') as f:
            text = f.read()
        with warnings.catch_warnings():
            warnings.simplefilter('error')  # numpy stops at what is not a number, with a warning only
            values = np.fromstring(text, dtype=np.int64, sep=' ')
        lines = [line for line in text.splitlines() if line.strip()] if b'\n\n' in text or b'\r' in text else \
            text.strip().splitlines()
        if len(values) != 2 * len(lines):
            raise ValueError
    except (ValueError, DeprecationWarning):
        raise DataError('%s is not an index of .rec offsets: a line is not "key<TAB>offset", two whole numbers' % idx)
    except OSError as e:
        raise DataError('cannot read %s (%s)' % (idx, e.strerror or e))
    if not len(values):
        raise DataError('%s lists no records' % idx)
    keys, offsets = values[0::2], values[1::2]
    order = np.argsort(keys, kind='stable')
    keys, offsets = keys[order], offsets[order]
    if (np.diff(keys) == 0).any():
        raise DataError('%s lists a key twice' % idx)
    return keys, offsets


def _records(rec, idx, notes):
    """(keys, offsets, labels) of the image records of ``rec`` (int64 arrays), every one checked to lie whole
    in the file."""
    keys, offsets = read_index(idx)
    flags, first, payload_len, second = _headers(rec, keys, offsets)
    keep, identities = np.arange(len(keys)), None
    if keys[0] == 0 and flags[0] >= 2 and payload_len[0] == 0:  # insightface: record 0 gives the images' range
        first_free, end = first[0], second[0]
        keep = np.flatnonzero((keys >= 1) & (keys < first_free))
        if first_free != int(first_free) or first_free < 2 or len(keep) != int(first_free) - 1:
            raise DataError('%s: record 0 holds no image and its header reads like insightface\'s (images are '
                            'records 1 to %g), but the .idx lists %d of them; the files do not match'
                            % (rec, first_free - 1, len(keep)))
        listed = np.count_nonzero((keys >= first_free) & (keys < end))
        if end != int(end) or end < first_free or listed != int(end - first_free):
            raise DataError('%s: record 0 gives identity records %g to %g, and the .idx lists %d of them (its last '
                            'key: %d): the files do not match' % (rec, first_free, end - 1, listed, keys[-1]))
        identities = int(end - first_free)
        notes.append('%s: insightface\'s layout (record 0 gives the range of the image records; the %d after them '
                     'name the identities)' % (os.path.basename(rec), len(keys) - 1 - len(keep)))
    empty = keep[payload_len[keep] == 0]
    if len(empty):
        raise DataError('%s: record %d holds no image' % (rec, keys[empty[0]]))
    if (flags[keep] > 1).any():
        notes.append('%s: records carry several labels (im2rec --pack-label): the class is the first'
                     % os.path.basename(rec))
    labels = first[keep]
    bad = (labels < 0) | (labels != np.round(labels))
    if bad.any():
        raise DataError('%s: record %d\'s label is %g, not a class id (0, 1, 2, ...)'
                        % (rec, keys[keep[np.flatnonzero(bad)[0]]], labels[bad][0]))
    return keys[keep], offsets[keep], labels.astype(np.int64), identities


def _headers(rec, keys, offsets):
    """(flags, first labels, payload lengths or -1 where unknown, second labels or NaN) of the records at
    ``offsets``, read in file order; DataError when one does not lie whole in the file."""
    end = os.path.getsize(rec)
    flags, first = np.zeros(len(keys), np.int64), np.zeros(len(keys), np.float64)
    payload_len, second = np.zeros(len(keys), np.int64), np.full(len(keys), np.nan)
    fd = os.open(rec, os.O_RDONLY)
    try:
        for i in np.argsort(offsets, kind='stable'):
            flags[i], first[i], payload_len[i], second[i] = _header(fd, int(keys[i]), int(offsets[i]), end, rec)
    finally:
        os.close(fd)
    return flags, first, payload_len, second


def _header(fd, key, offset, end, rec):
    """(flag, first label, payload length or -1 if unknown, second label or NaN) of the record at ``offset``:
    the RecordIO frame, then MXNet's image header."""
    frame = os.pread(fd, HEAD, offset)
    if len(frame) < 8:
        raise DataError('%s is cut short: record %d at byte %d lies past its end (%d bytes)' % (rec, key, offset, end))
    magic, word = struct.unpack_from('<II', frame)
    if magic != RECORD_MAGIC:
        raise DataError('%s: no record at byte %d, where its .idx puts record %d (the .idx does not match it)'
                        % (rec, offset, key))
    cflag, length = word >> 29, word & ((1 << 29) - 1)
    if offset + 8 + length > end:
        raise DataError('%s is cut short: record %d (at byte %d) needs %d bytes, the file ends %d bytes after '
                        'its start' % (rec, key, offset, 8 + length, end - offset))
    if cflag == 0 and length < IR_SIZE:
        raise DataError('%s: record %d is too short to hold an image header (%d bytes)' % (rec, key, length))
    flag, label, _, _ = struct.unpack_from(IR_FORMAT, frame, 8)
    if flag > 0:
        if 8 + IR_SIZE + 4 * flag > len(frame):
            frame = os.pread(fd, 8 + IR_SIZE + 4 * flag, offset)
        if len(frame) < 8 + IR_SIZE + 4 * flag or (cflag == 0 and IR_SIZE + 4 * flag > length):
            raise DataError('%s: record %d announces %d labels it does not hold' % (rec, key, flag))
        label = struct.unpack_from('<f', frame, 8 + IR_SIZE)[0]
        second = struct.unpack_from('<f', frame, 8 + IR_SIZE + 4)[0] if flag >= 2 else np.nan
        return flag, label, (length - IR_SIZE - 4 * flag) if cflag == 0 else -1, second
    return flag, label, (length - IR_SIZE - 4 * flag) if cflag == 0 else -1, np.nan


def payload(f, offset, name):
    """A record's image bytes: the frame's parts joined, MXNet's header (and label array) dropped. Read with
    pread from ``f``'s descriptor: no position to share or move."""
    fd, data = f.fileno(), b''
    while True:
        head = os.pread(fd, 8, offset)
        if len(head) < 8:
            raise DataError('%s is cut short' % name)
        magic, word = struct.unpack('<II', head)
        if magic != RECORD_MAGIC:
            raise DataError('%s: no record there' % name)
        cflag, length = word >> 29, word & ((1 << 29) - 1)
        part = os.pread(fd, length, offset + 8)
        if len(part) < length:
            raise DataError('%s is cut short' % name)
        offset += 8 + length + (4 - length % 4) % 4  # records are padded to 4 bytes
        data += part
        if cflag in (0, 3):  # a whole record, or the last part of one
            break
        data += struct.pack('<I', RECORD_MAGIC)  # the writer split the record at a magic number in it
    flag = struct.unpack(IR_FORMAT, data[:IR_SIZE])[0] if len(data) >= IR_SIZE else -1
    if flag < 0 or len(data) <= IR_SIZE + 4 * flag:
        raise DataError('%s holds no image' % name)
    return data[IR_SIZE + 4 * flag:]
