"""The commands that read checkpoints and train nothing: --test (accuracy by softmax, nearest
center and k-NN), --compare (the original port's figure of feature maps, and the margin papers'
side by side), --export (a run's features written out); --verify is evaluation/verify.py's.

Each takes the checkpoints it reads (runs.checkpoints.Checkpoint, with their runs.files.RunFiles)
and a ``data_for(ckpt)`` that gives the imagesets.dataset.Loaded a checkpoint was trained on. What
they hold of a set is bounded: the training images of a reference sample, at most BLOCK test
images at a time."""
from devices import compat  # noqa: F401  (before mxnet)

import os
import time

import numpy as np
from mxnet import nd

from evaluation import embeddings, pictures, predict, verify
from evaluation.restore import network
from faults.errors import NO_CHECKPOINT_CHANGED, UserError, saved
from runs.files import comparison_path
from runs.records import EVAL_METHODS, flag_value

# The rows of --compare: the three runs of the original port's figure.
COMPARED = [('softmax', 'softmax'), ('center-loss', 'softmax + center loss'),
            ('center-loss-second', 'center loss only (second stage)')]


def test(ckpt, rt, data, eval_method=None, knn_k=10):
    """Accuracy of checkpoint ``ckpt`` on ``data`` by each evaluation method (or ``eval_method``); k-NN
    votes among the features of a reference sample of the training images (every one of MNIST's)."""
    arch, net, centers = network(ckpt, rt.ctxs)
    methods = [eval_method] if eval_method else list(EVAL_METHODS)
    second = ckpt.meta.stage == 'second'
    print('test: %s, the %s stage after epoch %d%s' % (
        ckpt.path, ckpt.meta.stage, ckpt.meta.epoch, '' if second else ' (its second stage: --prefix %s-second; the '
                                                                  'last epoch: --checkpoint last)' % ckpt.meta.prefix))
    tic = time.time()
    gallery = gallery_labels = None
    if 'knn' in methods:
        reference = predict.reference_sample(data.train_x.shape[0], ckpt.meta.run.optim.seed
                                              if ckpt.meta.run.optim else 42)
        gallery = predict.forward_all(net, data.train_x.subset(reference))[1]
        gallery_labels = nd.take(data.train_y, nd.array(reference, ctx=data.train_y.context, dtype='int32'))
    found, _ = predict.accuracies(net, data.test_x, data.test_y, methods, centers.as_in_context(rt.ctxs[0]),
                                  gallery, gallery_labels, knn_k)
    name = ckpt.meta.prefix or os.path.basename(ckpt.path)
    for method in methods:
        print('test %s (epoch %d): %s accuracy %.4f'
              % (name, ckpt.meta.epoch, method if method != 'knn' else 'knn (k=%d)' % knn_k, found[method]))
    for set_name, r in verify.verification_sets(net, arch, ckpt.meta.normalisation, data.pair_lists,
                                                rt.ctxs[0]).items():
        print('test %s (epoch %d): %s 10-fold accuracy %.4f+-%.4f (threshold %.3f), flip test %.4f+-%.4f '
              '(threshold %.3f)' % (name, ckpt.meta.epoch, set_name, r['accuracy'], r['std'], r['threshold'],
                                    r['accuracy_flip'], r['std_flip'], r['threshold_flip']))
        found[set_name] = r['accuracy']
        found[set_name + '_flip'] = r['accuracy_flip']
    print('test %s: %d test images in %.1fs' % (name, data.test_x.shape[0], time.time() - tic))
    return found


def run_maps(ckpt, rt, data, seed, test=True):
    """What --compare draws of a run, in the plane of its pictures: (its Arch, its test accuracy or None,
    the sampled training images' (features, class ids), the held-out classes' test images' (features,
    ids) or None, the sampled test images' (features, ids) or None, its centers). Only the images drawn
    are forwarded (pictures.plot_sample: 10,000 training and at most predict.BLOCK test images)."""
    arch, net, centers = network(ckpt, rt.ctxs)
    ids = data.classes
    plot_idx = pictures.plot_sample(data.train_x.shape[0], seed)
    train_feat = predict.forward_all(net, data.train_x.subset(plot_idx))[1].asnumpy()
    projection = pictures.Projection(**ckpt.meta.projection).fit(train_feat)
    train = (projection(train_feat), ids[data.train_y.asnumpy().astype(int)[plot_idx]])
    held = None
    if data.held_x is not None:
        held = (projection(predict.forward_all(net, data.held_x)[1].asnumpy()), data.held_y.asnumpy().astype(int))
    acc = test_map = None
    if test:
        test_idx = pictures.plot_sample(data.test_x.shape[0], seed, predict.BLOCK)
        found, test_feat = predict.accuracies(net, data.test_x, data.test_y, ['softmax'], keep=test_idx)
        acc, test_map = found['softmax'], (projection(test_feat), ids[data.test_y.asnumpy().astype(int)[test_idx]])
    return arch, acc, train, held, test_map, projection(centers.asnumpy())


