"""A many-class open-set image set made offline, in the spirit of Omniglot (1,623 characters, each drawn by
20 people): a character is a class, each typeface and style that draws it an "individual" writer, and seeded
distortions (affine, stroke width, blur, noise) the variation photographs give faces. Thousands of classes,
a few dozen images each, most never seen in training: the regime center loss was made for.

The typefaces are the 16 text faces matplotlib ships (DejaVu Sans, Serif and Sans Mono, STIX General, four
styles each), rendered by its own FreeType build (the same pixels on every machine with the same
matplotlib); the characters, the letters, digits, punctuation and symbols at least MIN_FACES of them draw.

Look-alikes are dropped by two rules. Twins: each character is rendered plain (no distortion) in each face,
and one whose renders correlate at TWIN (0.96) or more, on average over the faces that draw both, with those
of a character of a lower code point is dropped (Cyrillic А, 0.97, and Greek Α, 0.998, under Latin A; À
under A is 0.94, a class of its own). Confusables: of the groups in CONFUSABLE, which these faces draw
apart but a reader confuses (l, I and 1 correlate at 0.68 to 0.83, O and 0 at 0.59), the first is kept.
Then a seeded third of the characters is kept out of training ("unseen").

    build(out, seed): out/train/<U+XXXX>/*.png, out/test/<U+XXXX>/*.png (the unseen classes in test/ alone,
    so that a run holds them out), out/pairs.txt (LFW's format, over the unseen classes), out/glyphs.json
"""
import functools
import hashlib
import io
import json
import os
import unicodedata

import numpy as np

from imagesets.pairs import lfw_pairs

FACES = ['DejaVuSans.ttf', 'DejaVuSans-Bold.ttf', 'DejaVuSans-Oblique.ttf', 'DejaVuSans-BoldOblique.ttf',
         'DejaVuSerif.ttf', 'DejaVuSerif-Bold.ttf', 'DejaVuSerif-Italic.ttf', 'DejaVuSerif-BoldItalic.ttf',
         'DejaVuSansMono.ttf', 'DejaVuSansMono-Bold.ttf', 'DejaVuSansMono-Oblique.ttf',
         'DejaVuSansMono-BoldOblique.ttf', 'STIXGeneral.ttf', 'STIXGeneralBol.ttf', 'STIXGeneralItalic.ttf',
         'STIXGeneralBolIta.ttf']
SIZE = 32          # the images' side
EM = 22            # the font size in pixels: capitals about 16 pixels tall, descenders inside the image
BASELINE = 24      # the row the baseline falls on
MIN_FACES = 8      # a character is a class when at least this many faces draw it
TWIN = 0.96        # plain renders correlating at this or more: look-alikes (the later code point dropped)
CONFUSABLE = ('Il1|', 'O0')  # of each, the first kept
PER_CLASS = 32     # images a class: the faces that draw it in turn, each image distorted anew
TEST_SHARE = 0.25  # of each trained class's images, held out for testing
UNSEEN = 1 / 3.0   # of the classes, never trained on
CATEGORIES = ('L', 'N', 'P', 'S')  # letters, numbers, punctuation, symbols (no marks, spaces, controls)


def face_paths():
    import matplotlib
    folder = os.path.join(matplotlib.get_data_path(), 'fonts', 'ttf')
    return [os.path.join(folder, name) for name in FACES]


class Face(object):
    """A typeface at EM pixels, rendering one character at a time on a SIZE x SIZE canvas."""

    def __init__(self, path):
        from matplotlib.ft2font import FT2Font
        self.font = FT2Font(path)
        self.font.set_size(EM, 72)  # 72 dpi: a point is a pixel
        self.codes = set(self.font.get_charmap())

    def render(self, code):
        """float32 (SIZE, SIZE) in [0, 1], the character centred on the baseline; None where the face draws
        nothing for it (no glyph, or one with no ink)."""
        if code not in self.codes:
            return None
        font = self.font
        font.clear()
        font.set_text(chr(code), 0.0)
        font.draw_glyphs_to_bitmap(antialiased=True)
        ink = np.asarray(font.get_image(), np.float32) / 255.0
        if not ink.size or ink.max() <= 0:
            return None
        height, descent = font.get_width_height()[1] / 64.0, font.get_descent() / 64.0
        top = int(round(BASELINE - (height - descent)))
        ink = ink[max(0, -top):, :]
        top = max(0, top)
        if ink.shape[1] > SIZE:  # wider than the canvas: its middle
            cut = (ink.shape[1] - SIZE) // 2
            ink = ink[:, cut:cut + SIZE]
        left = (SIZE - ink.shape[1]) // 2
        canvas = np.zeros((SIZE, SIZE), np.float32)
        rows = min(ink.shape[0], SIZE - top)
        canvas[top:top + rows, left:left + ink.shape[1]] = ink[:rows]
        return canvas if canvas.max() > 0 else None


def characters(faces):
    """{code: [indices of the faces that draw it]} of the letters, digits, punctuation and symbols at least
    MIN_FACES faces draw, in code point order."""
    codes = sorted(set().union(*(f.codes for f in faces)))
    found = {}
    for code in codes:
        if code < 0x21 or 0xD800 <= code < 0xE000 or code >= 0xF0000 or \
                unicodedata.category(chr(code))[0] not in CATEGORIES:
            continue
        drawn = [k for k, f in enumerate(faces) if code in f.codes]
        if len(drawn) >= MIN_FACES:
            found[code] = drawn
    return found


