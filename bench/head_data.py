"""Which images each dataset of bench/heads.py's table trains on and which it measures: MNIST and
Fashion-MNIST with classes 5-9 held out; a glyph set (python -m cli.glyphs) whose unseen third is in its
test/ alone; and that set's validation, a fifth of the trained characters held out to choose on."""
import functools
import json
import os

import numpy as np

HELD_OUT = ['--holdout', '5,6,7,8,9']
IDX = ('mnist', 'fashion-mnist')  # main.py's --dataset
DATASETS = IDX + ('glyphs', 'glyphs-validation')
VALIDATION_SHARE, VALIDATION_SEED, VALIDATION_TEST_SPLIT = 0.2, 0, 0.25
# what a dataset's runs train with beyond main.py's defaults, chosen on its validation (docs/results.md):
# 'all' for every run's first stage, 'center' for those with center loss (added before --extra)
# glyphs: 0.05, the rate of those tried that trains (0.01 stays at ln C, 0.1 becomes NaN); lambda not chosen yet
CHOSEN = {'glyphs': {'all': ['--lr', '0.05']}}


def chosen_flags(dataset, flags):
    """The flags chosen for ``dataset`` that a run whose own flags are ``flags`` trains with."""
    chosen = CHOSEN.get(dataset, {})
    return chosen.get('all', []) + (chosen.get('center', []) if '--center_loss' in flags else [])


def data_flags(dataset, glyphs, work):
    """main.py's flags that pick ``dataset`` and the classes it never trains on."""
    if dataset in IDX:
        return ['--dataset', dataset] + HELD_OUT
    if dataset == 'glyphs':  # the unseen characters are in test/ alone: main.py holds them out itself
        return ['--data_dir', glyphs]
    # G/train alone, a set with no test split, read through a link of its own name: main.py refuses a set's
    # train/ folder named in place of the set (what a user who does so means is the set)
    train = os.path.join(work, 'glyphs-train-' + glyphs_of(dataset, glyphs)['glyph_fingerprint'][:12])
    if not os.path.islink(train):
        os.symlink(os.path.abspath(os.path.join(glyphs, 'train')), train)
    from imagesets.folders import open_folder  # main.py's own listing, so the ids are the ones it gives
    classes = open_folder(train).classes
    held = np.random.RandomState(VALIDATION_SEED).permutation(len(classes))[:int(round(len(classes) *
                                                                                     VALIDATION_SHARE))]
    return ['--data_dir', train, '--test_split', str(VALIDATION_TEST_SPLIT),
            '--holdout', ','.join(str(i) for i in sorted(held))]


def glyphs_of(dataset, glyphs):
    """What a row logs of the glyph set it was measured on: its seed and fingerprint (cli.glyphs' last line)."""
    return _about(glyphs) if dataset.startswith('glyphs') else {}


@functools.lru_cache(maxsize=None)
def _about(glyphs):  # read once: every row of a table logs it
    about = json.load(open(os.path.join(glyphs, 'glyphs.json')))
    return dict(glyph_seed=about['seed'], glyph_fingerprint=about['fingerprint'])


def glyph_set(path):
    """'' when ``path`` is a set cli.glyphs built, else what is wrong with it."""
    if not path:
        return 'needs --glyphs G, a set built by: python -m cli.glyphs G'
    if not all(os.path.isdir(os.path.join(path, d)) for d in ('train', 'test')) or \
            not os.path.isfile(os.path.join(path, 'glyphs.json')):
        return '%s is not a set cli.glyphs built (no train/, test/ and glyphs.json): python -m cli.glyphs G' % path
    return ''
