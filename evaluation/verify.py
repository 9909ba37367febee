"""--verify: how well a run's features tell apart classes it never trained on (evaluation/verification.py's
figures), on all pairs of the test images of the classes it held out (or of every class), or on a
given pair list (LFW's pairs.txt, insightface's .bin); printed, written as JSON and drawn as ROC
curves. All pairs are taken among at most IMAGES test images (a seeded sample beyond: every one of
MNIST's), so memory and time are set by it, not by the test set."""
from devices import compat  # noqa: F401  (before mxnet)

import os
import time

import numpy as np
from mxnet import nd

from evaluation import pictures, predict, verification
from evaluation.restore import network
from faults.atomic import write_json
from faults.errors import NO_CHECKPOINT_CHANGED, DataError, UserError, saved
from imagesets.decode import decode
from imagesets.images import normalise
from imagesets.listed import few
from runs.files import verify_path

IMAGES = 10000


def held_out_text(held):
    """'held-out classes 5,6,7,8,9'; beyond ten, the first ten and the count (a thousand unseen glyphs named
    on one line would be a wall)."""
    return 'held-out classes %s' % (few(list(held), 10) + (' (%d classes)' % len(held) if len(held) > 10 else ''))


def verify(runs, rt, data_for, out_dir, dataset):
    """--verify: the open-set figures (verification.py) of each run's best checkpoint ([(RunFiles,
    checkpoint)]), on the test images of the classes it held out (or of every class)."""
    def measure(ckpt, arch, net, centers):
        data = data_for(ckpt)
        known, known_idx = sampled_features(net, data.test_x)
        if data.held_x is not None:
            features, held_idx = sampled_features(net, data.held_x)
            labels = data.held_y.asnumpy().astype(int)[held_idx]
            which = held_out_text(arch.holdout)
        else:
            features, labels = known, data.classes[data.test_y.asnumpy().astype(int)[known_idx]]
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
        for metric in verification.METRICS:
            result[metric]['retrieval'] = verification.retrieval(features, labels, metric)
        head = '%d test images of %s, %d pairs (%d same-class)' % (
            len(labels), which, result['cosine']['pairs'], result['cosine']['same_class_pairs'])
        return result, head, 'pairs of %d test images of %s' % (len(labels), which), 'LFW-style %d pairs' % (
            result['cosine']['lfw_protocol']['pairs']), 'lfw_protocol'
    _verify_runs(runs, rt, measure, out_dir, dataset, ('verify.json', 'roc.png'), dict(dataset=dataset))


