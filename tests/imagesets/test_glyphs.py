"""imagesets/glyphs.py and python -m cli.glyphs: the many-class open-set set, built offline from matplotlib's
typefaces, on a slice of its characters: the look-alike rules, the split, the pairs and the fingerprint."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT
from imagesets import glyphs, pairs, sources


def build(out, *flags):
    proc = subprocess.run([sys.executable, '-m', 'cli.glyphs', str(out), '--limit', '24'] + list(flags), cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
    return proc.returncode, proc.stdout, proc.stderr


def files(root):
    return sorted(os.path.relpath(os.path.join(d, f), str(root)) for d, _, fs in os.walk(str(root)) for f in fs)


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    """The slice built by the command, and again in this process with the same seed and with another."""
    tmp = tmp_path_factory.mktemp('glyphs')
    return tmp, build(tmp / 'a'), glyphs.build(str(tmp / 'b'), 0, 24), glyphs.build(str(tmp / 'c'), 1, 24)


def test_the_same_seed_gives_the_same_files_byte_for_byte(built):
    tmp, (rc, out, err), again, other = built
    assert rc == 0, err
    fingerprint = out.strip().splitlines()[-1]
    assert fingerprint == 'glyphs: seed 0, fingerprint %s' % again['fingerprint']
    assert other['fingerprint'] != again['fingerprint']
    assert files(tmp / 'a') == files(tmp / 'b')
    assert all(open(str(tmp / 'a' / f), 'rb').read() == open(str(tmp / 'b' / f), 'rb').read() for f in files(tmp / 'a'))


def test_the_split_keeps_a_third_of_the_characters_unseen_and_the_pairs_over_them(built):
    root = built[0] / 'a'
    trained, tested = (set(os.listdir(str(root / split))) for split in ('train', 'test'))
    unseen = tested - trained
    assert len(tested) == 24 and len(unseen) == 8 and trained < tested
    for name in tested:
        shown = [f for split in ('train', 'test') if os.path.isdir(str(root / split / name))
                 for f in os.listdir(str(root / split / name))]
        assert len(shown) == glyphs.PER_CLASS
        in_test = len(os.listdir(str(root / 'test' / name)))
        assert in_test == (glyphs.PER_CLASS if name in unseen else round(glyphs.PER_CLASS * glyphs.TEST_SHARE))
    image = Image.open(str(root / 'train' / sorted(trained)[0] / sorted(os.listdir(str(root / 'train' /
                                                                                         sorted(trained)[0])))[0]))
    assert image.size == (32, 32) and image.mode == 'L'
    listed = pairs.read_pairs(str(root / 'pairs.txt'), str(root / 'test'))
    assert len(listed.same) == 6000 and listed.same.sum() == 3000
    named = {os.path.basename(os.path.dirname(p)) for _, _, p in listed.images}
    assert named <= unseen and len(named) == len(unseen)
    src = sources.open_source(str(root))  # as main.py reads it: the unseen classes, with no training images
    assert len(src.classes) == 24 and len(np.unique(src.splits['train'].labels)) == 16


def test_look_alikes_are_dropped_by_the_rules():
    _, kept, dropped = glyphs.classes()
    assert len(kept) >= 1500 and 0x41 in kept and 0xC0 in kept  # A, and À: 0.94, a class of its own
    assert dropped[0x410] == 0x41 and dropped[0x391] == 0x41     # Cyrillic А, Greek Α: twins of A
    assert dropped[ord('l')] == ord('I') and dropped[ord('1')] == ord('I') and dropped[ord('0')] == ord('O')
    assert not set(dropped) & set(kept) and all(c in kept for c in dropped.values())
