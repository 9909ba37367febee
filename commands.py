"""The commands that read checkpoints and train nothing: --test (accuracy by softmax, nearest
center and k-NN), --compare (the original port's figure of feature maps) and --verify (open-set
figures of the classes a run never saw, or of a given pair list)."""
import compat  # noqa: F401  (before mxnet)

import os
import time

import numpy as np
from mxnet import nd

import evaluation
import pictures
import verification
from checkpoints import load_checkpoint
from pairs import read_pairs
from data import check_dataset, load_data
from errors import NO_CHECKPOINT_CHANGED, UserError, saved
from models import Arch, build_net, flag_value, resolve_arch
from runfiles import RunFiles, comparison_path, verify_path, write_json
from sources import SourceError, decode

EVAL_METHODS = ('softmax', 'center', 'knn')
# The rows of --compare: the three runs of the original port's figure.
COMPARED = [('softmax', 'softmax'), ('center-loss', 'softmax + center loss'),
            ('center-loss-second', 'center loss only (second stage)')]


def test(args, rt, data, ckpt):
    """Accuracy of checkpoint ``ckpt`` by each evaluation method."""
    arch = resolve_arch(args, len(data['class_names']), ckpt)
    net = build_net(arch, rt.ctxs, ckpt)
    test_scores, test_feat = evaluation.forward_all(net, data['test_x'])
    nd.waitall()  # the times below are of the evaluation alone, once the features exist
    test_y, name = data['test_y'], ckpt.meta.get('prefix', os.path.basename(ckpt.path))
    results = {}
    for method in ([args.eval_method] if args.eval_method else EVAL_METHODS):
        tic = time.time()
        if method == 'softmax':
            pred = evaluation.predict_softmax(test_scores)
        elif method == 'center':
            pred = evaluation.predict_center(test_feat, ckpt.centers.as_in_context(rt.ctxs[0]))
        else:  # the gallery: features of the whole training set
            _, train_feat = evaluation.forward_all(net, data['train_x'])
            nd.waitall()
            tic = time.time()
            pred = evaluation.predict_knn(test_feat, train_feat, data['train_y'], args.knn_k, arch.num_classes)
        results[method] = evaluation.accuracy(pred, test_y)
        print('test %s (epoch %d): %s accuracy %.4f  (%.2fs)'
              % (name, ckpt.meta['epoch'], method if method != 'knn' else 'knn (k=%d)' % args.knn_k,
                 results[method], time.time() - tic))
    return results


def compared_runs(args):
    """[(RunFiles, title)]: those of --prefix A,B,C, else the three runs of the original port's figure."""
    if args.prefixes and len(args.prefixes) > 1:
        return [(RunFiles(args.ckpt_dir, args.out_dir, prefix), prefix) for prefix in args.prefixes]
    return [(RunFiles(args.ckpt_dir, args.out_dir, prefix), title) for prefix, title in COMPARED]


def data_key(arch, normalisation):
    """What makes two loads of the data the same: the split and the normalisation."""
    return arch.holdout, arch.num_classes, tuple(normalisation or ())


def data_of(args, rt, raw, ckpt, loaded):
    """The data of checkpoint ``ckpt``'s classes and normalisation (``loaded``: a cache of them)."""
    check_dataset(args, ckpt)
    arch = Arch.of(ckpt)
    key = data_key(arch, ckpt.meta.get('normalisation'))
    if key not in loaded:
        loaded[key] = load_data(args, arch, rt, raw, ckpt.meta.get('normalisation'))
    return arch, loaded[key]


