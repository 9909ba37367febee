"""A run's data: the dataset opened (MNIST-style IDX files by utils.py, your own images by
imagesets/sources.py) and described (runs.records.Facts), checked against what a checkpoint recorded
of it, the classes trained on kept, normalised with the training images' statistics, on the device or
streamed from disk (imagesets/images.py)."""
from devices import compat  # noqa: F401  (before mxnet)

import collections
import os

import numpy as np
from mxnet import nd

import utils
from faults.errors import DataError, UserError
from imagesets import images, pairs, sources
from imagesets.listed import few
from models import FACE_NORMALISATION, is_face
from runs import records
from utils import DataNotFound

OWN = records.DATASETS[-1]  # 'images': the dataset of your own image folders or RecordIO
TEST_SPLIT = 0.05   # the share of each class's images held out for testing where a set has no test split
SPLIT_SEED = 2016   # the held-out slice and the samples of --train_samples: the same for every run of a set

# What open_data found: the Data it was asked for (dataset and folder settled), its Facts, where it is
# (for messages), the class names, the (channels, (height, width)) of most images, and per split
# (pixels, labels): uint8 arrays for IDX files, the positions used for your own (``own``: the
# sources.Source, whose test split is its training split where the test images are held out of it);
# the verification sets ([(name, path of the .bin)]); ``notes``: lines on how it was read.
Raw = collections.namedtuple('Raw', 'spec facts where class_names shape train test own pair_sets notes')

# What a stage trains and evaluates on (load): images (images.InMemory or Streamed) and labels
# (0..K-1 over the classes trained on) per split, the held-out classes' test images (or None), the
# dataset's ids of the classes trained on (``classes[label]``), how many classes the dataset has,
# the normalisation (mean, std), every class's name, the value of a blank pixel once normalised, and
# the verification sets measured after each epoch ([(name, imagesets.pairs.PairList)]).
Loaded = collections.namedtuple('Loaded', 'train_x train_y test_x test_y held_x held_y classes num_total '
                                          'normalisation class_names background pair_lists')


def settle(spec):
    """``spec`` (records.Data) with its dataset settled: a --data_dir holding image folders or RecordIO
    is your own images, and those with no test split get the share held out of their training images;
    UserError for a combination that cannot be."""
    folder = spec.data_dir if spec.data_dir and os.path.isdir(spec.data_dir) else None
    hint = sources.layout_hint(folder) if folder and spec.dataset in (None, OWN) else None
    if hint:
        raise UserError('--data_dir: %s' % hint)
    kind = sources.kind_of(folder) if folder else None
    if kind and spec.dataset not in (None, OWN):
        raise UserError('--data_dir %s holds %s, not the IDX files of %s: drop --dataset'
                        % (spec.data_dir, 'RecordIO' if kind == 'recordio' else 'image folders', spec.dataset))
    dataset = OWN if kind else (spec.dataset or 'mnist')
    if dataset == OWN and not kind:
        raise UserError('--dataset images needs --data_dir DIR holding class folders (train/ and test/, or one '
                        'folder a class) or train.rec with its .idx%s'
                        % ('' if spec.data_dir is None else '; %s holds neither' % spec.data_dir))
    if dataset != OWN:
        for flag in ('image_size', 'test_split', 'val_sets'):
            if getattr(spec, flag) is not None and not (flag == 'image_size' and tuple(spec.image_size) == (28, 28)):
                raise UserError('--%s is for your own images (--data_dir with image folders or RecordIO); %s has '
                                'none to set' % (flag, dataset))
    test_split = spec.test_split
    if dataset == OWN and sources.has_test_split(folder):
        if test_split is not None:
            raise UserError('--test_split: %s has a test split of its own; drop the flag' % spec.data_dir)
    elif dataset == OWN and test_split is None:
        test_split = TEST_SPLIT
    return records.Data(dataset, os.path.abspath(spec.data_dir) if spec.data_dir else None, spec.train_samples,
                        spec.test_samples, spec.image_size, test_split, spec.val_sets)


