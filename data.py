"""A run's data: the dataset's images read (utils.py), the classes trained on kept, normalised
with the training images' statistics, and put on the device."""
import compat  # noqa: F401

import numpy as np

import utils
from errors import UserError
from utils import DataError, DataNotFound


def find_data_dir(args):
    try:
        return utils.find_data(args.dataset, args.data_dir)
    except DataNotFound as e:
        raise UserError('%s. Pass --data_dir DIR holding %s' % (
            e, ', '.join(s + '.gz' for split in ('train', 'test') for s in utils.FILES[split])))
    except DataError as e:
        raise UserError('--data_dir: %s' % e if args.data_dir else e)


def read_data(args):
    """(folder, (train images, labels), (test images, labels)) as numpy, sliced by --train_samples/--test_samples."""
    directory = find_data_dir(args)
    train_img, train_lbl = utils.load_split(directory, 'train')
    test_img, test_lbl = utils.load_split(directory, 'test')
    return (directory, (train_img[:args.train_samples], train_lbl[:args.train_samples]),
            (test_img[:args.test_samples], test_lbl[:args.test_samples]))


def load_data(args, arch, rt, raw=None, normalisation=None):
    """Train and test arrays of the classes ``arch`` trains on, on the first device (every worker
    holds the whole training set); ``raw``: read_data's answer, when it was read already;
    ``normalisation``: (mean, std) a checkpoint records, else those of the training images.

    With held-out classes (arch.holdout) their training images are dropped here,
    before any batch is drawn; the other labels become 0..K-1 (``classes`` maps
    them back); their test images are apart, as ``held_x``/``held_y``.
    """
    directory, (train_img, train_lbl), (test_img, test_lbl) = raw or read_data(args)
    top, total = int(max(train_lbl.max(), test_lbl.max())), len(utils.CLASS_NAMES[args.dataset])
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
    # Normalise with the statistics of the images trained on, whatever the dataset.
    mean, std = normalisation or (float(train_img.mean() / 255.0), float(train_img.std() / 255.0))
    train_x, train_y = utils.to_nd(train_img, train_lbl, mean, std, rt.ctxs[0])
    test_x, test_y = utils.to_nd(test_img, test_lbl, mean, std, rt.ctxs[0])
    held_x, held_y = utils.to_nd(held_img, held_lbl, mean, std, rt.ctxs[0]) if len(held_lbl) else (None, None)
    print('data: %s from %s, %d train / %d test images%s%s' % (
        args.dataset, directory, len(train_lbl), len(test_lbl),
        ' of classes %s (held out: %s, %d test images)' % (','.join(map(str, classes)), ','.join(map(str, arch.holdout)),
                                                           len(held_lbl)) if arch.holdout else '',
        ' (worker %d of %d: slice %d of each global batch)' % (rt.rank, rt.num_workers, rt.rank)
        if rt.num_workers > 1 else ''))
    return dict(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, held_x=held_x, held_y=held_y,
                classes=np.array(classes), num_total=max(total, arch.num_classes), normalisation=[mean, std],
                class_names=utils.CLASS_NAMES[args.dataset], background=float(-mean / std))


# Flags that say which images a run uses: later commands take them from the checkpoint they start from.
DATA_FLAGS = ('dataset', 'data_dir', 'train_samples')
DATA_DEFAULTS = {'dataset': 'mnist', 'data_dir': None, 'train_samples': None}


def inherit_data_flags(args, ckpt):
    """Fill --dataset, --data_dir and --train_samples the user did not give: from ``ckpt``, the
    checkpoint the command starts from (a checkpoint knows its data as it knows its network),
    else the defaults. A --dataset that disagrees with the checkpoint's is an error;
    --train_samples may differ (a second stage on more images is a choice)."""
    args.given = {k for k in DATA_FLAGS if getattr(args, k) is not None}
    recorded = ckpt.meta if ckpt is not None else {}
    if ckpt is not None:
        check_dataset(args, ckpt)
    for key in DATA_FLAGS:
        if getattr(args, key) is None:
            setattr(args, key, recorded.get(key, DATA_DEFAULTS[key]))
    return args


def check_dataset(args, ckpt):
    """A checkpoint is continued or evaluated on the dataset it was trained on."""
    trained_on = ckpt.meta.get('dataset', 'mnist')
    if args.dataset is not None and trained_on != args.dataset:
        raise UserError('%s was trained on %s, not %s: %s' % (
            ckpt.path, trained_on, args.dataset, 'drop --dataset' if 'dataset' in getattr(args, 'given', {'dataset'})
            else 'name runs of one dataset'))
