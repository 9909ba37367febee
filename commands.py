"""The commands that read checkpoints and train nothing: --test (accuracy by softmax, nearest
center and k-NN), --compare (the original port's figure of feature maps) and --verify (open-set
figures of the classes a run never saw, or of a given pair list).

Each takes the checkpoints it reads (checkpoints.Checkpoint, with their runfiles.RunFiles) and a
``data_for(ckpt)`` that gives the data.Loaded a checkpoint was trained on."""
import compat  # noqa: F401  (before mxnet)

import os
import time

import numpy as np
from mxnet import nd

import embeddings
import evaluation
import pictures
import verification
from atomic import write_json
from checkpoints import arch_of, checked_centers, restore_net
from errors import NO_CHECKPOINT_CHANGED, UserError, saved
from images import normalise
from models import build_net, flag_value
from runfiles import comparison_path, verify_path
from sources import SourceError, decode

EVAL_METHODS = ('softmax', 'center', 'knn')
# The rows of --compare: the three runs of the original port's figure.
COMPARED = [('softmax', 'softmax'), ('center-loss', 'softmax + center loss'),
            ('center-loss-second', 'center loss only (second stage)')]


def network(ckpt, ctxs):
    """(the Arch, the network on ``ctxs`` with the checkpoint's weights, its centers): each array checked."""
    arch = arch_of(ckpt)
    net = build_net(arch, ctxs)
    restore_net(net, ckpt)
    return arch, net, checked_centers(ckpt, arch.num_classes, arch.feature_size)


def test(ckpt, rt, data, eval_method=None, knn_k=10):
    """Accuracy of checkpoint ``ckpt`` on ``data`` by each evaluation method (or ``eval_method``)."""
    arch, net, centers = network(ckpt, rt.ctxs)
    test_scores, test_feat = evaluation.forward_all(net, data.test_x)
    nd.waitall()  # the times below are of the evaluation alone, once the features exist
    name = ckpt.meta.get('prefix', os.path.basename(ckpt.path))
    results = {}
    for method in ([eval_method] if eval_method else EVAL_METHODS):
        tic = time.time()
        if method == 'softmax':
            pred = evaluation.predict_softmax(test_scores)
        elif method == 'center':
            pred = evaluation.predict_center(test_feat, centers.as_in_context(rt.ctxs[0]))
        else:  # the gallery: features of the whole training set
            _, train_feat = evaluation.forward_all(net, data.train_x)
            nd.waitall()
            tic = time.time()
            pred = evaluation.predict_knn(test_feat, train_feat, data.train_y, knn_k, arch.num_classes)
        results[method] = evaluation.accuracy(pred, data.test_y)
        print('test %s (epoch %d): %s accuracy %.4f  (%.2fs)'
              % (name, ckpt.meta['epoch'], method if method != 'knn' else 'knn (k=%d)' % knn_k,
                 results[method], time.time() - tic))
    return results


def sample_features(net, train_x, plot_idx):
    """Features of the training images drawn (pictures.plot_sample), as numpy: only those are forwarded,
    not the whole set (30,596 MNIST images for the 10,000 drawn, for each run compared)."""
    return evaluation.forward_all(net, train_x.subset(plot_idx))[1].asnumpy()


def compare(runs, rt, data_for, out_dir, dataset, seed, tag='best'):
    """The original port's figure from the ``tag`` checkpoints (best or last) of ``runs`` ([(RunFiles,
    title, checkpoint or None when there is none)]); held-out classes as crosses."""
    rows, num_classes, class_names = [], 0, None
    for files, title, ckpt in runs:
        if ckpt is None:
            print('compare: skipping %s (%s not found%s)' % (files.prefix, files.checkpoint(tag), files.hint()))
            continue
        data = data_for(ckpt)
        arch, net, centers = network(ckpt, rt.ctxs)
        num_classes, class_names = max(num_classes, data.num_total), data.class_names
        ids = data.classes
        plot_idx = pictures.plot_sample(data.train_x.shape[0], seed)
        train_feat = sample_features(net, data.train_x, plot_idx)
        test_scores, test_feat = evaluation.forward_all(net, data.test_x)
        projection = pictures.Projection(**ckpt.meta.get('projection', {})).fit(train_feat)
        acc = evaluation.accuracy(evaluation.predict_softmax(test_scores), data.test_y)
        held = None
        if data.held_x is not None:
            held = (projection(evaluation.forward_all(net, data.held_x)[1].asnumpy()),
                    data.held_y.asnumpy().astype(int))
        rows.append(('%s (test acc %.4f%s)' % (title, acc, ', classes %s held out' % flag_value(arch.holdout)
                                                if arch.holdout else ''),
                     {'train': (projection(train_feat), ids[data.train_y.asnumpy().astype(int)[plot_idx]]),
                      'test': (projection(test_feat.asnumpy()), ids[data.test_y.asnumpy().astype(int)]),
                      'held': held},
                     projection(centers.asnumpy()), ids))
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
        arch, net, centers = network(ckpt, rt.ctxs)
        num_classes, class_names = max(num_classes, data.num_total), data.class_names
        plot_idx = pictures.plot_sample(data.train_x.shape[0], seed)
        train_feat = sample_features(net, data.train_x, plot_idx)
        projection = pictures.Projection(**ckpt.meta.get('projection', {})).fit(train_feat)
        held = None
        if data.held_x is not None:
            held = (projection(evaluation.forward_all(net, data.held_x)[1].asnumpy()),
                    data.held_y.asnumpy().astype(int))
        train = (projection(train_feat), data.classes[data.train_y.asnumpy().astype(int)[plot_idx]])
        columns.append(('%s, epoch %d' % (title, ckpt.meta['epoch']), train, held, projection(centers.asnumpy()),
                        data.classes))
    if not columns:
        return None
    path = os.path.join(out_dir, 'heads-%s.png' % dataset)
    with saved(path, NO_CHECKPOINT_CHANGED):
        pictures.plot_side_by_side(path, columns, num_classes, class_names)
    print('side-by-side figure: %s (%d runs)' % (path, len(columns)))
    return path


