"""Center loss at its field's scale, measured on synthetic sets: tiny images, many records and classes,
laid out as insightface distributes its training sets (train.rec, train.idx, property, a .bin of pairs).

    python bench/scale.py --memory 50000,200000,1000000   # peak memory of a 1-epoch run, 512-D features
    python bench/scale.py --open 1000000 --files 100000   # time to open a .rec of N records, a folder of N files
    python bench/scale.py --classes 50000                 # 50,000 classes of 2 images: train 1 epoch, then
                                                          # --second_train, --test and --verify
    python bench/scale.py --decode 10000                  # 112x112 JPEG records decoded: ours and ImageRecordIter
    python bench/scale.py --resnet 256                    # ResNet-50, 512-D, 112x112: memory and time per step

Each prints its figures with the CPU and the commit; the sets are written under --work (default: a
temporary folder, removed after) and reused when they are there.
"""
import argparse
import io
import json
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


# --------------------------------------------------------------------------- sets written as insightface's

def encoded(pixels, fmt='JPEG'):
    """The bytes of an image (uint8, (H, W) grey or (H, W, 3) colour) as Pillow encodes it."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, quality=90)
    return buf.getvalue()


def image_pool(size, count=256, colour=False, seed=0):
    """``count`` encoded images of random pixels, ``size`` square, for records to share (encoding each of a
    million images would take longer than everything measured)."""
    rng = np.random.RandomState(seed)
    shape = (size, size, 3) if colour else (size, size)
    return [encoded(rng.randint(0, 256, shape).astype(np.uint8)) for _ in range(count)]


def write_insightface(root, labels, images, size, bins=None, seed=0):
    """An insightface training folder in ``root``: train.rec and train.idx (record 0 a header whose label is
    [first identity record, end of the identity records]; records 1..N the images, identity by identity,
    image i of ``labels`` being ``images[i % len(images)]``; then one record per identity, its label the
    range [start, end) of its image records), ``property`` ('classes,height,width'), and for each
    verification set of ``bins`` ({name: pairs}) ``name.bin``: a pickle of (encoded images, same flags),
    images 2k and 2k+1 making pair k."""
    import mxnet as mx
    os.makedirs(root, exist_ok=True)
    labels = np.asarray(labels)
    order = np.argsort(labels, kind='stable')
    ids, counts = np.unique(labels, return_counts=True)
    n = len(labels)
    pack, header = mx.recordio.pack, mx.recordio.IRHeader
    rec = mx.recordio.MXIndexedRecordIO(os.path.join(root, 'train.idx'), os.path.join(root, 'train.rec'), 'w')
    rec.write_idx(0, pack(header(2, [n + 1, n + 1 + len(ids)], 0, 0), b''))
    for key, i in enumerate(order, 1):
        rec.write_idx(key, pack(header(0, float(labels[i]), key, 0), images[i % len(images)]))
    starts = 1 + np.concatenate([[0], np.cumsum(counts)[:-1]])
    for k, (start, count) in enumerate(zip(starts, counts)):
        rec.write_idx(n + 1 + k, pack(header(2, [float(start), float(start + count)], 0, 0), b''))
    rec.close()
    with open(os.path.join(root, 'property'), 'w') as f:
        f.write('%d,%d,%d\n' % (len(ids), size, size))
    rng = np.random.RandomState(seed)
    for name, pairs in (bins or {}).items():
        same = [bool(k % 2 == 0) for k in range(pairs)]
        pictures = [images[int(rng.randint(len(images)))] for _ in range(2 * pairs)]
        with open(os.path.join(root, name + '.bin'), 'wb') as f:
            pickle.dump((pictures, same), f, protocol=4)
    return root


def write_folder(root, labels, images, ext='.jpg'):
    """A folder of class folders (no split), image i of ``labels`` being ``images[i % len(images)]``."""
    for i, label in enumerate(labels):
        folder = os.path.join(root, 'c%06d' % label)
        if not os.path.isdir(folder):
            os.makedirs(folder)
        with open(os.path.join(folder, '%08d%s' % (i, ext)), 'wb') as f:
            f.write(images[i % len(images)])
    return root