def open_data(spec):
    """The Raw data of ``spec`` (settled): --train_samples and --test_samples keep the first N images
    of an IDX file, and a seeded sample of N of your own images (whose files are in class order)."""
    if spec.dataset == OWN:
        return _open_own(spec)
    directory = find_data_dir(spec)
    train_img, train_lbl = utils.load_split(directory, 'train')
    test_img, test_lbl = utils.load_split(directory, 'test')
    names = utils.CLASS_NAMES[spec.dataset]
    facts = records.Facts('idx', names, range(len(names)), len(train_lbl), len(test_lbl), utils.fingerprint(directory))
    return Raw(spec, facts, directory, names, (1, train_img.shape[1:]),
               (train_img[:spec.train_samples], train_lbl[:spec.train_samples]),
               (test_img[:spec.test_samples], test_lbl[:spec.test_samples]), None, [], [])


def _open_own(spec):
    try:
        source = sources.open_source(spec.data_dir)
    except DataError as e:
        raise DataError('--data_dir: %s' % e)
    train = source.splits['train']
    if source.splits['test'] is None:  # no test split: the test images are a slice of the training ones
        positions = held_out(train.labels, spec.test_split)
        source.splits['test'] = train
        notes = ['no test split in %s: %d of its %d images held out for testing (%g of each class\'s, at least '
                 'one of a class of two or more; seeded: the same for every run) (--test_split)'
                 % (spec.data_dir, len(positions[1]), len(train.labels), spec.test_split)]
    else:
        positions = [np.arange(len(source.splits[s].labels), dtype=np.int32) for s in ('train', 'test')]
        notes = []
    splits = []
    for split, used, limit in zip(('train', 'test'), positions, (spec.train_samples, spec.test_samples)):
        labels = source.splits[split].labels
        if limit is not None and limit < len(used):
            used = np.sort(np.random.RandomState(SPLIT_SEED).choice(used, limit, replace=False))
        splits.append((used, labels if len(used) == len(labels) else labels[used]))  # (all: no copy)
    facts = records.Facts(source.kind, source.classes, source.ids, len(positions[0]), len(positions[1]),
                          source.fingerprint)
    notes = [n for n in [source.skipped.line()] + source.notes + notes if n]
    return Raw(spec, facts, source.describe(), source.classes, (source.channels, source.size), splits[0],
               splits[1], source, verification_sets(spec), notes)


def held_out(labels, share, seed=SPLIT_SEED):
    """(training positions, test positions) of a set with no test split: of each class's images a seeded
    ``share`` for testing (rounded), at least one where the class has two or more, never all of them."""
    counts = np.bincount(labels)
    order = np.random.RandomState(seed).permutation(len(labels))
    grouped = order[np.argsort(labels[order], kind='stable')]  # class by class, each in the permutation's order
    k = np.where(counts >= 2, np.clip(np.round(share * counts), 1, np.maximum(counts - 1, 1)), 0)
    rank = np.arange(len(labels)) - np.repeat(np.cumsum(counts) - counts, counts)
    test = rank < np.repeat(k, counts)
    return np.sort(grouped[~test]).astype(np.int32), np.sort(grouped[test]).astype(np.int32)


def verification_sets(spec):
    """[(name, path)] of the verification sets ``spec`` measures: its val_sets (a name is a .bin beside
    the images, a path is taken as it is), or every .bin beside the images."""
    if spec.val_sets is None:
        paths = sources.pair_sets(spec.data_dir)
    else:
        paths = [v if v.endswith('.bin') or os.sep in v else os.path.join(spec.data_dir, v + '.bin')
                 for v in spec.val_sets]
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise UserError('--val_sets: %s is not there (the sets beside the images: %s)' % (
            missing[0], ', '.join(os.path.basename(p)[:-4] for p in sources.pair_sets(spec.data_dir)) or 'none'))
    return [(os.path.basename(p)[:-len('.bin')] if p.endswith('.bin') else os.path.basename(p), p) for p in paths]