# --------------------------------------------------------------------------- --verify

def verify(runs, rt, data_for, out_dir, dataset):
    """--verify: the open-set figures (verification.py) of each run's best checkpoint ([(RunFiles,
    checkpoint)]), on the test images of the classes it held out (or of every class)."""
    def measure(ckpt, arch, net, centers):
        data = data_for(ckpt)
        known = evaluation.forward_all(net, data.test_x)[1].asnumpy()
        if data.held_x is not None:
            features = evaluation.forward_all(net, data.held_x)[1].asnumpy()
            labels, which = data.held_y.asnumpy().astype(int), 'held-out classes %s' % flag_value(arch.holdout)
        else:
            features, labels = known, data.classes[data.test_y.asnumpy().astype(int)]
            which = 'all %d classes (none held out)' % len(data.classes)
        if len(np.unique(labels)) < 2:
            raise UserError('--verify needs test images of at least two classes; the test set%s has only %s'
                            % (' (as --test_samples cut it)' if data.test_x.shape[0] < len(labels) else '',
                               data.class_names[int(labels[0])]))
        result = dict(feature_size=arch.feature_size, holdout=list(arch.holdout),
                      trained_classes=data.classes.tolist(), images=len(labels))
        for metric in verification.METRICS:
            result[metric] = verification.verify(features, labels, metric)
            if data.held_x is not None:
                result[metric]['open_set_auroc'] = verification.open_set_auroc(known, features, centers.asnumpy(),
                                                                               metric)
        result['cosine']['retrieval'] = verification.retrieval(features, labels)
        head = '%d test images of %s, %d pairs (%d same-class)' % (
            len(labels), which, result['cosine']['pairs'], result['cosine']['same_class_pairs'])
        return result, head, 'pairs of %d test images of %s' % (len(labels), which), 'LFW-style %d pairs' % (
            result['cosine']['lfw_protocol']['pairs']), 'lfw_protocol'
    _verify_runs(runs, rt, measure, out_dir, dataset, ('verify.json', 'roc.png'), dict(dataset=dataset))


def verify_pairs(runs, rt, pair_list, out_dir, dataset):
    """--verify --pairs FILE: the figures of each run's best checkpoint on a given pair list (LFW's
    pairs.txt, or an insightface .bin: pairs.PairList): AUC, EER, TAR at FAR and the accuracy of each
    of its folds at the threshold best on the other folds."""
    def measure(ckpt, arch, net, centers):
        features = pair_features(net, arch, ckpt.meta.get('normalisation', (0.0, 1.0)), pair_list, rt.ctxs[0])
        result = dict(images=len(pair_list.images))
        for metric in verification.METRICS:
            result[metric] = verification.verify_pairs(features, pair_list.pairs, pair_list.same, pair_list.folds,
                                                       metric)
        head = '%s: %d pairs (%d same) of %d images' % (pair_list.name, len(pair_list.same),
                                                             int(pair_list.same.sum()), len(pair_list.images))
        folds = '%d-fold accuracy' % result['cosine']['folds']['folds']
        return result, head, 'the pairs of %s' % pair_list.name, folds, 'folds'
    _verify_runs(runs, rt, measure, out_dir, dataset, ('pairs.json', 'pairs-roc.png'),
                 dict(pairs_file=pair_list.name))


