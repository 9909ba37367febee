"""Write MNIST or Fashion-MNIST as your own images would come: an image folder and MXNet RecordIO.

    python bench/image_sets.py --dataset mnist --out /tmp/mnist-images
    python main.py --train --center_loss --data_dir /tmp/mnist-images/folder
    python main.py --train --center_loss --data_dir /tmp/mnist-images/recordio

writes ``OUT/folder/{train,test}/<class>/<n>.png`` (class folders named so that their sorted order is
the dataset's label order: ``0`` .. ``9`` for MNIST, ``0-T-shirt`` .. ``9-Boot`` for Fashion-MNIST) and
``OUT/recordio/{train,test}.rec`` with their ``.idx``, as MXNet's ``im2rec`` writes them: each record a
header holding the label and the PNG's bytes (``mx.recordio.pack``; PNGs are encoded by Pillow, since
``mx.recordio.pack_img`` needs the cv2 package). ``--pairs N`` also writes ``OUT/pairs.txt``, N same and
N different pairs of test images in 10 folds in LFW's ``pairs.txt`` format, resolved against
``OUT/folder/test``. ``--scale S`` enlarges every image S times (and ``--colour`` makes it RGB), to make a
set as large as needed for the memory measure.
"""
import argparse
import io
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def class_folders(dataset):
    import utils
    names = utils.CLASS_NAMES[dataset]
    return names if names == sorted(names) else ['%d-%s' % (i, n) for i, n in enumerate(names)]


def encode(img, scale=1, colour=False):
    from PIL import Image
    im = Image.fromarray(img)
    if scale != 1:
        im = im.resize((img.shape[1] * scale, img.shape[0] * scale), Image.BICUBIC)
    if colour:
        im = im.convert('RGB')
    buf = io.BytesIO()
    im.save(buf, format='PNG')
    return buf.getvalue()


def write_sets(dataset, out, limit=None, scale=1, colour=False, pairs=0):
    from devices import compat  # noqa: F401
    import mxnet as mx
    import utils
    directory = utils.find_data(dataset, download=False)
    names = class_folders(dataset)
    for split in ('train', 'test'):
        images, labels = utils.load_split(directory, split)
        images, labels = images[:limit], labels[:limit]
        rec_dir = os.path.join(out, 'recordio')
        os.makedirs(rec_dir, exist_ok=True)
        rec = mx.recordio.MXIndexedRecordIO(os.path.join(rec_dir, split + '.idx'),
                                            os.path.join(rec_dir, split + '.rec'), 'w')
        for i, (img, label) in enumerate(zip(images, labels)):
            blob = encode(img, scale, colour)
            folder = os.path.join(out, 'folder', split, names[label])
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, '%05d.png' % i), 'wb') as f:
                f.write(blob)
            rec.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, float(label), i, 0), blob))
        rec.close()
        print('%s: %d images of %s written as PNG files and as %s.rec' % (split, len(labels), dataset, split))
    if pairs:
        write_pairs(os.path.join(out, 'pairs.txt'), os.path.join(out, 'folder', 'test'), pairs)


def write_pairs(path, folder, per_kind, folds=10, seed=2016):
    """LFW's pairs.txt: "folds per_fold", then per fold per_fold same pairs "name n1 n2" and
    per_fold different pairs "name1 n1 name2 n2" (n: 1-based position in the class folder's sorted files)."""
    from imagesets.pairs import lfw_pairs
    counts = {c: len(os.listdir(os.path.join(folder, c))) for c in sorted(os.listdir(folder))}
    per_fold = per_kind // folds
    with open(path, 'w') as f:
        f.write(lfw_pairs(counts, np.random.RandomState(seed), folds, per_fold))
    print('%s: %d folds of %d same and %d different pairs' % (path, folds, per_fold, per_fold))


def main():
    from cli.flags import Parser, number
    from faults.errors import UserError
    from runs.lock import writable_folder
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dataset', default='mnist', choices=('mnist', 'fashion-mnist'))
    p.add_argument('--out', required=True, help='folder to write folder/ and recordio/ into')
    p.add_argument('--limit', type=number(int, above=0), default=None, help='only the first N images of each split')
    p.add_argument('--scale', type=number(int, at_least=1, at_most=64), default=1,
                   help='enlarge each image this many times')
    p.add_argument('--colour', action='store_true', help='write RGB images')
    p.add_argument('--pairs', type=number(int, at_least=0), default=0,
                   help='also write pairs.txt with N same and N different pairs')
    args = p.parse_args()
    try:
        writable_folder(args.out, '--out')
    except UserError as e:
        p.error(str(e))
    write_sets(args.dataset, args.out, args.limit, args.scale, args.colour, args.pairs)


if __name__ == '__main__':
    main()
