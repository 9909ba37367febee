"""imagesets/ (sources, recordio, folders, decode, pairs) on the data people have: RecordIO as im2rec and
insightface write it, labels with gaps, records cut short, folders made on a Mac, images of several formats and sizes, pair lists in
other encodings. Each is read as it is or refused in one line naming the file."""
import io
import os
import pickle
import re
import struct

import numpy as np
import pytest

from imagesets import pairs
from faults.errors import DataError
from imagesets import decode, recordio, sources
from helpers import digits, png, write_folder


def encoded(img, fmt):
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt)
    return buf.getvalue()


def write_records(root, split, records, index=True):
    """A .rec (and .idx) of ``records``: [(key, flag, label(s), payload bytes)], written as MXNet does."""
    import mxnet as mx
    os.makedirs(root, exist_ok=True)
    rec = mx.recordio.MXIndexedRecordIO(os.path.join(root, split + '.idx'), os.path.join(root, split + '.rec'), 'w')
    for key, flag, label, payload in records:
        rec.write_idx(key, mx.recordio.pack(mx.recordio.IRHeader(flag, label, key, 0), payload))
    rec.close()
    if not index:
        os.remove(os.path.join(root, split + '.idx'))
    return root


def image_records(imgs, labels, start=0, pack=None):
    """Records of images: a number label, or with ``pack`` extra labels an array (im2rec --pack-label)."""
    out = []
    for i, (img, label) in enumerate(zip(imgs, labels)):
        value = float(label) if pack is None else [float(label)] + [float(v) for v in pack]
        out.append((start + i, 0, value, png(img)))
    return out


def test_im2rec_pack_label_records_are_images_and_the_class_is_the_first_label(tmp_path):
    imgs, labels = digits(20, 0)
    root = str(tmp_path / 'r')
    # record 0 is an ordinary image whose header carries an array: not insightface's header record
    write_records(root, 'train', image_records(imgs, labels, pack=(0.25, 0.5, 0.75)))
    write_records(root, 'test', image_records(imgs[:6], labels[:6], pack=(0.25, 0.5, 0.75)))
    src = sources.open_source(root)
    assert len(src.splits['train'].labels) == 20 and list(src.splits['train'].labels) == list(labels)
    assert any('--pack-label' in n and 'the first' in n for n in src.notes)
    assert src.classes == ['class 0', 'class 1', 'class 2']
    np.testing.assert_array_equal(decode.decode(decode.read_bytes(src.splits['train'], 0), 1, (16, 16), 'x')[0],
                                  imgs[0])


def test_insightface_header_record_only_when_it_is_one(tmp_path):
    imgs, labels = digits(12, 1)
    root = str(tmp_path / 'r')
    header = [(0, 2, [13.0, 16.0], b'')]  # images are records 1..12, then identity records 13..15
    identities = [(13 + k, 2, [1.0 + 4 * k, 5.0 + 4 * k], b'') for k in range(3)]
    write_records(root, 'train', header + image_records(imgs, labels, start=1) + identities)
    write_records(root, 'test', header[:0] + image_records(imgs[:4], labels[:4]))
    src = sources.open_source(root)
    assert len(src.splits['train'].labels) == 12 and len(src.splits['test'].labels) == 4
    assert any("insightface's layout" in n for n in src.notes)
    bad = str(tmp_path / 'bad')
    write_records(bad, 'train', [(0, 2, [40.0, 41.0], b'')] + image_records(imgs, labels, start=1))
    write_records(bad, 'test', image_records(imgs[:4], labels[:4]))
    with pytest.raises(DataError, match='record 0 holds no image.*records 1 to 39.*lists 12'):
        sources.open_source(bad)


def test_labels_with_gaps_become_dense_classes_named_by_their_label(tmp_path):
    imgs, labels = digits(30, 2)
    sparse = labels * 3 + 2  # 2, 5, 8
    root = str(tmp_path / 'r')
    write_records(root, 'train', image_records(imgs, sparse))
    write_records(root, 'test', image_records(imgs[:9], np.r_[sparse[:8], 11]))  # 11: a class never trained
    src = sources.open_source(root)
    assert src.classes == ['class 2', 'class 5', 'class 8', 'class 11'] and src.ids == [2, 5, 8, 11]
    assert list(src.splits['train'].labels) == list(labels) and src.splits['test'].labels[-1] == 3
    assert any('labels 2,5,8,11 mapped to classes 0..3' in n for n in src.notes)


