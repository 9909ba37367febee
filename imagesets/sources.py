"""Your own images on disk: a folder of class folders (imagesets/folders.py), or MXNet RecordIO as
im2rec and insightface write it (imagesets/recordio.py), recognised from what ``--data_dir DIR`` holds:

* an image folder: ``DIR/train/<class>/*`` and ``DIR/test/<class>/*``, in any format MXNet or Pillow
  decodes (IMAGE_EXTENSIONS); class ids are the positions of the class names in the sorted names of
  both splits, so a test class that has no training folder is held out (an open-set class, as
  ``--holdout`` makes them);
* RecordIO: ``DIR/train.rec`` + ``train.idx`` and ``DIR/test.rec`` + ``test.idx``, each record's
  header holding its label: a number, or an array (``im2rec --pack-label``) whose first value is the
  class. Labels need not be dense (0, 3, 6, ...): the classes are the labels found, in order.

Every record is checked when the files are opened: a record cut short, or one with no image, is
named with its file and key before anything trains. Images are brought to one size: the most common
size of the training images, grey or colour as most of them are (imagesets/decode.py). Only the list
of images (paths or record offsets) and their labels are held in memory.
"""
import collections
import os

from faults.errors import DataError
from imagesets import decode, folders, recordio
from imagesets.listed import IMAGE_EXTENSIONS, SPLITS, few


class Source(object):
    """A dataset of images on disk: its kind ('folder' or 'recordio'), its classes (names, and the
    labels they carry in the files), the two splits, the channels and (height, width) most of its
    training images have, what was skipped while listing, notes on how it was read, and a fingerprint."""

    def __init__(self, kind, root, listing):
        self.kind, self.root, self.splits = kind, root, listing.splits
        self.classes, self.ids = list(listing.classes), list(listing.ids)
        self.skipped, self.notes, self.fingerprint = listing.skipped, list(listing.notes), listing.fingerprint
        self.channels, self.size = decode.common_shape(self.splits['train'])

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
                'its .idx (docs/own-data.md)' % (root, few(recs, 3)))
    classes = [n for n in names if os.path.isdir(os.path.join(root, n))]
    for name in classes[:5]:
        try:
            files = os.listdir(os.path.join(root, name))
        except OSError:
            continue
        if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
            return ('%s holds class folders (%s) but no train/ and test/: move them into %s/train/, and a test '
                    'set of the same classes into %s/test/ (docs/own-data.md)' % (root, few(classes, 3), root, root))
    return None


def open_source(root):
    """The Source in ``root``; DataError naming what is wrong."""
    kind = kind_of(root)
    if kind == 'folder':
        return Source(kind, root, folders.open_folder(root))
    if kind == 'recordio':
        return Source(kind, root, recordio.open_recordio(root))
    raise DataError('%s holds neither train/ and test/ class folders nor train.rec and test.rec' % root)
