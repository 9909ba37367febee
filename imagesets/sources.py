"""Your own images on disk, recognised from what ``--data_dir DIR`` holds:

* RecordIO (imagesets/recordio.py) as im2rec and insightface write it: ``DIR/train.rec`` + ``train.idx``,
  and ``DIR/test.rec`` + ``test.idx`` where the set has a test split;
* an image folder (imagesets/folders.py): ``DIR/train/<class>/*`` and ``DIR/test/<class>/*``, or class
  folders with no split (``DIR/<class>/*``); class ids are the positions of the class names in the
  sorted names of both splits, so a test class that has no training folder is held out (an open-set
  class, as ``--holdout`` makes them).

A set with no test split gets one from its training images (imagesets/dataset.py). insightface's
verification sets (``*.bin``) beside the images are found too. Every record is checked when the files
are opened, every image is brought to one size: the most common size of the training images, grey or
colour as most of them are (imagesets/decode.py). Only the list of images (paths or record offsets)
and their labels are held in memory.
"""
import glob
import os

from faults.errors import DataError
from imagesets import decode, folders, recordio
from imagesets.listed import SPLITS, few


class Source(object):
    """A dataset of images on disk: its kind ('folder' or 'recordio'), its classes (names, and the
    labels they carry in the files), the two splits (the test one None where it has none), the channels
    and (height, width) most of its training images have, what was skipped while listing, notes on how
    it was read, and a fingerprint."""

    def __init__(self, kind, root, listing):
        self.kind, self.root, self.splits = kind, root, listing.splits
        self.classes, self.ids = list(listing.classes), list(listing.ids)
        self.skipped, self.notes, self.fingerprint = listing.skipped, list(listing.notes), listing.fingerprint
        self.channels, self.size = decode.common_shape(self.splits['train'])

    def describe(self):
        return '%s %s (%d classes, %s images of %dx%d)' % (
            'image folder' if self.kind == 'folder' else 'RecordIO', self.root, len(self.classes),
            'grey' if self.channels == 1 else 'colour', self.size[0], self.size[1])


def kind_of(root):
    """'folder', 'recordio' or None (an IDX folder, or nothing this module reads)."""
    if any(os.path.isfile(os.path.join(root, s + '.rec')) for s in SPLITS):
        return 'recordio'  # test.rec alone: recordio.open_recordio says train.rec is missing
    if not os.path.isdir(root) or any(f.startswith('train-images-idx3-ubyte') for f in os.listdir(root)):
        return None
    if any(os.path.isdir(os.path.join(root, s)) for s in SPLITS) or folders.holds_class_folders(root):
        return 'folder'
    return None


def has_test_split(root):
    """Whether the images in ``root`` come with a test split of their own (test.rec, or a test/ folder)."""
    return os.path.isfile(os.path.join(root, 'test.rec')) or (
        kind_of(root) == 'folder' and os.path.isdir(os.path.join(root, 'test')))


def pair_sets(root):
    """The insightface verification sets (``*.bin``) beside the images in ``root``, sorted by name."""
    return sorted(glob.glob(os.path.join(glob.escape(root), '*.bin')))


def layout_hint(root):
    """For a folder this module reads differently from what was meant, or does not read although it
    holds images: the line that says what to name instead; else None."""
    parent = os.path.dirname(os.path.abspath(root))
    if os.path.basename(os.path.abspath(root)) in SPLITS and all(
            os.path.isdir(os.path.join(parent, s)) for s in SPLITS):
        return '%s is the %s/ folder of %s: name that one' % (root, os.path.basename(os.path.abspath(root)), parent)
    try:
        recs = sorted(n for n in os.listdir(root) if n.endswith('.rec') and not n.startswith('.'))
    except OSError:
        return None
    if recs and kind_of(root) is None:
        return ('%s holds %s but no train.rec: name the training records so, with its .idx (and the test '
                'records test.rec, if the set has a test split) (docs/own-data.md)' % (root, few(recs, 3)))
    return None


def open_source(root):
    """The Source in ``root``; DataError naming what is wrong."""
    kind = kind_of(root)
    if kind == 'folder':
        return Source(kind, root, folders.open_folder(root))
    if kind == 'recordio':
        return Source(kind, root, recordio.open_recordio(root))
    raise DataError('%s holds neither class folders (train/ and test/, or one folder a class) nor train.rec' % root)
