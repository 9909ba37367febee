"""A trained network used on images it never saw: the features of any image files or folders written out
(--embed), and two images compared at the threshold the run's verification chose (--match).

Images are decoded and brought to the network's size and normalised as its training images were
(evaluation/verify.image_features): align faces first, as insightface's models expect. The features are
the network's: normalised where its head normalises them (the margin heads), raw for softmax and center
loss, and the same numbers the exported network gives (evaluation/export.py).

A threshold is read where --verify wrote it: in <out_dir>/<prefix>-pairs-<set>.json, -pairs.json or
-verify.json, the cosine threshold at a false accept rate (accept "same" above it), of the same
checkpoint and epoch."""
import glob
import json
import os

import numpy as np

from evaluation import embeddings, verification
from evaluation.verify import image_features
from faults.errors import NO_CHECKPOINT_CHANGED, UserError, saved
from imagesets.listed import IMAGE_EXTENSIONS
from models import normalises


def image_files(paths, flag):
    """[(path, class)] of the images ``paths`` name: files as they are, folders walked in sorted order (hidden
    files and other extensions left out); an image's class is its folder's name. UserError when a path is
    not there or names no image."""
    found = []
    for path in paths:
        if os.path.isfile(path):
            found.append((path, os.path.basename(os.path.dirname(os.path.abspath(path)))))
        elif os.path.isdir(path):
            before = len(found)
            for folder, subfolders, names in os.walk(path):
                subfolders[:] = sorted(d for d in subfolders if not d.startswith('.'))
                found += [(os.path.join(folder, n), os.path.basename(os.path.abspath(folder))) for n in sorted(names)
                          if not n.startswith('.') and n.lower().endswith(IMAGE_EXTENSIONS)]
            if len(found) == before:
                raise UserError('%s: %s holds no image files (%s)' % (flag, path, ', '.join(IMAGE_EXTENSIONS[:6])))
        else:
            raise UserError('%s: %s is not there' % (flag, path))
    return found


def features(net, arch, normalisation, files, ctx, flag):
    return image_features(net, arch, normalisation, [(p, None, p) for p, _ in files], ctx, flag)


def embed(ckpt, files, net, paths, ctx):
    """--embed PATH ...: the features of every image they name, in <out_dir>/<prefix>-embeddings/ as
    embeddings.npz (features, paths, classes, whether normalised) and TensorBoard's tensors.tsv and
    metadata.tsv."""
    arch = ckpt.meta.run.arch
    found = image_files(paths, '--embed')
    feats = features(net, arch, ckpt.meta.normalisation, found, ctx, '--embed')
    folder = files.output('embeddings')
    with saved(folder, NO_CHECKPOINT_CHANGED):
        written = embeddings.export_images(folder, feats, [p for p, _ in found], [c for _, c in found],
                                           normalises(net.output))
    print('embeddings of %d images by %s (epoch %d), %d-D%s: %s' % (
        len(found), files.prefix, ckpt.meta.epoch, feats.shape[1], ', normalised' if normalises(net.output) else '',
        ', '.join(written)))
    return written


def recorded_thresholds(files, ckpt):
    """{'<set>': {'far': {FAR: threshold}, 'file': ...}} that --verify recorded for checkpoint ``ckpt`` (its
    path and epoch), by cosine, of the features (not the flip test's), in the order match() prefers:
    the data's verification sets, a --pairs list, then all pairs of the test images."""
    found = {}
    candidates = sorted(glob.glob(glob.escape(files.output('pairs-')) + '*.json')) + \
        [files.output('pairs.json'), files.output('verify.json')]
    for path in candidates:
        try:
            with open(path) as f:
                result = json.load(f)
            if result.get('checkpoint') != ckpt.path or result.get('epoch') != ckpt.meta.epoch:
                continue
            fars = {'%g' % far: float(result['cosine']['threshold_at_far_%g' % far]) for far in verification.FARS}
        except (OSError, ValueError, KeyError, TypeError):
            continue  # none, unreadable, or written before thresholds were recorded
        name = result.get('pairs_file') or 'all pairs of the test images'
        found[name] = dict(far=fars, file=path)
    return found


def match(ckpt, files, net, images, far, threshold, ctx):
    """--match A B: the cosine similarity of two images' features and the verdict at ``threshold``, or at
    the one --verify recorded at false accept rate ``far``; one line."""
    arch = ckpt.meta.run.arch
    found = image_files(images, '--match')
    if len(found) != 2:
        raise UserError('--match compares two image files; %s name %d images' % (' and '.join(images), len(found)))
    a, b = features(net, arch, ckpt.meta.normalisation, found, ctx, '--match').astype(np.float64)
    similarity = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-24))
    if threshold is None:
        recorded = recorded_thresholds(files, ckpt)
        if not recorded:
            raise UserError('--match: no threshold recorded for %s (epoch %d): run python main.py --verify%s '
                            'first (it records the threshold at each false accept rate), or give --threshold'
                            % (ckpt.path, ckpt.meta.epoch, '' if files.prefix == 'center-loss' else
                               ' --prefix %s' % files.prefix))
        name, entry = next(iter(recorded.items()))
        threshold = entry['far']['%g' % far]
        source = 'at FAR %g on %s, %s' % (far, name, entry['file'])
    else:
        source = 'given'
    print('%s %s: cosine similarity %.4f, threshold %.4f (%s): %s' % (
        found[0][0], found[1][0], similarity, threshold, source, 'same' if similarity > threshold else 'different'))
    return similarity, threshold