@pytest.mark.parametrize('split', ['train', 'test'])
def test_a_record_cut_short_is_named_before_anything_trains(tmp_path, split):
    imgs, labels = digits(10, 3)
    root = str(tmp_path / 'r')
    write_records(root, 'train', image_records(imgs, labels))
    write_records(root, 'test', image_records(imgs[:5], labels[:5]))
    path = os.path.join(root, split + '.rec')
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(size - 30)
    key = 9 if split == 'train' else 4
    with pytest.raises(DataError, match=r'%s\.rec is cut short: record %d' % (split, key)):
        sources.open_source(root)


def test_a_record_without_an_image_or_undecodable_is_named(tmp_path):
    imgs, labels = digits(6, 4)
    root = str(tmp_path / 'r')
    write_records(root, 'train', image_records(imgs, labels) + [(6, 0, 1.0, b'')])
    write_records(root, 'test', image_records(imgs[:3], labels[:3]))
    with pytest.raises(DataError, match='train.rec: record 6 holds no image'):
        sources.open_source(root)
    write_records(root, 'train', image_records(imgs, labels) + [(6, 0, 1.0, b'garbage bytes, no image')])
    undecodable = r'train.rec record 6 cannot be decoded as an image \(Decoding failed\. Invalid image file\.\)$'
    with pytest.raises(DataError, match=undecodable):
        sources.open_source(root)  # the sample that sets the size decodes every record of a small set


def test_a_mac_folder_is_read_and_what_is_skipped_is_counted(tmp_path):
    root = write_folder(str(tmp_path / 'd'), {'train': digits(12, 0), 'test': digits(6, 1)})
    for split in ('train', 'test'):
        for c in ('a', 'b'):
            (tmp_path / 'd' / split / c / '._0000.png').write_bytes(b'\x00\x05\x16\x07 AppleDouble')
        (tmp_path / 'd' / split / '.DS_Store').write_bytes(b'\x00\x00\x00\x01Bud1')
    os.makedirs(os.path.join(root, 'train', '__MACOSX', 'a'))
    (tmp_path / 'd' / 'train' / 'a' / 'notes.txt').write_text('labels by hand')
    os.symlink(str(tmp_path / 'gone'), os.path.join(root, 'train', 'zebra'))   # a class behind a broken link
    os.symlink(str(tmp_path / 'gone.png'), os.path.join(root, 'train', 'b', 'x.png'))
    src = sources.open_source(root)
    assert src.classes == ['a', 'b', 'c'] and len(src.splits['train'].labels) == 12
    line = src.skipped.line()
    assert line.startswith('skipped 10: ') and '6 hidden files (.*) (' in line and '1 __MACOSX folders' in line
    assert '2 broken links' in line and '1 not images (.txt) (train/a/notes.txt)' in line
    # the first few of each kind named (within the folder), then that there are more
    assert '6 hidden files (.*) (train/.DS_Store, test/.DS_Store, train/a/._0000.png, ...)' in line


def test_every_format_mxnet_or_pillow_decodes_is_used(tmp_path):
    imgs, labels = digits(8, 5)
    root = tmp_path / 'd'
    for split in ('train', 'test'):
        for i, (img, label) in enumerate(zip(imgs, labels)):
            folder = root / split / 'abc'[label]
            folder.mkdir(parents=True, exist_ok=True)
            fmt, ext = [('PNG', 'png'), ('GIF', 'gif'), ('TIFF', 'tif'), ('BMP', 'bmp')][i % 4]
            (folder / ('%d.%s' % (i, ext))).write_bytes(encoded(img, fmt))
    src = sources.open_source(str(root))
    assert len(src.splits['train'].labels) == 8 and not src.skipped
    for i in range(8):
        split = src.splits['train']
        got = decode.decode(decode.read_bytes(split, i), 1, (16, 16), decode.item_name(split, i))
        original = imgs[int(os.path.basename(split.items[i]).split('.')[0])]
        np.testing.assert_array_equal(got[0], original)  # lossless formats: exactly the pixels


