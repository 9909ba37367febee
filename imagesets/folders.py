"""Image folders: ``DIR/train/<class>/*`` and ``DIR/test/<class>/*`` listed, what is not an image of a
class skipped and counted (hidden files, the ``._*`` files a Mac writes, ``__MACOSX`` folders, other
files, broken links), class names taken however their letters are composed."""
import collections
import os

import numpy as np

from faults.errors import DataError
from imagesets.listed import IMAGE_EXTENSIONS, SPLITS, Listing, Split, digest, nfc


def _entries(folder, skipped):
    """(name, is a folder, size) of what ``folder`` holds, less what is skipped (counted in ``skipped``)."""
    out = []
    try:
        with os.scandir(folder) as found:
            for e in sorted(found, key=lambda e: e.name):
                if e.name.startswith('.'):
                    skipped['hidden files (.*)'] += 1
                elif e.name == '__MACOSX':
                    skipped['__MACOSX folders'] += 1
                elif e.is_dir():
                    out.append((e.name, True, 0))
                elif e.is_file():
                    out.append((e.name, False, e.stat().st_size))
                else:
                    skipped['broken links' if e.is_symlink() else 'special files'] += 1
    except OSError as e:
        raise DataError('cannot read the folder %s (%s)' % (folder, e.strerror or e))
    return out


def open_folder(root):
    missing = [s for s in SPLITS if not os.path.isdir(os.path.join(root, s))]
    if missing:
        raise DataError('%s has no %s/ folder beside its %s/: images are read as train/<class>/* and '
                          'test/<class>/*' % (root, missing[0], [s for s in SPLITS if s not in missing][0]))
    skipped, names, listing = collections.Counter(), {}, []
    for split in SPLITS:
        top = os.path.join(root, split)
        entries = _entries(top, skipped)
        names[split] = [n for n, is_dir, _ in entries if is_dir]
        skipped['files outside class folders'] += sum(1 for _, is_dir, _ in entries if not is_dir)
        if not names[split]:
            raise DataError('%s holds no class folders' % top)
    # a class is its name however its letters are composed (a Mac writes 'é' as e + accent, most others as one)
    classes = sorted({nfc(n) for split in SPLITS for n in names[split]})
    ids = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split in SPLITS:
        paths, labels = [], []
        for c in names[split]:
            folder = os.path.join(root, split, c)
            files = []
            for name, is_dir, size in _entries(folder, skipped):
                if is_dir:
                    skipped['folders inside class folders'] += 1
                elif not name.lower().endswith(IMAGE_EXTENSIONS):
                    skipped['not images (%s)' % (os.path.splitext(name)[1].lower() or 'no extension')] += 1
                else:
                    files.append(name)
                    listing.append('%s/%s/%s\t%d' % (split, c, name, size))
            if not files:
                raise DataError('class folder %s holds no images (%s, ...)'
                                  % (folder, ', '.join(IMAGE_EXTENSIONS[:4])))
            paths += [os.path.join(folder, f) for f in files]
            labels += [ids[nfc(c)]] * len(files)
        splits[split] = Split(split, 'folder', paths, np.array(labels, np.int64), os.path.join(root, split), None)
    skipped = collections.Counter({k: v for k, v in skipped.items() if v})
    return Listing(classes, list(range(len(classes))), splits, skipped, [], digest('\n'.join(listing)))