def find_data_dir(spec):
    try:
        return utils.find_data(spec.dataset, spec.data_dir)
    except DataNotFound as e:
        raise UserError('%s. Pass --data_dir DIR holding %s' % (
            e, ', '.join(s + '.gz' for split in ('train', 'test') for s in utils.FILES[split])))
    except DataError as e:
        raise UserError('--data_dir: %s' % e if spec.data_dir else e)


def check_same(raw, recorded, path):
    """The data opened is the data checkpoint ``path`` recorded (``recorded``: its Facts, None for a
    checkpoint of an earlier version): the same classes and the same files."""
    if recorded is None:
        return
    now = raw.facts
    if (now.kind, now.classes, now.fingerprint) != (recorded.kind, recorded.classes, recorded.fingerprint):
        raise UserError('%s was made on other data than %s holds now (then: %s, %d classes, %d train / %d test '
                        'images, fingerprint %s; now: %s, %d classes, %d / %d, %s): point --data_dir at the data '
                        'it was made on, or train anew'
                        % (path, raw.where, recorded.kind, len(recorded.classes), recorded.train_images,
                           recorded.test_images, recorded.fingerprint, now.kind, len(now.classes), now.train_images,
                           now.test_images, now.fingerprint))


def dense_holdout(raw, holdout):
    """--holdout's class ids (as the files label them) as positions among the dataset's classes, with
    your own test classes that have no training images added: they are open-set classes too."""
    ids = list(raw.facts.ids)
    unknown = [c for c in holdout or () if c not in ids]
    if unknown:
        raise UserError('--holdout: %s has no class %d (its classes %s)' % (
            raw.spec.dataset if raw.own is None else raw.where, unknown[0],
            'are 0 to %d' % (len(ids) - 1) if ids == list(range(len(ids))) else 'are ' + few(ids, 10)))
    held = {ids.index(c) for c in holdout or ()}
    if raw.own is not None:
        held |= set(raw.test[1].tolist()) - set(raw.train[1].tolist())
    trained_classes(raw, raw.train[1], held, holdout)
    return tuple(sorted(held))


def trained_classes(raw, labels, held, holdout):
    """The classes of ``labels`` (positions among the dataset's classes) less those ``held`` out;
    UserError when fewer than two are left, the least a classifier can tell apart."""
    trained = sorted(set(np.unique(labels).tolist()) - set(held))
    if len(trained) < 2:
        raise UserError('%s has training images of %s%s: a classifier needs at least two classes to tell apart'
                        % (raw.where, 'no class' if not trained else 'one class only (%s)' % raw.class_names[trained[0]],
                           ' once --holdout %s is left out' % records.flag_value('holdout', holdout) if holdout else ''))
    return trained


def image_shape(raw):
    """(channels, (height, width)) a new run's network takes: the data's, or --image_size."""
    channels, size = raw.shape
    return channels, tuple(raw.spec.image_size or size)


