"""What a listing of images on disk is made of, shared by image folders and RecordIO: the two splits,
the extensions read as images, a split's list of images (``Split``), and how names, lists and
fingerprints are written."""
import collections
import hashlib
import unicodedata

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.jpe', '.jfif', '.bmp', '.dib', '.gif', '.tif', '.tiff', '.webp',
                    '.pbm', '.pgm', '.ppm', '.pnm', '.tga', '.jp2', '.j2k', '.pcx', '.sgi', '.rgb', '.ras', '.qoi',
                    '.apng')
SPLITS = ('train', 'test')

Split = collections.namedtuple('Split', 'name kind items labels path keys')
# items: image paths (folder) or record offsets in the .rec (recordio); labels: int64 dense class ids;
# keys: the records' keys in the .idx (recordio), for naming one

# What a folder or a .rec was found to hold: class names, the labels they carry in the files, the splits
# ({'train': Split, 'test': Split or None}), what was skipped (a Counter), notes, and a fingerprint.
Listing = collections.namedtuple('Listing', 'classes ids splits skipped notes fingerprint')


def nfc(name):
    return unicodedata.normalize('NFC', name)


def digest(text):
    return hashlib.sha256(text.encode('utf-8', 'surrogateescape')).hexdigest()[:16]


def few(values, most=6):
    shown = ','.join(str(v) for v in values[:most])
    return shown + (',...' if len(values) > most else '')
