"""What a listing of images on disk is made of, shared by image folders and RecordIO: the two splits,
the extensions read as images, a split's list of images (``Split``), and how names, lists and
fingerprints are written."""
import collections
import hashlib
import os
import unicodedata

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.jpe', '.jfif', '.bmp', '.dib', '.gif', '.tif', '.tiff', '.webp',
                    '.pbm', '.pgm', '.ppm', '.pnm', '.tga', '.jp2', '.j2k', '.pcx', '.sgi', '.rgb', '.ras', '.qoi',
                    '.apng')
SPLITS = ('train', 'test')

Split = collections.namedtuple('Split', 'name kind items labels path keys')
# items: image paths (folder) or record offsets in the .rec (recordio); labels: int32 dense class ids;
# keys: the records' keys in the .idx (recordio), for naming one

# What a folder or a .rec was found to hold: class names, the labels they carry in the files, the splits
# ({'train': Split, 'test': Split or None}), what was skipped (Skipped), notes, and a fingerprint.
Listing = collections.namedtuple('Listing', 'classes ids splits skipped notes fingerprint')


class Skipped(collections.Counter):
    """What a listing of ``root`` left out: a count of each kind, and the first few of each named (their
    paths within ``root``)."""
    SHOWN = 3

    def __init__(self, root=None):
        super(Skipped, self).__init__()
        self.root, self.examples = root, collections.defaultdict(list)

    def add(self, kind, path):
        self[kind] += 1
        if len(self.examples[kind]) < self.SHOWN:
            self.examples[kind].append(os.path.relpath(path, self.root) if self.root else path)

    def line(self):
        """One line on what was left out, the commonest kind first, each with its first few; or None."""
        if not self:
            return None
        return 'skipped %d: %s' % (sum(self.values()), '; '.join(
            '%d %s (%s%s)' % (n, kind, ', '.join(self.examples[kind]), ', ...' if n > len(self.examples[kind]) else '')
            for kind, n in sorted(self.items(), key=lambda kv: -kv[1])))


def nfc(name):
    return unicodedata.normalize('NFC', name)


def digest(text):
    return hashlib.sha256(text.encode('utf-8', 'surrogateescape')).hexdigest()[:16]


def few(values, most=6):
    shown = ','.join(str(v) for v in values[:most])
    return shown + (',...' if len(values) > most else '')
