"""Images decoded: an image's bytes read (a file, or a record's payload from a .rec kept open), its size
and colour read from its header, and its pixels decoded by Pillow, or by MXNet's own decoder (its
built-in OpenCV) for what Pillow does not read, brought to the run's size. Pillow first: decoding
image by image through MXNet costs a trip through its engine for each image, a third of the rate of
MXNet's own ImageRecordIter, where Pillow alone keeps up with it (bench/scale.py --decode)."""
import collections
import io
import os

import numpy as np

from faults.errors import DataError
from imagesets.recordio import payload

try:
    import simplejpeg  # libjpeg-turbo's decoder (requirements.txt); without it, Pillow decodes JPEGs too
except ImportError:
    simplejpeg = None

SIZE_SAMPLE = 500  # training images whose sizes and colours decide the run's
JPEG = b'\xff\xd8'  # the first bytes of a JPEG
_OPEN = {}  # (process, .rec) -> its file: each process (a decoding worker) opens a .rec once and keeps it


def read_bytes(split, i):
    """The encoded image ``i`` of ``split``: a file's bytes, or a record's payload."""
    try:
        if split.kind == 'folder':
            with open(split.items[i], 'rb') as f:
                return f.read()
        return payload(_rec_file(split.path), int(split.items[i]), item_name(split, i))
    except OSError as e:
        raise DataError('cannot read %s (%s)' % (item_name(split, i), e.strerror or e))


def _rec_file(path):
    """``path`` opened in this process (a forked worker opens its own: a file shared across processes
    would share its position)."""
    key = (os.getpid(), path)
    f = _OPEN.get(key)
    if f is None:
        for other in [k for k in _OPEN if k[0] != key[0]]:  # a parent's, inherited by a fork: not this one's
            del _OPEN[other]
        f = _OPEN[key] = open(path, 'rb')
    return f


def item_name(split, i):
    """How an error names image ``i``: its path, or the .rec and the record's key."""
    if split.kind == 'folder':
        return split.items[i]
    return '%s record %d' % (split.path, split.keys[i])


def common_shape(split, sample=SIZE_SAMPLE, seed=0):
    """(channels, (height, width)) of most of ``split``'s images, from a seeded sample of them: one
    large image among small ones is resized to theirs rather than sizing the network."""
    n = len(split.labels)
    picked = np.arange(n) if n <= sample else np.sort(np.random.RandomState(seed).choice(n, sample, replace=False))
    shapes = [shape_of(read_bytes(split, int(i)), item_name(split, int(i))) for i in picked]
    sizes = collections.Counter(size for _, size in shapes)
    colour = sum(1 for channels, _ in shapes if channels == 3)
    return (3 if colour * 2 > len(shapes) else 1), sizes.most_common(1)[0][0]


def shape_of(blob, name):
    """(channels, (height, width)) of an encoded image: grey stays grey, anything else is colour."""
    from PIL import Image
    try:
        with Image.open(io.BytesIO(blob)) as im:
            grey = im.mode in ('1', 'L', 'LA', 'I;16', 'I;16B', 'I', 'F') or (im.mode == 'P' and _grey_palette(im))
            return (1 if grey else 3), (im.height, im.width)
    except Exception:  # what Pillow does not read, MXNet's OpenCV may: as colour (its flag has no "as it is")
        img = _mx_decode(blob, 1, name).asnumpy()
        return (1 if (img == img[:, :, :1]).all() else 3), img.shape[:2]


def _grey_palette(im):
    palette = np.array(im.getpalette() or [0, 0, 1], np.int64)[:768].reshape(-1, 3)
    return bool((palette == palette[:, :1]).all())


def _mx_decode(blob, flag, name):
    import mxnet as mx
    try:
        img = mx.image.imdecode(blob, flag=flag, to_rgb=True)
        img.wait_to_read()  # MXNet decodes asynchronously: its error comes with the result
        return img
    except Exception as e:
        raise DataError('%s cannot be decoded as an image (%s)' % (name, decode_reason(str(e))))


def decode_reason(said):
    """What MXNet's decoding error says, in a user's words. Its last line is "MXNetError: Check failed:
    !res.empty(): Decoding failed. Invalid image file."; a header whose width and height are garbage makes
    the decoder ask for memory it cannot have ("Failed to allocate CPU Memory"), which is no memory problem."""
    last = ([line for line in said.strip().splitlines() if line.strip()] or ['?'])[-1]
    if 'allocate' in last:
        return 'a broken header: its size is not one an image has'
    return last.split('Check failed:')[-1].split('): ', 1)[-1].replace('MXNetError: ', '').strip()


def decode(blob, channels, size, name):
    """An encoded image as uint8 (channels, height, width) at ``size`` (height, width): a JPEG by
    libjpeg-turbo through simplejpeg (twice Pillow's rate, the same pixels), anything else, or a JPEG it
    cannot read, by Pillow (by MXNet for what Pillow does not recognise); DataError naming the image and,
    in plain words, why none can. Shrunk by averaging (Pillow's box filter, as OpenCV's area
    interpolation), enlarged bicubically."""
    from PIL import Image, UnidentifiedImageError
    if not blob:
        raise DataError('%s is empty (0 bytes): no image' % name)
    if simplejpeg is not None and blob[:2] == JPEG:
        pixels = _jpeg(blob, channels, size)
        if pixels is not None:
            return pixels
    try:
        with Image.open(io.BytesIO(blob)) as im:
            im = im.convert('RGB' if channels == 3 else 'L')
            if (im.height, im.width) != tuple(size):
                shrink = im.height * im.width > size[0] * size[1]
                im = im.resize((size[1], size[0]), Image.BOX if shrink else Image.BICUBIC)
            pixels = np.asarray(im, np.uint8)
    except UnidentifiedImageError:  # a format Pillow does not know: MXNet's OpenCV may
        return _mx_decoded(blob, channels, size, name)
    except (OSError, ValueError, SyntaxError) as e:  # Pillow knows the format, and the file is broken
        raise DataError('%s cannot be decoded as an image (%s)' % (name, _pillow_reason(e)))
    return np.ascontiguousarray(pixels.reshape(size[0], size[1], channels).transpose(2, 0, 1))


def _jpeg(blob, channels, size):
    """A JPEG's pixels (channels, height, width) at ``size`` by simplejpeg, or None where it cannot."""
    from PIL import Image
    try:
        pixels = simplejpeg.decode_jpeg(blob, colorspace='RGB' if channels == 3 else 'GRAY')
    except ValueError:  # broken, or a kind libjpeg-turbo does not do here (CMYK): Pillow says what
        return None
    if pixels.shape[:2] != tuple(size):
        im = Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels)
        shrink = im.height * im.width > size[0] * size[1]
        pixels = np.asarray(im.resize((size[1], size[0]), Image.BOX if shrink else Image.BICUBIC))
    return np.ascontiguousarray(pixels.reshape(size[0], size[1], channels).transpose(2, 0, 1))


def _pillow_reason(error):
    said = str(error).strip() or type(error).__name__
    if 'truncated' in said:
        return 'the file is cut short'
    return said


def _mx_decoded(blob, channels, size, name):
    import mxnet as mx
    img = _mx_decode(blob, 1 if channels == 3 else 0, name)
    if img.shape[0] != size[0] or img.shape[1] != size[1]:
        # area interpolation when shrinking, cubic when enlarging
        interp = 3 if img.shape[0] * img.shape[1] > size[0] * size[1] else 2
        img = mx.image.imresize(img, size[1], size[0], interp=interp)
    return np.ascontiguousarray(img.asnumpy().reshape(size[0], size[1], channels).transpose(2, 0, 1))