def plain_renders(faces, found):
    """{code: {face index: plain render}} of the characters each face draws with ink."""
    renders = {}
    for code, drawn in found.items():
        per = {k: faces[k].render(code) for k in drawn}
        per = {k: r for k, r in per.items() if r is not None}
        if len(per) >= MIN_FACES:
            renders[code] = per
    return renders


def drop_twins(renders, faces_count):
    """[codes kept]: in code point order, a character whose plain renders correlate at TWIN or more with a
    kept one's, on average over the faces that draw both, is dropped; {dropped: the code it looks like}."""
    codes = sorted(renders)
    index = {c: i for i, c in enumerate(codes)}
    corr = np.zeros((len(codes), len(codes)))
    shared = np.zeros((len(codes), len(codes)))
    for k in range(faces_count):
        have = [c for c in codes if k in renders[c]]
        rows = np.array([index[c] for c in have])
        m = np.stack([renders[c][k].ravel() for c in have]).astype(np.float64)
        m -= m.mean(axis=1, keepdims=True)
        m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
        corr[np.ix_(rows, rows)] += m @ m.T
        shared[np.ix_(rows, rows)] += 1
    mean = corr / np.maximum(shared, 1)
    kept, twins = [], {}
    for i, code in enumerate(codes):
        alike = [j for j in kept if shared[i, j] and mean[i, j] >= TWIN]
        if alike:
            twins[code] = codes[alike[0]]
        else:
            kept.append(i)
    kept = [codes[i] for i in kept]
    for group in CONFUSABLE:
        for other in group[1:]:
            if ord(other) in kept and ord(group[0]) in kept:
                kept.remove(ord(other))
                twins[ord(other)] = ord(group[0])
    for code in twins:  # the twin of a confusable dropped: the character kept in its stead
        while twins[code] in twins:
            twins[code] = twins[twins[code]]
    return kept, twins


def distort(image, rng):
    """One seeded variation of a plain render: an affine map (rotation up to 10 degrees, scale 0.85 to 1.1,
    shear up to 0.2, shift up to 2 pixels), a stroke thickened or thinned by a pixel (or kept), a blur, and
    noise; uint8."""
    from scipy import ndimage
    angle, scale = rng.uniform(-np.pi / 18, np.pi / 18), rng.uniform(0.85, 1.1)
    shear, shift = rng.uniform(-0.2, 0.2), rng.uniform(-2, 2, 2)
    c, s = np.cos(angle), np.sin(angle)
    matrix = np.array([[c, -s], [s, c]]) @ np.array([[1, shear], [0, 1]]) / scale
    centre = np.array([SIZE / 2.0, SIZE / 2.0])
    out = ndimage.affine_transform(image, matrix, offset=centre - matrix @ centre - shift, order=1)
    stroke = rng.randint(-1, 2)
    if stroke > 0:
        out = ndimage.grey_dilation(out, size=(2, 2))
    elif stroke < 0:
        out = ndimage.grey_erosion(out, size=(2, 2))
    out = ndimage.gaussian_filter(out, rng.uniform(0, 0.8))
    out = out * 255 + rng.normal(0, rng.uniform(0, 12), out.shape)
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def png(pixels):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format='PNG', optimize=False)
    return buf.getvalue()


@functools.lru_cache(maxsize=1)
def classes():
    """(the plain renders {code: {face: image}}, the codes kept as classes, {code dropped: its look-alike}):
    the same for every seed, computed once in a process."""
    faces = [Face(p) for p in face_paths()]
    renders = plain_renders(faces, characters(faces))
    kept, twins = drop_twins(renders, len(faces))
    return renders, kept, twins


def build(out, seed=0, limit=None):
    """Build the set in ``out`` (``limit``: the first N characters only, for a quick look); returns its
    description (classes, images, fingerprint: the SHA-256 of every file written, in order)."""
    renders, kept, twins = classes()
    if limit:
        kept = kept[:limit]
    rng = np.random.RandomState(seed)
    unseen = set(np.array(kept)[rng.permutation(len(kept))[:int(round(len(kept) * UNSEEN))]].tolist())
    digest, counts = hashlib.sha256(), {}
    for code in kept:
        name, drawn = 'U+%04X' % code, sorted(renders[code])
        writers = np.random.RandomState([seed, code])
        test = set(writers.permutation(PER_CLASS)[:int(round(PER_CLASS * TEST_SHARE))].tolist())
        counts[name] = 0
        for i in range(PER_CLASS):
            face = drawn[i % len(drawn)]
            split = 'test' if code in unseen or i in test else 'train'
            folder = os.path.join(out, split, name)
            os.makedirs(folder, exist_ok=True)
            blob = png(distort(renders[code][face], writers))
            digest.update(blob)
            with open(os.path.join(folder, '%02d-%s.png' % (i, FACES[face][:-4])), 'wb') as f:
                f.write(blob)
            if code in unseen:
                counts[name] += 1
    pairs = lfw_pairs({n: c for n, c in counts.items() if c}, np.random.RandomState([seed, 1]))
    digest.update(pairs.encode())
    with open(os.path.join(out, 'pairs.txt'), 'w') as f:
        f.write(pairs)
    about = dict(seed=seed, classes=len(kept), trained=len(kept) - len(unseen), unseen=len(unseen),
                 images_per_class=PER_CLASS, size=SIZE, twins_dropped=len(twins), fingerprint=digest.hexdigest(),
                 faces=FACES, names={'U+%04X' % c: unicodedata.name(chr(c), '?') for c in kept})
    with open(os.path.join(out, 'glyphs.json'), 'w') as f:
        json.dump(about, f, indent=1)
    return about
