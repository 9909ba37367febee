"""MXNet RecordIO as im2rec and insightface write it: the .idx read, every record's header checked to
lie whole in the .rec, the image records told from insightface's header and identity records, a
record's image bytes read back."""
import collections
import os
import struct

import numpy as np

from faults.errors import DataError
from imagesets.listed import SPLITS, Listing, Split, digest, few

RECORD_MAGIC = 0xced7230a
IR_FORMAT, IR_SIZE = 'IfQQ', 24  # MXNet's IRHeader: flag, label, id, id2


def open_recordio(root):
    found, notes = {}, []
    for split in SPLITS:
        rec, idx = (os.path.join(root, split + ext) for ext in ('.rec', '.idx'))
        if not os.path.isfile(rec):
            raise DataError('%s is missing (RecordIO needs train.rec and test.rec, each with its .idx)' % rec)
        if not os.path.isfile(idx):
            raise DataError('%s has no index %s: make it with MXNet\'s im2rec, or pack the records with '
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
            raise DataError('%s: expected "num_classes,height,width"' % prop)
        if ids[-1] >= num_classes:
            raise DataError('a label %d in %s is outside the %d classes its property file gives'
                              % (ids[-1], root, num_classes))
    if len(ids) and (ids[-1] + 1 != len(ids)):
        notes.append('labels %s mapped to classes 0..%d' % (few(ids), len(ids) - 1))
    dense = {int(v): i for i, v in enumerate(ids)}
    splits = {}
    for split in SPLITS:
        keys, offsets, raw_labels = found[split]
        splits[split] = Split(split, 'recordio', offsets, np.array([dense[int(v)] for v in raw_labels], np.int64),
                              os.path.join(root, split + '.rec'), keys)
    sizes = [os.path.getsize(os.path.join(root, name)) for s in SPLITS for name in (s + '.rec', s + '.idx')]
    fingerprint = digest(' '.join(map(str, sizes)) + (open(prop, 'rb').read().decode('ascii', 'replace')
                                                       if os.path.isfile(prop) else ''))
    return Listing(['class %d' % v for v in ids], ids.tolist(), splits, collections.Counter(), notes, fingerprint)


def _read_index(idx):
    """[(key, offset)] of a .idx, sorted by key."""
    try:
        with open(idx, 'rb') as f:
            rows = [line.split(b'\t') for line in f.read().splitlines() if line.strip()]
        index = sorted((int(k), int(v)) for k, v in rows)
    except (ValueError, OSError) as e:
        raise DataError('%s is not an index of .rec offsets ("key<TAB>offset" lines): %s'
                          % (idx, getattr(e, 'strerror', None) or e))
    if not index:
        raise DataError('%s lists no records' % idx)
    if len({k for k, _ in index}) != len(index):
        raise DataError('%s lists a key twice' % idx)
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
            raise DataError('%s: record 0 holds no image and its header reads like insightface\'s (images are '
                              'records 1 to %g), but the .idx lists %d of them; the files do not match'
                              % (rec, first_free - 1, len(images)))
        keep = images
        notes.append('%s: insightface\'s layout (record 0 gives the range of the image records)'
                     % os.path.basename(rec))
    empty = [keys[i] for i in keep if headers[i][2] == 0]
    if empty:
        raise DataError('%s: record %d holds no image' % (rec, empty[0]))
    if any(headers[i][0] > 1 for i in keep):
        notes.append('%s: records carry several labels (im2rec --pack-label): the class is the first'
                     % os.path.basename(rec))
    labels = np.array([headers[i][1][0] for i in keep], np.float64)
    bad = (labels < 0) | (labels != np.round(labels))
    if bad.any():
        raise DataError('%s: record %d\'s label is %g, not a class id (0, 1, 2, ...)'
                          % (rec, keys[keep[int(np.flatnonzero(bad)[0])]], labels[bad][0]))
    return [keys[i] for i in keep], [index[i][1] for i in keep], labels.astype(np.int64)


def _header(f, key, offset, end, rec):
    """(flag, labels, payload length or -1 if unknown) of the record at ``offset``: the RecordIO
    frame, then MXNet's image header; DataError when the record does not lie whole in the file."""
    f.seek(offset)
    frame = f.read(8 + IR_SIZE)
    if len(frame) < 8:
        raise DataError('%s is cut short: record %d at byte %d lies past its end (%d bytes)'
                          % (rec, key, offset, end))
    magic, word = struct.unpack('<II', frame[:8])
    if magic != RECORD_MAGIC:
        raise DataError('%s: no record at byte %d, where its .idx puts record %d (the .idx does not match it)'
                          % (rec, offset, key))
    cflag, length = word >> 29, word & ((1 << 29) - 1)
    if offset + 8 + length > end:
        raise DataError('%s is cut short: record %d (at byte %d) needs %d bytes, the file ends %d bytes after '
                          'its start' % (rec, key, offset, 8 + length, end - offset))
    if cflag == 0 and length < IR_SIZE:
        raise DataError('%s: record %d is too short to hold an image header (%d bytes)' % (rec, key, length))
    flag, label, _, _ = struct.unpack(IR_FORMAT, frame[8:8 + IR_SIZE])
    labels = [label]
    if flag > 0:
        extra = f.read(4 * flag)
        if len(extra) < 4 * flag or (cflag == 0 and IR_SIZE + 4 * flag > length):
            raise DataError('%s: record %d announces %d labels it does not hold' % (rec, key, flag))
        labels = list(struct.unpack('<%df' % flag, extra))
    return flag, labels, (length - IR_SIZE - 4 * flag) if cflag == 0 else -1


def payload(f, offset, name):
    """A record's image bytes: the frame's parts joined, MXNet's header (and label array) dropped."""
    f.seek(offset)
    data = b''
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise DataError('%s is cut short' % name)
        magic, word = struct.unpack('<II', head)
        if magic != RECORD_MAGIC:
            raise DataError('%s: no record there' % name)
        cflag, length = word >> 29, word & ((1 << 29) - 1)
        part = f.read(length)
        if len(part) < length:
            raise DataError('%s is cut short' % name)
        f.read((4 - length % 4) % 4)  # records are padded to 4 bytes
        data += part
        if cflag in (0, 3):  # a whole record, or the last part of one
            break
        data += struct.pack('<I', RECORD_MAGIC)  # the writer split the record at a magic number in it
    flag = struct.unpack(IR_FORMAT, data[:IR_SIZE])[0] if len(data) >= IR_SIZE else -1
    if flag < 0 or len(data) <= IR_SIZE + 4 * flag:
        raise DataError('%s holds no image' % name)
    return data[IR_SIZE + 4 * flag:]


