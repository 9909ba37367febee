"""A run's data: the dataset read (MNIST-style IDX files by utils.py, your own images by sources.py),
the classes trained on kept, normalised with the training images' statistics, on the device or
streamed from disk (images.py); and the data flags later commands take from their checkpoint."""
import compat  # noqa: F401

import collections
import os

import numpy as np
from mxnet import nd

import images
import sources
import utils
from errors import UserError
from utils import DataError, DataNotFound

OWN = 'images'  # --dataset of your own image folders or RecordIO
DATASETS = sorted(utils.SHA256) + [OWN]

# What read_data found: where, the class names, the images' (channels, (height, width)), and per split
# (pixels, labels): uint8 arrays for IDX files, a sources.Split and the positions used for your own.
Raw = collections.namedtuple('Raw', 'where class_names shape train test own')


def find_data_dir(args):
    try:
        return utils.find_data(args.dataset, args.data_dir)
    except DataNotFound as e:
        raise UserError('%s. Pass --data_dir DIR holding %s' % (
            e, ', '.join(s + '.gz' for split in ('train', 'test') for s in utils.FILES[split])))
    except DataError as e:
        raise UserError('--data_dir: %s' % e if args.data_dir else e)


_OPENED = {}


def open_own(root):
    """The sources.Source in ``root`` (listed once per process)."""
    key = os.path.abspath(root)
    if key not in _OPENED:
        try:
            _OPENED[key] = sources.open_source(root)
        except sources.SourceError as e:
            raise UserError('--data_dir: %s' % e)
    return _OPENED[key]


def class_names(args):
    """The dataset's class names (their number is the number of classes)."""
    if args.dataset == OWN:
        return open_own(args.data_dir).classes
    return utils.CLASS_NAMES[args.dataset]


def read_data(args):
    """The Raw data of --dataset/--data_dir: --train_samples and --test_samples keep the first N
    images of an IDX file, and a seeded sample of N of your own images (whose files are in class order)."""
    if args.dataset == OWN:
        source = open_own(args.data_dir)
        splits = []
        for split, limit in (('train', args.train_samples), ('test', args.test_samples)):
            labels = source.splits[split].labels
            used = np.arange(len(labels))
            if limit is not None and limit < len(labels):
                used = np.sort(np.random.RandomState(2016).choice(len(labels), limit, replace=False))
            splits.append((used, labels[used]))
        return Raw(source.describe(), source.classes, (source.channels, source.size), splits[0], splits[1], source)
    directory = find_data_dir(args)
    train_img, train_lbl = utils.load_split(directory, 'train')
    test_img, test_lbl = utils.load_split(directory, 'test')
    return Raw(directory, utils.CLASS_NAMES[args.dataset], (1, train_img.shape[1:]),
               (train_img[:args.train_samples], train_lbl[:args.train_samples]),
               (test_img[:args.test_samples], test_lbl[:args.test_samples]), None)


def untrained_classes(args, raw):
    """Add to --holdout your own test classes with no training images: they are open-set classes,
    as --holdout makes them (a new first stage; later ones take the split from the checkpoint)."""
    if raw.own is None:
        return
    missing = sorted(set(raw.test[1].tolist()) - set(raw.train[1].tolist()))
    if missing:
        args.holdout = tuple(sorted(set(args.holdout or ()) | set(missing)))


def image_shape(args, raw):
    """(channels, (height, width)) a new run's network takes: the data's, or --image_size."""
    channels, size = raw.shape
    if args.image_size is not None:
        if raw.own is None and tuple(args.image_size) != tuple(size):
            raise UserError('--image_size is for your own images (--data_dir with image folders or RecordIO); '
                            '%s is %dx%d' % (args.dataset, size[0], size[1]))
        size = tuple(args.image_size)
    return channels, tuple(size)


