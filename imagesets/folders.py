"""Image folders: ``DIR/train/<class>/*`` and ``DIR/test/<class>/*``, or class folders with no split
(``DIR/<class>/*``, or ``DIR/train/<class>/*`` alone), listed; what is not an image of a class skipped
and counted, the first few of each kind named (hidden files, the ``._*`` files a Mac writes,
``__MACOSX`` folders, other files, broken links); class names taken however their letters are
composed (a Mac writes 'é' as e + accent, most others as one)."""
import os

import numpy as np

from faults.errors import DataError
from imagesets.listed import IMAGE_EXTENSIONS, SPLITS, Listing, Skipped, Split, digest, nfc

PAIR_SET = '.bin'  # insightface's verification sets: beside the images, not skipped


def open_folder(root):
    """The Listing of the image folder ``root``; its test split None where it has none."""
    tops = {s: os.path.join(root, s) for s in SPLITS if os.path.isdir(os.path.join(root, s))}
    if list(tops) == ['test']:
        raise DataError('%s has a test/ folder and no train/ beside it: images are read as train/<class>/* and '
                        'test/<class>/*, or as <class>/* with no split' % root)
    if not tops:
        tops = {'train': root}  # class folders with no split
    skipped, names, listing = Skipped(root), {}, []
    for split, top in tops.items():
        entries = _entries(top, skipped)
        names[split] = [n for n, is_dir, _ in entries if is_dir and not (top == root and n in SPLITS)]
        for n, is_dir, _ in entries:
            if not is_dir and not n.lower().endswith(PAIR_SET):
                skipped.add('files outside class folders', os.path.join(top, n))
        if not names[split]:
            raise DataError('%s holds no class folders' % top)
    classes = sorted({nfc(n) for split in tops for n in names[split]})
    ids = {c: i for i, c in enumerate(classes)}
    splits = dict.fromkeys(SPLITS)
    for split, top in tops.items():
        paths, labels = [], []
        for c in names[split]:
            files = _images(os.path.join(top, c), skipped)
            listing += ['%s/%s/%s\t%d' % (split, c, name, size) for name, size in files]
            paths += [os.path.join(top, c, name) for name, _ in files]
            labels.append(np.full(len(files), ids[nfc(c)], np.int32))
        splits[split] = Split(split, 'folder', paths, np.concatenate(labels), top, None)
    return Listing(classes, list(range(len(classes))), splits, skipped, [], digest('\n'.join(listing)))


def _images(folder, skipped):
    """[(name, size)] of the images a class folder holds; what else it holds is skipped."""
    files = []
    for name, is_dir, size in _entries(folder, skipped):
        if is_dir:
            skipped.add('folders inside class folders', os.path.join(folder, name))
        elif not name.lower().endswith(IMAGE_EXTENSIONS):
            skipped.add('not images (%s)' % (os.path.splitext(name)[1].lower() or 'no extension'),
                        os.path.join(folder, name))
        else:
            files.append((name, size))
    if not files:
        raise DataError('class folder %s holds no images (%s, ...)' % (folder, ', '.join(IMAGE_EXTENSIONS[:4])))
    return files


def _entries(folder, skipped):
    """(name, is a folder, size) of what ``folder`` holds, less what is skipped (counted in ``skipped``)."""
    out = []
    try:
        with os.scandir(folder) as found:
            for e in sorted(found, key=lambda e: e.name):
                if e.name.startswith('.'):
                    skipped.add('hidden files (.*)', e.path)
                elif e.name == '__MACOSX':
                    skipped.add('__MACOSX folders', e.path)
                elif e.is_dir():
                    out.append((e.name, True, 0))
                elif e.is_file():
                    out.append((e.name, False, e.stat().st_size))
                else:
                    skipped.add('broken links' if e.is_symlink() else 'special files', e.path)
    except OSError as e:
        raise DataError('cannot read the folder %s (%s)' % (folder, e.strerror or e))
    return out


def holds_class_folders(root, look=5):
    """Whether ``root`` holds class folders of images at its top (one of its first ``look`` folders does)."""
    try:
        names = sorted(n for n in os.listdir(root) if not n.startswith('.') and n != '__MACOSX')
    except OSError:
        return False
    for name in [n for n in names if os.path.isdir(os.path.join(root, n))][:look]:
        try:
            if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in os.listdir(os.path.join(root, name))):
                return True
        except OSError:
            continue
    return False