def compare(args, rt, raw, loaded, opened=None):
    """The original port's figure from the saved best checkpoints of the three runs, or of
    --prefix A,B,C (``opened``: one of them, already read); held-out classes as crosses."""
    rows, num_classes, class_names = [], 0, None
    for files, title in compared_runs(args):
        if not os.path.isfile(files.best):
            print('compare: skipping %s (%s not found%s)' % (files.prefix, files.best, files.hint()))
            continue
        ckpt = opened if opened is not None and opened.path == files.best else load_checkpoint(files.best)
        arch, data = data_of(args, rt, raw, ckpt, loaded)
        num_classes, class_names = max(num_classes, data['num_total']), data['class_names']
        ids = data['classes']
        plot_idx = pictures.plot_sample(data['train_x'].shape[0], args.seed)
        net = build_net(arch, rt.ctxs, ckpt)
        _, train_feat = evaluation.forward_all(net, data['train_x'])
        test_scores, test_feat = evaluation.forward_all(net, data['test_x'])
        train_feat = train_feat.asnumpy()[plot_idx]
        projection = pictures.Projection(**ckpt.meta.get('projection', {})).fit(train_feat)
        acc = evaluation.accuracy(evaluation.predict_softmax(test_scores), data['test_y'])
        held = None
        if data['held_x'] is not None:
            held = (projection(evaluation.forward_all(net, data['held_x'])[1].asnumpy()),
                    data['held_y'].asnumpy().astype(int))
        rows.append(('%s (test acc %.4f%s)' % (title, acc, ', classes %s held out' % flag_value(arch.holdout)
                                                if arch.holdout else ''),
                     {'train': (projection(train_feat), ids[data['train_y'].asnumpy().astype(int)[plot_idx]]),
                      'test': (projection(test_feat.asnumpy()), ids[data['test_y'].asnumpy().astype(int)]),
                      'held': held},
                     projection(ckpt.centers.asnumpy()), ids))
    if not rows:
        raise UserError('--compare found none of %s in %s: train them first'
                        % (', '.join(os.path.basename(f.best) for f, _ in compared_runs(args)), args.ckpt_dir))
    path = comparison_path(args.out_dir, args.dataset)  # run() made --out_dir (writable_folder)
    with saved(path, NO_CHECKPOINT_CHANGED):
        pictures.plot_comparison(path, rows, num_classes, class_names)
    print('comparison figure: %s (%d rows)' % (path, len(rows)))
    return path


def verified_runs(args, files, source):
    """[(RunFiles, checkpoint)] that --verify measures: the run of ``files`` (read: ``source``),
    or each of --prefix A,B,C."""
    if not args.prefixes or len(args.prefixes) == 1:
        return [(files, source)]
    runs = [RunFiles(args.ckpt_dir, args.out_dir, prefix) for prefix in args.prefixes]
    return [(f, source if source.path == f.best else load_checkpoint(f.best, f.hint())) for f in runs]


def verify(args, rt, raw, loaded, runs):
    """--verify: the open-set figures (verification.py) of each run's best checkpoint, on the
    test images of the classes it held out (or of every class); a JSON and ROC figure per run,
    and one figure of every curve when there are several runs."""
    curves = []
    for i, (files, ckpt) in enumerate(runs):
        arch, data = data_of(args, rt, raw, ckpt, loaded)
        net = build_net(arch, rt.ctxs, ckpt)
        known = evaluation.forward_all(net, data['test_x'])[1].asnumpy()
        if data['held_x'] is not None:
            features = evaluation.forward_all(net, data['held_x'])[1].asnumpy()
            labels, which = data['held_y'].asnumpy().astype(int), 'held-out classes %s' % flag_value(arch.holdout)
        else:
            features, labels = known, data['classes'][data['test_y'].asnumpy().astype(int)]
            which = 'all %d classes (none held out)' % len(data['classes'])
        if len(np.unique(labels)) < 2:
            raise UserError('--verify needs test images of at least two classes; %s has only class %d'
                            % ('--test_samples %d' % args.test_samples if args.test_samples else 'the test set',
                               labels[0]))
        tic = time.time()
        result = dict(prefix=files.prefix, checkpoint=ckpt.path, epoch=ckpt.meta['epoch'], dataset=args.dataset,
                      feature_size=arch.feature_size, holdout=list(arch.holdout),
                      trained_classes=data['classes'].tolist(), images=len(labels))
        for metric in verification.METRICS:
            try:
                result[metric] = verification.verify(features, labels, metric)
            except ValueError as e:
                raise UserError('--verify: %s' % e)
            if data['held_x'] is not None:
                result[metric]['open_set_auroc'] = verification.open_set_auroc(known, features,
                                                                               ckpt.centers.asnumpy(), metric)
        report_verification(result, which, time.time() - tic)
        with saved(args.out_dir, NO_CHECKPOINT_CHANGED):
            write_json(files.verify_json, result)
            pictures.plot_roc(files.roc, roc_curves(result), '%s (epoch %d): pairs of %d test images of %s'
                              % (files.prefix, result['epoch'], len(labels), which))
        print('verification: %s, %s' % (files.verify_json, files.roc))
        curves += roc_curves(result, files.prefix + ', ', 'C%d' % i)
    if len(runs) > 1:
        path = verify_path(args.out_dir, args.dataset)
        with saved(path, NO_CHECKPOINT_CHANGED):
            pictures.plot_roc(path, curves, '%s: ROC of each run, all pairs of its test images' % args.dataset)
        print('verification figure: %s (%d runs)' % (path, len(runs)))