def test_the_size_is_the_most_common_one_and_a_huge_image_is_resized(tmp_path):
    imgs, labels = digits(30, 6)
    root = write_folder(str(tmp_path / 'd'), {'train': (imgs, labels), 'test': digits(6, 1)})
    big = np.random.RandomState(0).randint(0, 255, (1500, 1500), np.uint8)
    (tmp_path / 'd' / 'train' / 'a' / 'zzz-big.png').write_bytes(png(big))
    src = sources.open_source(root)
    assert src.size == (16, 16) and src.channels == 1
    split = src.splits['train']
    i = split.items.index(os.path.join(root, 'train', 'a', 'zzz-big.png'))
    assert decode.decode(decode.read_bytes(split, i), 1, src.size, 'big').shape == (1, 16, 16)


def test_grey_or_colour_as_most_images_are(tmp_path):
    imgs, labels = digits(20, 7, colour=True)
    root = write_folder(str(tmp_path / 'd'), {'train': (imgs, labels), 'test': digits(6, 1, colour=True)})
    (tmp_path / 'd' / 'train' / 'a' / 'grey.png').write_bytes(png(digits(1, 8)[0][0]))
    src = sources.open_source(root)
    assert src.channels == 3


# ----------------------------------------------------------------- pair lists

def test_pair_names_in_any_encoding(tmp_path):
    names = ['Zoë', 'José']
    folder = tmp_path / 'faces'
    for name in names:
        (folder / name).mkdir(parents=True)
        for k in range(2):
            (folder / name / ('%d.png' % k)).write_bytes(png(digits(1, k)[0][0]))
    lines = ['1 1', '%s 1 2' % names[0], '%s 1 %s 2' % (names[0], names[1])]
    for encoding in ('utf-8', 'latin-1', 'utf-16'):
        path = tmp_path / ('pairs-%s.txt' % encoding)
        path.write_bytes('\n'.join(lines).encode(encoding))
        listed = pairs.read_pairs(str(path), str(folder))
        assert listed.same.tolist() == [True, False] and len(listed.images) == 3, encoding


@pytest.mark.parametrize('head', ['10 0', '0 300', '0'])
def test_a_pair_list_announcing_no_pairs_is_one_line(tmp_path, head):
    path = tmp_path / 'pairs.txt'
    path.write_text(head + '\n')
    with pytest.raises(DataError, match='no pairs to verify'):
        pairs.read_pairs(str(path), str(tmp_path))


def test_a_bin_needs_no_folder(tmp_path):
    imgs, _ = digits(4, 0)
    path = tmp_path / 'v.bin'
    path.write_bytes(pickle.dumps(([png(i) for i in imgs], [True, False])))
    assert len(pairs.read_pairs(str(path), None).images) == 4
    (tmp_path / 'cut.bin').write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataError, match='cut.bin: not a readable pickle'):
        pairs.read_pairs(str(tmp_path / 'cut.bin'))


def test_an_index_that_is_not_one(tmp_path):
    imgs, labels = digits(4, 0)
    root = str(tmp_path / 'r')
    write_records(root, 'train', image_records(imgs, labels))
    write_records(root, 'test', image_records(imgs, labels))
    with open(os.path.join(root, 'test.idx'), 'wb') as f:
        f.write(b'\xff\xfe0\t0\n')
    with pytest.raises(DataError, match='test.idx is not an index'):
        sources.open_source(root)
    with open(os.path.join(root, 'test.idx'), 'w') as f:
        f.write('0\t7\n')
    with pytest.raises(DataError, match='no record at byte 7'):
        sources.open_source(root)
    assert struct.calcsize(recordio.IR_FORMAT) == recordio.IR_SIZE


def test_a_class_is_its_name_however_its_letters_are_composed(tmp_path):
    """A Mac writes 'é' as e + a combining accent (NFD), most systems as one letter (NFC): a class whose
    training folder came from one and whose test folder from the other is one class."""
    import unicodedata
    name = 'Chloé'
    root = tmp_path / 'd'
    for split, form in (('train', 'NFD'), ('test', 'NFC')):
        for k, other in enumerate(('Zoe', unicodedata.normalize(form, name))):
            folder = root / split / other
            folder.mkdir(parents=True)
            for i in range(3):
                (folder / ('%d.png' % i)).write_bytes(png(digits(1, i + k)[0][0]))
    src = sources.open_source(str(root))
    assert src.classes == [unicodedata.normalize('NFC', name), 'Zoe']
    assert sorted(set(src.splits['test'].labels)) == sorted(set(src.splits['train'].labels)) == [0, 1]