def load_data(args, arch, rt, raw=None, normalisation=None):
    """Train and test images of the classes ``arch`` trains on, at its image size, normalised on the
    first device (held there for IDX files, streamed from disk for your own images); ``raw``:
    read_data's answer, when it was read already; ``normalisation``: (mean, std) a checkpoint
    records, else those of the training images.

    With held-out classes (arch.holdout, or your own test classes with no training folder) their
    training images are dropped here, before any batch is drawn; the other labels become 0..K-1
    (``classes`` maps them back); their test images are apart, as ``held_x``/``held_y``.
    """
    raw = raw or read_data(args)
    (train_img, train_lbl), (test_img, test_lbl) = raw.train, raw.test
    total = len(raw.class_names)
    if not len(train_lbl) or not len(test_lbl):
        raise UserError('no %s images in %s' % ('training' if not len(train_lbl) else 'test', raw.where))
    top = int(max(train_lbl.max(), test_lbl.max()))
    if not arch.holdout and top >= arch.num_classes:
        raise UserError('labels go up to %d but --num_classes is %d' % (top, arch.num_classes))
    if arch.holdout and top >= total:
        raise UserError('labels go up to %d but %s has %d classes' % (top, args.dataset, total))
    classes, mapping = utils.split_classes(total if arch.holdout else arch.num_classes, arch.holdout)
    known_train, known_test = mapping[train_lbl] >= 0, mapping[test_lbl] >= 0
    train_img, train_lbl = train_img[known_train], mapping[train_lbl[known_train]]
    held_img, held_lbl = test_img[~known_test], test_lbl[~known_test]
    test_img, test_lbl = test_img[known_test], mapping[test_lbl[known_test]]
    if not len(train_lbl) or not len(test_lbl):
        raise UserError('no %s images of the classes trained on (%s)' % (
            'training' if not len(train_lbl) else 'test', ','.join(map(str, classes))))
    ctx = rt.ctxs[0]
    if raw.own is None:
        # Normalise with the statistics of the images trained on, whatever the dataset.
        mean, std = normalisation or (float(train_img.mean() / 255.0), float(train_img.std() / 255.0))
        train_x, train_y = utils.to_nd(train_img, train_lbl, mean, std, ctx)
        test_x, test_y = utils.to_nd(test_img, test_lbl, mean, std, ctx)
        held_x, held_y = utils.to_nd(held_img, held_lbl, mean, std, ctx) if len(held_lbl) else (None, None)
        train_x, test_x = images.InMemory(train_x), images.InMemory(test_x)
        held_x = images.InMemory(held_x) if held_x is not None else None
    else:
        train_x, test_x, held_x = (
            images.Streamed(raw.own.splits[split], used, arch.channels, arch.image_size, 0.0, 1.0, ctx,
                            args.decode_workers) if len(used) else None
            for split, used in (('train', train_img), ('test', test_img), ('test', held_img)))
        mean, std = normalisation or train_x.statistics()
        for x in (train_x, test_x, held_x):
            if x is not None:
                x.mean, x.std = mean, std
        train_y, test_y, held_y = (nd.array(lbl.astype(np.float32), ctx=ctx) if len(lbl) else None
                                   for lbl in (train_lbl, test_lbl, held_lbl))
    print('data: %s from %s, %d train / %d test images%s%s%s' % (
        args.dataset, raw.where, len(train_lbl), len(test_lbl),
        ' of classes %s (held out: %s, %d test images)' % (_ids(classes), _ids(arch.holdout), len(held_lbl))
        if arch.holdout else '',
        ', streamed at %dx%d' % tuple(arch.image_size) if raw.own is not None else '',
        ' (worker %d of %d: slice %d of each global batch)' % (rt.rank, rt.num_workers, rt.rank)
        if rt.num_workers > 1 else ''))
    return dict(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, held_x=held_x, held_y=held_y,
                classes=np.array(classes), num_total=max(total, arch.num_classes), normalisation=[mean, std],
                class_names=raw.class_names, background=float(-mean / std))


def _ids(values):
    text = ','.join(map(str, values))
    return text if len(text) <= 60 else text[:57] + '...'


# Flags that say which images a run uses: later commands take them from the checkpoint they start from.
DATA_FLAGS = ('dataset', 'data_dir', 'train_samples')
DATA_DEFAULTS = {'dataset': 'mnist', 'data_dir': None, 'train_samples': None}


def inherit_data_flags(args, ckpt):
    """Fill --dataset, --data_dir and --train_samples the user did not give: from ``ckpt``, the
    checkpoint the command starts from (a checkpoint knows its data as it knows its network),
    else the defaults (--data_dir holding image folders or RecordIO means --dataset images).
    A --dataset that disagrees with the checkpoint's is an error; --train_samples may differ
    (a second stage on more images is a choice)."""
    args.given = {k for k in DATA_FLAGS if getattr(args, k) is not None}
    if ckpt is not None:
        check_dataset(args, ckpt)
    recorded = ckpt.meta if ckpt is not None else {}
    for key in DATA_FLAGS:
        if getattr(args, key) is None:
            setattr(args, key, recorded.get(key, DATA_DEFAULTS[key]))
    if args.data_dir is not None and os.path.isdir(args.data_dir) and sources.kind_of(args.data_dir):
        if 'dataset' in args.given and args.dataset != OWN:
            raise UserError('--data_dir %s holds %s, not the IDX files of %s: drop --dataset'
                            % (args.data_dir, 'RecordIO' if sources.kind_of(args.data_dir) == 'recordio'
                               else 'image folders', args.dataset))
        args.dataset = OWN
    elif args.dataset == OWN:
        raise UserError('--dataset images needs --data_dir DIR holding train/ and test/ class folders, or '
                        'train.rec and test.rec (each with its .idx)%s'
                        % ('' if args.data_dir is None else '; %s holds neither' % args.data_dir))
    return args


def check_dataset(args, ckpt):
    """A checkpoint is continued or evaluated on the dataset it was trained on."""
    trained_on = ckpt.meta.get('dataset', 'mnist')
    if args.dataset is not None and trained_on != args.dataset:
        raise UserError('%s was trained on %s, not %s: %s' % (
            ckpt.path, trained_on, args.dataset, 'drop --dataset' if 'dataset' in getattr(args, 'given', {'dataset'})
            else 'name runs of one dataset'))
