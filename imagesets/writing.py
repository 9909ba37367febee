"""The field's layouts written: an image folder packed as insightface packs its training sets, and a pair
list written as insightface's verification ``.bin``, so that what this project reads from insightface can
be made from your own images (``python -m cli.pack``).

insightface's training folder: ``train.rec`` + ``train.idx`` whose record 0 holds no image and the label
[first identity record, end of the identity records]; the images are records 1 to N, each labelled with
its class; then one record per class, labelled with the range [first, end) of its image records; and
``property``: ``num_classes,height,width``. Images go in as their files' bytes (no re-encoding: a JPEG
stays the JPEG it was), grouped by class. A folder with a test split gets ``test.rec`` + ``test.idx``
too (im2rec's layout: no header), which insightface's sets do not have.

The ``.bin``: a pickle (protocol 4, read by insightface's ``pickle.load(f, encoding='bytes')``) of
(list of encoded images, list of same/different flags), images 2k and 2k+1 making pair k."""
import os
import pickle
import struct

import numpy as np

from faults.atomic import atomic_write
from faults.errors import DataError
from imagesets import decode
from imagesets.recordio import IR_FORMAT, RECORD_MAGIC


def _record(header_flag, labels, key, blob):
    """One record as MXNet's RecordIO writes it (mx.recordio.pack, then MXRecordIO.write): the frame
    (magic, length), MXNet's image header with its label(s), the image bytes, padded to 4 bytes.
    Written here, not through MXNet, so that packing needs no MXNet engine and streams to disk."""
    labels = np.asarray(labels, np.float32).ravel()
    if header_flag == 0:
        head = struct.pack(IR_FORMAT, 0, float(labels[0]), key, 0)
    else:
        head = struct.pack(IR_FORMAT, len(labels), 0.0, key, 0) + labels.tobytes()
    data = head + blob
    if len(data) >= 1 << 29:
        raise DataError('record %d is %d bytes: RecordIO records hold under 512 MB' % (key, len(data)))
    frame = struct.pack('<II', RECORD_MAGIC, len(data))
    return frame + data + b'\0' * ((4 - len(data) % 4) % 4)


def _write_records(rec_path, records):
    """Write ``records`` (an iterable of (key, bytes of the record), made as they are written: a set of
    millions of images is never held) to ``rec_path`` and its .idx, each whole or not at all
    (faults.atomic: a stop leaves the old files, or none). The .idx is written after the .rec."""
    index = []

    def framed():
        offset = 0
        for key, record in records:
            index.append('%d\t%d\n' % (key, offset))
            offset += len(record)
            yield record
    atomic_write(rec_path, framed())
    atomic_write(rec_path[:-len('.rec')] + '.idx', ''.join(index).encode('ascii'))


def read_image(split, i):
    """The bytes of image ``i`` of ``split``, checked to decode (a broken file is named now, not when
    insightface's loader meets it)."""
    blob = decode.read_bytes(split, i)
    decode.shape_of(blob, decode.item_name(split, i))
    return blob


def pack(source, out):
    """Pack ``source`` (imagesets.sources.Source of an image folder) into ``out`` as insightface's training
    folder; its test split, where it has one, as test.rec. Returns [(what was written, how many images)]."""
    train = source.splits['train']
    order = np.argsort(train.labels, kind='stable')  # grouped by class, each class's files in their order
    labels = train.labels[order]
    n, classes = len(order), len(source.classes)
    first_identity = n + 1
    starts = np.searchsorted(labels, np.arange(classes + 1))  # each class's images: keys 1 + [start, end)

    def records():
        yield 0, _record(2, [first_identity, first_identity + classes], 0, b'')
        for key, i in enumerate(order, start=1):
            yield key, _record(0, [labels[key - 1]], key, read_image(train, int(i)))
        for c in range(classes):
            yield first_identity + c, _record(2, [1 + starts[c], 1 + starts[c + 1]], first_identity + c, b'')
    os.makedirs(out, exist_ok=True)
    written = [(os.path.join(out, 'train.rec'), n)]
    _write_records(written[0][0], records())
    test = source.splits['test']
    if test is not None:
        written.append((os.path.join(out, 'test.rec'), len(test.labels)))
        _write_records(written[1][0], ((k, _record(0, [test.labels[k]], k, read_image(test, k)))
                                       for k in range(len(test.labels))))
    height, width = source.size
    atomic_write(os.path.join(out, 'property'), ('%d,%d,%d\n' % (classes, height, width)).encode('ascii'))
    return written


def write_bin(pair_list, path):
    """``pair_list`` (imagesets.pairs.PairList) as insightface's .bin: each pair's two images' bytes, in
    the list's order, and its flag. Returns the number of pairs."""
    blobs = []
    for a, b in pair_list.pairs:
        for where, blob, image_path in (pair_list.images[a], pair_list.images[b]):
            if blob is None:
                try:
                    with open(image_path, 'rb') as f:
                        blob = f.read()
                except OSError as e:
                    raise DataError('cannot read %s (%s)' % (image_path, e.strerror or e))
            decode.shape_of(blob, where)
            blobs.append(blob)
    atomic_write(path, pickle.dumps((blobs, [bool(s) for s in pair_list.same]), protocol=4))
    return len(pair_list.same)