def test_what_pillow_does_not_read_is_measured_by_mxnet(monkeypatch):
    """An image only MXNet's OpenCV reads: its size and whether it is grey come from OpenCV's colour
    decoding (its decoder has no "as it is" flag), and bytes neither reads are named with OpenCV's reason."""
    from PIL import Image
    grey = np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)
    colour = np.stack([grey, grey[::-1], 255 - grey], axis=-1)

    def refuse(*_args, **_kwargs):
        raise OSError('cannot identify image file')
    monkeypatch.setattr(Image, 'open', refuse)
    assert decode.shape_of(encoded(grey, 'PNG'), 'g.png') == (1, (12, 20))
    assert decode.shape_of(encoded(colour, 'PNG'), 'c.png') == (3, (12, 20))
    with pytest.raises(DataError, match=r'^x\.png cannot be decoded as an image \(Decoding failed\. '
                                                  r'Invalid image file\.\)$'):
        decode.shape_of(b'not an image at all', 'x.png')
    # a header of garbage sizes makes MXNet's decoder ask for memory (whether it does depends on the bytes
    # that follow in memory): a broken image, not a memory problem
    said = 'Traceback (most recent call last):\n  File "../src/storage/./cpu_device_storage.h", line 72\n' \
           'MXNetError: Failed to allocate CPU Memory'
    assert decode.decode_reason(said) == 'a broken header: its size is not one an image has'


def test_images_in_another_layout_are_named_with_the_one_that_reads(tmp_path):
    """The train/ folder of a set named instead of the set, .rec files under other names: one line saying
    what to name, not the IDX files a folder of neither would lack. Class folders with no split are read."""
    from imagesets import dataset as data
    from runs import records
    from faults.errors import UserError
    flat = tmp_path / 'flat'
    for c in ('cat', 'dog'):
        (flat / c).mkdir(parents=True)
        (flat / c / '0.jpg').write_bytes(encoded(np.zeros((8, 8), np.uint8), 'JPEG'))
    (flat / '__MACOSX').mkdir()
    assert sources.layout_hint(str(flat)) is None and sources.kind_of(str(flat)) == 'folder'
    assert not sources.has_test_split(str(flat))
    assert data.settle(records.Data(data_dir=str(flat))).test_split == data.TEST_SPLIT
    laid = write_folder(str(tmp_path / 'laid'), {'train': digits(4, 0), 'test': digits(4, 1)})
    assert sources.layout_hint(os.path.join(laid, 'train')) == '%s is the train/ folder of %s: name that one' % (
        os.path.join(laid, 'train'), laid)
    with pytest.raises(UserError, match='^--data_dir: .* is the train/ folder of'):
        data.settle(records.Data(data_dir=os.path.join(laid, 'train')))
    with pytest.raises(UserError, match='--test_split: .* has a test split of its own'):
        data.settle(records.Data(data_dir=laid, test_split=0.2))
    recs = tmp_path / 'recs'
    recs.mkdir()
    (recs / 'faces.rec').write_bytes(b'')
    assert 'holds faces.rec but no train.rec' in sources.layout_hint(str(recs))
    other = tmp_path / 'other'
    (other / 'notes').mkdir(parents=True)
    (other / 'notes' / 'a.txt').write_text('no images')
    assert sources.layout_hint(str(other)) is None and sources.kind_of(str(other)) is None


