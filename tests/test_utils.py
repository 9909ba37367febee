"""utils.py, the data: the IDX reader, the data lookup and the random shifts, on arrays and files the tests make."""
import gzip
import hashlib
import os

import numpy as np
from mxnet import nd
import pytest

import utils
from helpers import make_dataset, write_idx


@pytest.mark.parametrize('suffix', ['.gz', ''])
def test_roundtrip(tmp_path, suffix):
    images = np.random.RandomState(0).randint(0, 256, (5, 28, 28))
    labels = np.arange(5)
    got = utils.read_idx(write_idx(str(tmp_path / ('i' + suffix)), images), 3)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(utils.read_idx(write_idx(str(tmp_path / ('l' + suffix)), labels), 1), labels)


def test_wrong_magic(tmp_path):
    path = write_idx(str(tmp_path / 'x.gz'), np.arange(4), magic=0x00000803)
    with pytest.raises(utils.DataError, match='wrong magic number'):
        utils.read_idx(path, 1)


def test_truncated_payload(tmp_path):
    path = str(tmp_path / 'x')
    write_idx(path, np.zeros((3, 4, 4)))
    with open(path, 'r+b') as f:
        f.truncate(16 + 40)
    with pytest.raises(utils.DataError, match='truncated'):
        utils.read_idx(path, 3)


def test_truncated_and_corrupt_gzip(tmp_path):
    path = write_idx(str(tmp_path / 'x.gz'), np.random.RandomState(1).randint(0, 256, (50, 28, 28)))
    blob = open(path, 'rb').read()
    open(path, 'wb').write(blob[:len(blob) // 2])
    with pytest.raises(utils.DataError, match='corrupt or truncated'):
        utils.read_idx(path, 3)
    open(path, 'wb').write(b'\x1f\x8b' + bytes(range(200)))
    with pytest.raises(utils.DataError, match='corrupt or truncated'):
        utils.read_idx(path, 3)


def test_data_dir_is_used_and_checked(tmp_path):
    d = make_dataset(str(tmp_path / 'ok'))
    assert utils.find_data('mnist', d) == d
    x, y = utils.load_split(d, 'train')
    assert x.shape == (6, 28, 28) and y.shape == (6,)
    with pytest.raises(utils.DataError, match='does not exist'):
        utils.find_data('mnist', str(tmp_path / 'nowhere'))
    d = make_dataset(str(tmp_path / 'missing'), drop='t10k-labels-idx1-ubyte')
    with pytest.raises(utils.DataError, match='lacks t10k-labels-idx1-ubyte'):
        utils.find_data('mnist', d)
    d = make_dataset(str(tmp_path / 'lengths'), label_len=5)
    with pytest.raises(utils.DataError, match='6 images but 5 labels'):
        utils.load_split(d, 'train')


def test_nothing_found_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setitem(utils.SYSTEM_DIRS, 'fashion-mnist', str(tmp_path / 'none'))
    monkeypatch.setenv('MXNET_HOME', str(tmp_path / 'home'))
    with pytest.raises(utils.DataNotFound) as e:
        utils.find_data('fashion-mnist', download=False)
    assert str(tmp_path / 'none') in str(e.value) and str(tmp_path / 'home') in str(e.value)
    assert '--' not in str(e.value)  # the library names no command-line flag; main.py adds it


def test_vendored_mnist_is_the_original():
    d = utils.find_data('mnist', download=False)
    assert d == utils.SYSTEM_DIRS['mnist']
    for stem, digest in utils.SHA256['mnist'].items():
        with gzip.open(os.path.join(d, stem + '.gz'), 'rb') as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, stem
    x, y = utils.load_split(d, 'test')
    assert x.shape == (10000, 28, 28) and np.bincount(y).tolist()[:2] == [980, 1135]


def test_random_shift_moves_whole_pixels_and_fills_background():
    rng = np.random.RandomState(3)
    x = rng.rand(6, 2, 9, 11).astype(np.float32)  # two channels
    shifts = np.array([[0, 0], [1, 0], [0, -2], [-3, 2], [2, 2], [-1, -1]])
    bg = -0.5
    ref = np.full_like(x, bg)
    for i, (dx, dy) in enumerate(shifts):  # out[i, y, x] = in[i, y - dy, x - dx]
        for yy in range(9):
            for xx in range(11):
                if 0 <= yy - dy < 9 and 0 <= xx - dx < 11:
                    ref[i, :, yy, xx] = x[i, :, yy - dy, xx - dx]
    got = utils.random_shift(nd.array(x), nd.array(shifts), bg, 3).asnumpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_random_mirror_flips_the_images_flagged_left_to_right():
    x = np.random.RandomState(4).rand(5, 3, 4, 6).astype(np.float32)
    flags = np.array([1, 0, 0, 1, 1])
    ref = np.where(flags[:, None, None, None] == 1, x[:, :, :, ::-1], x)
    np.testing.assert_array_equal(utils.random_mirror(nd.array(x), nd.array(flags)).asnumpy(), ref)