def roc_curves(result, label='', color=''):
    """A run's curves for pictures.plot_roc: one colour per run, cosine solid, Euclidean dashed."""
    return [('%s%s (AUC %.4f)' % (label, metric, result[metric]['auc']), result[metric]['roc']['far'],
             result[metric]['roc']['tar'], color + style) for metric, style in zip(verification.METRICS, ('-', '--'))]


def report_verification(result, which, seconds):
    print('verify %s (epoch %d): %d test images of %s, %d pairs (%d same-class), %.1fs'
          % (result['prefix'], result['epoch'], result['images'], which, result['cosine']['pairs'],
             result['cosine']['same_class_pairs'], seconds))
    for metric in verification.METRICS:
        r = result[metric]
        lfw = r['lfw_protocol']
        print('  %-9s AUC %.4f  EER %.4f  TAR %s at FAR %s  LFW-style %d pairs %.4f +- %.4f%s'
              % (metric, r['auc'], r['eer'], ' / '.join('%.4f' % r['tar_at_far_%g' % f] for f in verification.FARS),
                 ' / '.join('%g' % f for f in verification.FARS), lfw['pairs'], lfw['accuracy_mean'],
                 lfw['accuracy_std'], '  open-set AUROC %.4f' % r['open_set_auroc'] if 'open_set_auroc' in r else ''))


def verify_pairs(args, rt, runs):
    """--verify --pairs FILE: the figures of each run's best checkpoint on a given pair list (LFW's
    pairs.txt resolved against --pairs_dir, or an insightface .bin): AUC, EER, TAR at FAR and the
    accuracy of each of its folds at the threshold best on the others."""
    folder = args.pairs_dir or (os.path.join(args.data_dir, 'test') if args.data_dir else None)
    try:
        pair_list = read_pairs(args.pairs, folder)
    except SourceError as e:
        raise UserError('--pairs: %s' % e)
    curves = []
    for i, (files, ckpt) in enumerate(runs):
        arch = Arch.of(ckpt)
        net = build_net(arch, rt.ctxs, ckpt)
        mean, std = ckpt.meta.get('normalisation', (0.0, 1.0))
        tic = time.time()
        features = pair_features(net, arch, mean, std, pair_list, rt.ctxs[0])
        result = dict(prefix=files.prefix, checkpoint=ckpt.path, epoch=ckpt.meta['epoch'], pairs_file=args.pairs,
                      images=len(pair_list.images))
        for metric in verification.METRICS:
            try:
                result[metric] = verification.verify_pairs(features, pair_list.pairs, pair_list.same,
                                                            pair_list.folds, metric)
            except ValueError as e:
                raise UserError('--pairs: %s' % e)
        print('verify %s (epoch %d) on %s: %d pairs (%d same) of %d images, %.1fs'
              % (files.prefix, result['epoch'], pair_list.name, len(pair_list.same), int(pair_list.same.sum()),
                 len(pair_list.images), time.time() - tic))
        for metric in verification.METRICS:
            r = result[metric]
            print('  %-9s AUC %.4f  EER %.4f  TAR %s at FAR %s  %d-fold accuracy %.4f +- %.4f'
                  % (metric, r['auc'], r['eer'], ' / '.join('%.4f' % r['tar_at_far_%g' % f] for f in verification.FARS),
                     ' / '.join('%g' % f for f in verification.FARS), r['folds']['folds'],
                     r['folds']['accuracy_mean'], r['folds']['accuracy_std']))
        json_path, roc_path = files.output('pairs.json'), files.output('pairs-roc.png')
        with saved(args.out_dir, NO_CHECKPOINT_CHANGED):
            write_json(json_path, result)
            pictures.plot_roc(roc_path, roc_curves(result), '%s (epoch %d): the pairs of %s'
                              % (files.prefix, result['epoch'], pair_list.name))
        print('verification: %s, %s' % (json_path, roc_path))
        curves += roc_curves(result, files.prefix + ', ', 'C%d' % i)


def pair_features(net, arch, mean, std, pair_list, ctx, chunk=256):
    """Features of every image of ``pair_list``, decoded and normalised as the checkpoint's training images."""
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
        x = (nd.array(np.stack(pixels), ctx=ctx).astype('float32') / 255.0 - mean) / std
        out.append(net(x)[1].asnumpy())
    return np.concatenate(out)