def _verify_runs(runs, rt, measure, out_dir, dataset, names, extra):
    """Both kinds of --verify: for each run, ``measure(ckpt, arch, net, centers)`` gives (figures,
    what was measured, the ROC title's words, the fold figures' name, their key); printed, written as
    JSON and a ROC figure per run, and one figure of every curve when there are several runs."""
    curves = []
    for i, (files, ckpt) in enumerate(runs):
        arch, net, centers = network(ckpt, rt.ctxs)
        tic = time.time()
        try:
            figures, head, title, folds_name, folds_key = measure(ckpt, arch, net, centers)
        except ValueError as e:  # verification.py: too few images or pairs for its figures
            raise UserError('--verify: %s' % e)
        result = dict(prefix=files.prefix, checkpoint=ckpt.path, epoch=ckpt.meta['epoch'], **extra)
        result.update(figures)
        print('verify %s (epoch %d): %s, %.1fs' % (files.prefix, result['epoch'], head, time.time() - tic))
        for metric in verification.METRICS:
            r = result[metric]
            print('  %-9s AUC %.4f  EER %.4f  TAR %s at FAR %s  %s %.4f +- %.4f%s'
                  % (metric, r['auc'], r['eer'], ' / '.join('%.4f' % r['tar_at_far_%g' % f] for f in verification.FARS),
                     ' / '.join('%g' % f for f in verification.FARS), folds_name, r[folds_key]['accuracy_mean'],
                     r[folds_key]['accuracy_std'],
                     '  open-set AUROC %.4f' % r['open_set_auroc'] if 'open_set_auroc' in r else ''))
        if 'retrieval' in result['cosine']:
            r = result['cosine']['retrieval']
            print('  retrieval by cosine, each of %d images against the others: precision@1 %.4f  R-precision %.4f  '
                  'MAP@R %.4f' % (r['queries'], r['precision_at_1'], r['r_precision'], r['map_at_r']))
        json_path, roc_path = files.output(names[0]), files.output(names[1])
        with saved(out_dir, NO_CHECKPOINT_CHANGED):
            write_json(json_path, result)
            pictures.plot_roc(roc_path, roc_curves(result),
                              '%s (epoch %d): %s' % (files.prefix, result['epoch'], title))
        print('verification: %s, %s' % (json_path, roc_path))
        curves += roc_curves(result, files.prefix + ', ', 'C%d' % i)
    if len(runs) > 1:
        path = verify_path(out_dir, dataset) if names[0] == 'verify.json' else \
            os.path.join(out_dir, 'verify-pairs-%s.png' % dataset)
        with saved(path, NO_CHECKPOINT_CHANGED):
            pictures.plot_roc(path, curves, '%s: ROC of each run' % dataset)
        print('verification figure: %s (%d runs)' % (path, len(runs)))


def export(runs, rt, data_for, folder):
    """--export DIR: each run's test features (the trained classes' and the held-out ones') with their
    labels and class names, in DIR/<prefix>/ (embeddings.py)."""
    for files, ckpt in runs:
        data = data_for(ckpt)
        _, net, _ = network(ckpt, rt.ctxs)
        parts = [(data.test_x, data.classes[data.test_y.asnumpy().astype(int)], False)]
        if data.held_x is not None:
            parts.append((data.held_x, data.held_y.asnumpy().astype(int), True))
        features = np.concatenate([evaluation.forward_all(net, x)[1].asnumpy() for x, _, _ in parts])
        labels = np.concatenate([y for _, y, _ in parts])
        held = np.concatenate([np.full(len(y), h) for _, y, h in parts])
        target = os.path.join(folder, files.prefix)
        with saved(target, NO_CHECKPOINT_CHANGED):
            paths = embeddings.export(target, features, labels, data.class_names, held)
        print('embeddings of %s: %d test images, %d-D: %s' % (files.prefix, len(labels), features.shape[1],
                                                             ', '.join(paths)))


def roc_curves(result, label='', color=''):
    """A run's curves for pictures.plot_roc: one colour per run, cosine solid, Euclidean dashed."""
    return [('%s%s (AUC %.4f)' % (label, metric, result[metric]['auc']), result[metric]['roc']['far'],
             result[metric]['roc']['tar'], color + style) for metric, style in zip(verification.METRICS, ('-', '--'))]


def pair_features(net, arch, normalisation, pair_list, ctx, chunk=256):
    """Features of every image of ``pair_list``, decoded and normalised as the checkpoint's training images."""
    mean, std = normalisation
    out = []
    for start in range(0, len(pair_list.images), chunk):
        pixels = []
        for where, blob, path in pair_list.images[start:start + chunk]:
            if blob is None:
                try:
                    with open(path, 'rb') as f:
                        blob = f.read()
                except OSError as e:
                    raise UserError('--pairs: cannot read %s (%s)' % (path, e.strerror or e))
            try:
                pixels.append(decode(blob, arch.channels, arch.image_size, where))
            except SourceError as e:
                raise UserError('--pairs: %s' % e)
        out.append(net(normalise(nd.array(np.stack(pixels), ctx=ctx, dtype='uint8'), mean, std))[1].asnumpy())
    return np.concatenate(out)