def load(raw, arch, rt, decode_workers=1, normalisation=None):
    """Train and test images of the classes ``arch`` trains on, at its image size, normalised on the
    first device (held there for IDX files, streamed from disk for your own images), as a Loaded;
    ``normalisation``: (mean, std) a checkpoint records, else the face networks' (x - 127.5) / 128 (as
    insightface's, so that an exported network takes faces as the field's do), else those of the
    training images.

    With held-out classes (arch.holdout) their training images are dropped here, before any batch is
    drawn; the other labels become 0..K-1 (``classes`` maps them back); their test images are apart,
    as ``held_x``/``held_y``.
    """
    classes, (train_img, train_lbl), (test_img, test_lbl), (held_img, held_lbl) = _trained_split(raw, arch)
    ctx = rt.ctxs[0]
    if normalisation is None and is_face(arch.model):
        normalisation = FACE_NORMALISATION
    if raw.own is None:
        # Normalise with the statistics of the images trained on, whatever the dataset.
        mean, std = normalisation or (float(train_img.mean() / 255.0), float(train_img.std() / 255.0))
        train_x, test_x = images.InMemory.of(train_img, mean, std, ctx), images.InMemory.of(test_img, mean, std, ctx)
        held_x = images.InMemory.of(held_img, mean, std, ctx) if len(held_lbl) else None
    else:
        train_x, test_x, held_x = (
            images.Streamed(raw.own.splits[split], used, arch.channels, arch.image_size, 0.0, 1.0, ctx,
                            decode_workers) if len(used) else None
            for split, used in (('train', train_img), ('test', test_img), ('test', held_img)))
        mean, std = normalisation or train_x.statistics()
        for x in (train_x, test_x, held_x):
            if x is not None:
                x.mean, x.std = mean, std
    train_y, test_y, held_y = (nd.array(lbl.astype(np.float32), ctx=ctx) if len(lbl) else None
                               for lbl in (train_lbl, test_lbl, held_lbl))
    say_what_is_measured(raw, arch, rt, classes, train_lbl, test_lbl, held_lbl)
    pair_lists = [(name, pairs.read_bin(path)) for name, path in raw.pair_sets]
    for _, pair_list in pair_lists:  # every image decodable, before anything trains
        pairs.check_images(pair_list)
    return Loaded(train_x, train_y, test_x, test_y, held_x, held_y, np.array(classes),
                  max(total_classes(raw), arch.num_classes), [mean, std], raw.class_names, float(-mean / std),
                  pair_lists)


def total_classes(raw):
    return len(raw.class_names)


def _trained_split(raw, arch):
    """(the dataset's ids of the classes trained on, and (images, labels 0..K-1) of the training images, the
    test images of those classes, and the test images of the classes held out (labels: dataset ids))."""
    (train_img, train_lbl), (test_img, test_lbl) = raw.train, raw.test
    if not len(train_lbl) or not len(test_lbl):
        raise UserError('no %s images in %s' % ('training' if not len(train_lbl) else 'test', raw.where))
    top = int(max(train_lbl.max(), test_lbl.max()))
    if not arch.holdout and top >= arch.num_classes:
        raise UserError('labels go up to %d but --num_classes is %d' % (top, arch.num_classes))
    classes, mapping = utils.split_classes(total_classes(raw) if arch.holdout else arch.num_classes, arch.holdout)
    known_train, known_test = mapping[train_lbl] >= 0, mapping[test_lbl] >= 0
    trained_classes(raw, train_lbl, arch.holdout, [raw.facts.ids[c] for c in arch.holdout])
    if not known_test.any():
        raise UserError('no test images of the classes trained on (%s)' % few(classes, 10))
    return classes, (train_img[known_train], mapping[train_lbl[known_train]]), \
        (test_img[known_test], mapping[test_lbl[known_test]]), (test_img[~known_test], test_lbl[~known_test])


def say_what_is_measured(raw, arch, rt, classes, train_lbl, test_lbl, held_lbl):
    """The data line: the images trained and tested on, the classes held out, and the trained classes that
    have no test images (their accuracy is not measured)."""
    untested = np.setdiff1d(np.unique(train_lbl), np.unique(test_lbl))
    print('data: %s from %s, %d train / %d test images%s%s%s%s' % (
        raw.spec.dataset, raw.where, len(train_lbl), len(test_lbl),
        ' of classes %s (held out: %s, %d test images)' % (few(classes, 10), few(arch.holdout, 10), len(held_lbl))
        if arch.holdout else '',
        '; %d trained class%s no test images (%s): the accuracy is over the others'
        % (len(untested), ' has' if len(untested) == 1 else 'es have',
           few([raw.class_names[classes[c]] for c in untested], 5)) if len(untested) else '',
        ', streamed at %dx%d' % tuple(arch.image_size) if raw.own is not None else '',
        ' (worker %d of %d: slice %d of each global batch)' % (rt.rank, rt.num_workers, rt.rank)
        if rt.num_workers > 1 else ''))