def verify_pairs(runs, rt, pair_list, out_dir, dataset, set_name=None):
    """--verify --pairs FILE, or --verify on the verification sets of a run's data (``set_name``, the set's
    name in the output files' names): the figures of each run's best checkpoint on a pair list (LFW's
    pairs.txt, or an insightface .bin: imagesets.pairs.PairList): AUC, EER, TAR at FAR and the accuracy
    of each of its folds at the threshold best on the other folds, of the features and of the flip
    test's (``flip``: each image's features plus its mirror's, as insightface reports a set)."""
    def measure(ckpt, arch, net, centers):
        features, flipped = pair_features(net, arch, ckpt.meta.normalisation, pair_list, rt.ctxs[0],
                                          '--pairs' if set_name is None else None)
        result = dict(images=len(pair_list.images), flip={})
        for metric in verification.METRICS:
            for into, f in ((result, features), (result['flip'], flipped)):
                into[metric] = verification.verify_pairs(f, pair_list.pairs, pair_list.same, pair_list.folds, metric)
        head = '%s: %d pairs (%d same) of %d images' % (pair_list.name, len(pair_list.same),
                                                             int(pair_list.same.sum()), len(pair_list.images))
        folds = '%d-fold accuracy' % result['cosine']['folds']['folds']
        return result, head, 'the pairs of %s' % pair_list.name, folds, 'folds'
    stem = 'pairs' if set_name is None else 'pairs-%s' % set_name
    _verify_runs(runs, rt, measure, out_dir, dataset, ('%s.json' % stem, '%s-roc.png' % stem),
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
        result = dict(prefix=files.prefix, checkpoint=ckpt.path, epoch=ckpt.meta.epoch, **extra)
        result.update(figures)
        print('verify %s (epoch %d): %s, %.1fs' % (files.prefix, result['epoch'], head, time.time() - tic))
        for label, figures in (('', result), ('flip ', result.get('flip'))):
            for metric in (verification.METRICS if figures else ()):
                r = figures[metric]
                print('  %-14s AUC %.4f  EER %.4f  TAR %s at FAR %s  %s %.4f +- %.4f%s'
                      % (label + metric, r['auc'], r['eer'],
                         ' / '.join('%.4f' % r['tar_at_far_%g' % f] for f in verification.FARS),
                         ' / '.join('%g' % f for f in verification.FARS), folds_name, r[folds_key]['accuracy_mean'],
                         r[folds_key]['accuracy_std'],
                         '  open-set AUROC %.4f' % r['open_set_auroc'] if 'open_set_auroc' in r else ''))
        for metric in (m for m in verification.METRICS if 'retrieval' in result[m]):
            r = result[metric]['retrieval']
            print('  retrieval by %s, each of %d images against the others: precision@1 %.4f  R-precision %.4f  '
                  'MAP@R %.4f' % (metric, r['queries'], r['precision_at_1'], r['r_precision'], r['map_at_r']))
        json_path, roc_path = files.output(names[0]), files.output(names[1])
        with saved(out_dir, NO_CHECKPOINT_CHANGED):
            write_json(json_path, result)
            pictures.plot_roc(roc_path, roc_curves(result),
                              '%s (epoch %d): %s' % (files.prefix, result['epoch'], title))
        print('verification: %s, %s' % (json_path, roc_path))
        curves += roc_curves(result, files.prefix + ', ', 'C%d' % i)
    if len(runs) > 1:
        path = verify_path(out_dir, dataset) if names[0] == 'verify.json' else \
            os.path.join(out_dir, 'verify-%s-%s.png' % (names[0][:-len('.json')], dataset))
        with saved(path, NO_CHECKPOINT_CHANGED):
            pictures.plot_roc(path, curves, '%s: ROC of each run' % dataset)
        print('verification figure: %s (%d runs)' % (path, len(runs)))


def roc_curves(result, label='', color=''):
    """A run's curves for pictures.plot_roc: one colour per run, cosine solid, Euclidean dashed."""
    return [('%s%s (AUC %.4f)' % (label, metric, result[metric]['auc']), result[metric]['roc']['far'],
             result[metric]['roc']['tar'], color + style) for metric, style in zip(verification.METRICS, ('-', '--'))]


def pair_features(net, arch, normalisation, pair_list, ctx, flag='--pairs'):
    """(features, flip-test features) of every image of ``pair_list``, decoded and normalised as the
    checkpoint's training images; the flip test's are the sum of the image's features and its mirror's
    (insightface's verification, its "Accuracy-Flip"). An error begins with ``flag`` (None: the file alone
    names it, a .bin beside the data)."""
    return image_features(net, arch, normalisation, pair_list.images, ctx, flag, flip=True)


def image_features(net, arch, normalisation, images, ctx, flag, flip=False, chunk=256):
    """The features of ``images`` ([(how an error names it, its encoded bytes or None, its path)]), decoded
    at the network's size and normalised as its training images were; with ``flip``, (features, the flip
    test's). A file that cannot be read or decoded is one DataError that begins with ``flag``."""
    mean, std = normalisation
    out, flipped, prefix = [], [], '%s: ' % flag if flag else ''
    for start in range(0, len(images), chunk):
        pixels = []
        for where, blob, path in images[start:start + chunk]:
            if blob is None:
                try:
                    with open(path, 'rb') as f:
                        blob = f.read()
                except OSError as e:
                    raise DataError('%scannot read %s (%s)' % (prefix, path, e.strerror or e))
            try:
                pixels.append(decode(blob, arch.channels, arch.image_size, where))
            except DataError as e:
                raise DataError('%s%s' % (prefix, e))
        x = normalise(nd.array(np.stack(pixels), ctx=ctx, dtype='uint8'), mean, std)
        plain = net(x)[1]
        out.append(plain.asnumpy())
        if flip:
            flipped.append((plain + net(nd.flip(x, axis=3))[1]).asnumpy())
    return (np.concatenate(out), np.concatenate(flipped)) if flip else np.concatenate(out)


def sampled_features(net, x, seed=0):
    """(features as numpy, which images) of at most IMAGES images of ``x``: every one, or a seeded sample."""
    picked = pictures.plot_sample(x.shape[0], seed, IMAGES)
    return predict.features_of(net, x, picked), picked


def verification_sets(net, arch, normalisation, pair_lists, ctx):
    """{name: {'accuracy', 'std', 'threshold', and the same of the flip test: 'accuracy_flip', ...}} of each
    verification set ([(name, imagesets.pairs.PairList)]), as insightface's verification callback reports
    one after each epoch: the 10-fold accuracy by cosine, its spread over the folds, and the mean
    threshold the folds were judged at, of the features and of the flip test's."""
    found = {}
    for name, pair_list in pair_lists:
        found[name] = {}
        for features, suffix in zip(pair_features(net, arch, normalisation, pair_list, ctx, None), ('', '_flip')):
            folds = verification.verify_pairs(features, pair_list.pairs, pair_list.same, pair_list.folds,
                                              'cosine')['folds']
            found[name].update({'accuracy' + suffix: folds['accuracy_mean'], 'std' + suffix: folds['accuracy_std'],
                                'threshold' + suffix: folds['threshold']})
    return found