def test_a_broken_image_is_said_in_plain_words_and_no_decoder_talks(capfd):
    """A PNG cut short and an empty file: the project's line says why, and no decoder prints its own
    (libpng's "libpng error: ..." on stderr, MXNet's "len > 0" check)."""
    whole = png(digits(1, 0)[0][0])
    for blob, said in ((whole[:len(whole) // 2], 'the file is cut short'), (b'', 'is empty (0 bytes)')):
        with pytest.raises(DataError, match=re.escape(said)):
            decode.decode(blob, 1, (16, 16), 'x.png')
    err = capfd.readouterr().err
    assert 'libpng' not in err and 'len > 0' not in err, err


def test_an_insightface_header_and_property_are_checked_against_the_records(tmp_path):
    """Identity records that the header's range runs past are refused; a property file that counts other
    classes than the identity records is said, and the labels found are the classes."""
    imgs, labels = digits(12, 1)
    header = [(0, 2, [13.0, 16.0], b'')]
    identities = [(13 + k, 2, [1.0 + 4 * k, 5.0 + 4 * k], b'') for k in range(3)]
    past = str(tmp_path / 'past')
    write_records(past, 'train', [(0, 2, [13.0, 18.0], b'')] + image_records(imgs, labels, start=1) + identities)
    with pytest.raises(DataError, match=r'record 0 gives identity records 13 to 17, and the .idx lists 3 of them '
                                        r'\(its last key: 15\): the files do not match'):
        sources.open_source(past)
    root = str(tmp_path / 'prop')
    write_records(root, 'train', header + image_records(imgs, labels, start=1) + identities)
    with open(os.path.join(root, 'property'), 'w') as f:
        f.write('12,16,16\n')
    src = sources.open_source(root)
    assert len(src.classes) == 3 and any('gives 12 classes, train.rec has 3 identity records and its images 3 labels'
                                         in n for n in src.notes), src.notes


BIN_IMAGES = [png(img) for img in digits(8, 5)[0]]
BIN_FLAGS = [True, False, True, False]


@pytest.mark.parametrize('images', ['bytes', 'bytearray', 'numpy'])
@pytest.mark.parametrize('flags', ['list', 'numpy', 'ints'])
@pytest.mark.parametrize('protocol', [2, 4])
def test_the_bin_variants_in_use_read_alike(tmp_path, images, flags, protocol):
    """insightface's .bin as its own script writes it (bytes, a list of bools) and as conversion scripts do
    (bytearrays, uint8 numpy arrays; a bool numpy array or 0/1), at Python 2's pickle protocol and 3's: the
    same pair list."""
    entries = {'bytes': BIN_IMAGES, 'bytearray': [bytearray(b) for b in BIN_IMAGES],
               'numpy': [np.frombuffer(b, np.uint8) for b in BIN_IMAGES]}[images]
    same = {'list': BIN_FLAGS, 'numpy': np.array(BIN_FLAGS), 'ints': [int(s) for s in BIN_FLAGS]}[flags]
    path = tmp_path / 'v.bin'
    path.write_bytes(pickle.dumps((entries, same), protocol=protocol))
    listed = pairs.read_bin(str(path))
    assert [blob for _, blob, _ in listed.images] == BIN_IMAGES and listed.same.tolist() == BIN_FLAGS
    assert listed.pairs.tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]


class Evil(object):
    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


@pytest.mark.parametrize('payload', [
    lambda marker: ([Evil(os.system, 'touch %s' % marker)], [True]),
    lambda marker: ([np.frombuffer(b'x', np.uint8), Evil(eval, '__import__("os").system("touch %s")' % marker)],
                    [True]),
    lambda marker: ([Evil(np.save, marker, np.zeros(1))], [True]),               # numpy, but no constructor
    lambda marker: ([Evil(np.core.multiarray._reconstruct, Evil(os.system, 'touch %s' % marker), (0,), b'b')],
                    [True])])                                                      # an allowed name, fed another
def test_a_crafted_bin_that_names_anything_else_runs_nothing(tmp_path, payload):
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.bin'
    path.write_bytes(pickle.dumps(payload(str(marker)), protocol=2))
    with pytest.raises(DataError, match='evil.bin: .*refused, nothing was run'):
        pairs.read_bin(str(path))
    assert not marker.exists() and not (tmp_path / 'ran.npy').exists()


def test_a_bin_of_other_things_is_refused_in_one_line(tmp_path):
    path = tmp_path / 'odd.bin'
    for payload in ((BIN_IMAGES, [True, 2, False, True]), ([np.zeros((2, 2), np.uint8)] * 2, [True]),
                    ([np.zeros(3, np.float32)] * 2, [True]), (BIN_IMAGES, np.array([[True]]))):
        path.write_bytes(pickle.dumps(payload, protocol=4))
        with pytest.raises(DataError, match='is not an insightface verification set'):
            pairs.read_bin(str(path))