def compare(runs, rt, data_for, out_dir, dataset, seed, tag='best'):
    """The original port's figure from the ``tag`` checkpoints (best or last) of ``runs`` ([(RunFiles,
    title, checkpoint or None when there is none)]); held-out classes as crosses."""
    rows, num_classes, class_names = [], 0, None
    for files, title, ckpt in runs:
        if ckpt is None:
            print('compare: skipping %s (%s not found%s)' % (files.prefix, files.checkpoint(tag), files.hint()))
            continue
        data = data_for(ckpt)
        num_classes, class_names = max(num_classes, data.num_total), data.class_names
        arch, acc, train, held, test_map, centers = run_maps(ckpt, rt, data, seed)
        rows.append(('%s (test acc %.4f%s)' % (title, acc, ', classes %s held out' % flag_value('holdout', arch.holdout)
                                                if arch.holdout else ''),
                     {'train': train, 'test': test_map, 'held': held}, centers, data.classes))
    if not rows:
        raise UserError('--compare found none of %s in %s: train them first'
                        % (', '.join(os.path.basename(f.checkpoint(tag)) for f, _, _ in runs),
                           os.path.dirname(runs[0][0].checkpoint(tag)) or '.'))
    path = comparison_path(out_dir, dataset)
    with saved(path, NO_CHECKPOINT_CHANGED):
        pictures.plot_comparison(path, rows, num_classes, class_names)
    print('comparison figure: %s (%d rows)' % (path, len(rows)))
    return path


def side_by_side(runs, rt, data_for, out_dir, dataset, seed):
    """With several runs compared: ``heads-<dataset>.png``, each run's feature maps after its last epoch
    (``runs``: [(RunFiles, title, its -last checkpoint or None)]) in a column, as the margin papers draw
    theirs: the training images of the classes trained on above, the test images of the classes held out
    below. None when no run has a last checkpoint."""
    columns, num_classes, class_names = [], 0, None
    for files, title, ckpt in runs:
        if ckpt is None:
            continue
        data = data_for(ckpt)
        num_classes, class_names = max(num_classes, data.num_total), data.class_names
        _, _, train, held, _, centers = run_maps(ckpt, rt, data, seed, test=False)
        columns.append(('%s, epoch %d' % (title, ckpt.meta.epoch), train, held, centers, data.classes))
    if not columns:
        return None
    path = os.path.join(out_dir, 'heads-%s.png' % dataset)
    with saved(path, NO_CHECKPOINT_CHANGED):
        pictures.plot_side_by_side(path, columns, num_classes, class_names)
    print('side-by-side figure: %s (%d runs)' % (path, len(columns)))
    return path


def export(runs, rt, data_for, folder):
    """--export DIR: each run's test features (the trained classes' and the held-out ones') with their
    labels and class names, in DIR/<prefix>/ (evaluation/embeddings.py)."""
    for files, ckpt in runs:
        data = data_for(ckpt)
        _, net, _ = network(ckpt, rt.ctxs)
        parts = [(data.test_x, data.classes[data.test_y.asnumpy().astype(int)], False)]
        if data.held_x is not None:
            parts.append((data.held_x, data.held_y.asnumpy().astype(int), True))
        features = np.concatenate([f.asnumpy() for x, _, _ in parts for _, f in predict.feature_blocks(net, x, scores=False)])
        labels = np.concatenate([y for _, y, _ in parts])
        held = np.concatenate([np.full(len(y), h) for _, y, h in parts])
        target = os.path.join(folder, files.prefix)
        with saved(target, NO_CHECKPOINT_CHANGED):
            paths = embeddings.export(target, features, labels, data.class_names, held)
        print('embeddings of %s: %d test images, %d-D: %s' % (files.prefix, len(labels), features.shape[1],
                                                             ', '.join(paths)))
