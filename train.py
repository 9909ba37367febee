"""Training: the objective of a step, a stage built (network, centers, Trainers, schedule) and
run epoch by epoch (train, evaluate, report, draw, save), one epoch's pass, and one step."""
import compat  # noqa: F401  (before mxnet)

import os
import time

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd
from tqdm import tqdm

import checkpoints
import evaluation
import frames as frames_mod
import pictures
import utils
from center_loss import CenterLoss
from errors import UserError, saved, signals_deferred
from models import build_net, resolve_arch
from parallel import GradientReducer, param_checksum
from runfiles import write_json
from schedule import Schedule

# This project's targets on MNIST (2-D features), as test accuracies: the first epoch at
# which a stage reaches each is its time to accuracy, in the metrics JSON and its last line.
FLOORS = {'softmax': {'softmax': 0.991},
          'softmax + center loss': {'softmax': 0.992, 'center': 0.989},
          'center loss only': {'center': 0.990}}
FLOOR_DATASETS = ('mnist',)


class Objective(gluon.HybridBlock):
    """One graph for a training step: scores, features, and the per-sample
    softmax and center losses (either may be switched off). ``counts`` are the
    class counts of the whole batch, which may be split across devices.

    ``warm`` (shape (1,)) is the share of lambda the features feel (schedule.py:
    the center loss's warm-up). The center loss sees features whose value is
    unchanged but whose gradient is scaled by it; the centers' own gradient is not."""

    def __init__(self, net, center_loss=None, softmax=True, **kwargs):
        super(Objective, self).__init__(**kwargs)
        self.net = net
        self.center_loss = center_loss
        self.ce = gluon.loss.SoftmaxCrossEntropyLoss() if softmax else None

    def hybrid_forward(self, F, x, y, counts=None, warm=None):
        scores, features = self.net(x)
        l_s = self.ce(scores, y) if self.ce is not None else F.zeros_like(y)
        if self.center_loss is None:
            l_c = F.zeros_like(y)
        else:
            pulled = F.broadcast_mul(features, warm) + F.broadcast_mul(F.stop_gradient(features), 1 - warm)
            l_c = self.center_loss(pulled, y, counts)
        return l_s + l_c, l_s, l_c, scores, features


# --------------------------------------------------------------------------- a stage: built, then run

class Stage(object):
    """What one stage trains with and keeps: made by build_stage, run by run_stage.

    kind: 'first' or 'second'; files: its RunFiles; source: the checkpoint it
    starts from (None for a new first stage); resumed: source is its own last
    checkpoint; metric: the accuracy that picks the best checkpoint.
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    @property
    def title(self):
        if self.kind == 'second':
            return 'center loss only'
        return 'softmax + center loss' if self.center_loss is not None else 'softmax'


def steps_per_epoch(n, batch_size, workers):
    """Steps of an epoch of ``n`` images in global batches of ``batch_size`` x ``workers``; a last
    global batch of fewer images than workers is skipped (it cannot give each a slice)."""
    bs = batch_size * workers
    return n // bs + (n % bs >= workers)


def build_stage(args, rt, data, files, kind, source):
    """A Stage of ``kind`` trained on ``data``, saved under ``files``, from checkpoint ``source`` (or new)."""
    second = kind == 'second'
    resumed = source is not None and source.path == files.last
    arch = resolve_arch(args, len(data['class_names']), source,
                        (data['train_x'].shape[1], tuple(data['train_x'].shape[2:])))
    net = build_net(arch, rt.ctxs, source)
    center_loss = None
    if second or args.center_loss:
        center_loss = CenterLoss(arch.num_classes, arch.feature_size, args.lmbd, update=args.center_update)
        center_loss.initialize(mx.init.Normal(0.01), ctx=rt.ctxs)
        if second or resumed:
            center_loss.centers.weight.set_data(source.centers)
    if second:
        # Only the center loss drives this stage: the centers are frozen, and the
        # class layer keeps the first stage's weights (no weight decay on it
        # either), so softmax accuracy still reads off the moved features.
        center_loss.collect_params().setattr('grad_req', 'null')
        net.output.collect_params().setattr('grad_req', 'null')
    trainer, center_trainer, reducer = build_trainers(args, rt, net, None if second else center_loss)
    if resumed:
        checkpoints.restore_trainer(trainer, source, 'net')
        if center_trainer is not None:
            checkpoints.restore_trainer(center_trainer, source, 'centers')
    objective = Objective(net, center_loss, softmax=not second)
    objective.hybridize(static_alloc=True, static_shape=True)
    state = source.meta if resumed else {}
    steps = steps_per_epoch(data['train_x'].shape[0], args.batch_size, rt.num_workers)
    schedule = Schedule(args.lr_schedule, args.lr, args.epochs, steps, warmup=args.warmup, lr_step=args.lr_step,
                        lr_factor=args.lr_factor, final=args.lr_final, momentum=args.momentum,
                        momentum_low=args.momentum_low, lmbd_warmup=0.0 if second else args.lmbd_warmup)
    stage = Stage(kind=kind, files=files, source=source, resumed=resumed, arch=arch, net=net,
                  center_loss=center_loss, objective=objective, trainer=trainer, center_trainer=center_trainer,
                  reducer=reducer, metric=args.eval_method or ('center' if second else 'softmax'),
                  schedule=schedule, history=state.get('history', []), best=state.get('best', -1.0),
                  projection=pictures.Projection(**state.get('projection', {})),
                  plot_idx=pictures.plot_sample(data['train_x'].shape[0], args.seed))
    stage.frames = frames_mod.Frames(stage, data, args.frames, args.epochs, args.seed, steps)
    return stage


def build_trainers(args, rt, net, center_loss):
    """(network Trainer, centers' Trainer or None, gradient reducer or None).

    The centers learn by their own plain SGD at rate alpha, whatever the
    network's schedule. Across workers a GradientReducer sums every gradient,
    the network's and the centers', through the distributed KVStore, and the
    two Trainers update locally, so the learning-rate schedule and the
    centers' alpha stay ours.
    """
    kvstore = None if rt.kv else args.kvstore
    params = {k: v for k, v in net.collect_params().items() if v.grad_req != 'null'}
    opt_params = {'learning_rate': args.lr, 'wd': args.wd}
    if args.optimizer == 'sgd':
        opt_params['momentum'] = args.momentum
    trainer = gluon.Trainer(params, args.optimizer, opt_params, kvstore=kvstore)
    center_trainer = None
    if center_loss is not None:
        center_trainer = gluon.Trainer(center_loss.collect_params(), 'sgd',
                                       {'learning_rate': args.alpha, 'momentum': 0.0, 'wd': 0.0}, kvstore=kvstore)
    reducer = None
    if rt.kv:
        reduced = list(params.values()) + (list(center_loss.collect_params().values()) if center_loss else [])
        reducer = GradientReducer(rt.kv, reduced)
    return trainer, center_trainer, reducer


def run_stage(args, rt, data, stage):
    """Train ``stage`` epoch by epoch: train, evaluate, report, draw, save; then the GIFs and curves."""
    if len(stage.history) >= args.epochs:
        print('%s is complete (%d epochs); nothing to resume' % (stage.files.prefix, len(stage.history)))
        return
    start_stage(args, rt, stage)
    n = data['train_x'].shape[0]
    for epoch in range(len(stage.history) + 1, args.epochs + 1):
        tic = time.time()
        sums, seen, train_feat, frame_time = train_epoch(args, rt, data, stage, epoch)
        train_time = time.time() - tic - frame_time
        if rt.rank != 0:  # every worker trains its slice of each batch; the first evaluates, saves and draws
            print('[%s] worker %d: epoch %2d/%d  train acc %.4f on its slices  %.1fs'
                  % (stage.files.prefix, rt.rank, epoch, args.epochs, sums[2] / seen, train_time))
            continue
        record, test_feat, centers = evaluate_epoch(args, data, stage, epoch, sums / seen, train_feat)
        # The user sees an epoch finish with its report line: Ctrl-C or SIGTERM from then on
        # waits until its pictures and checkpoints are written.
        with signals_deferred(), saved(args.out_dir):
            record.update(train_time=train_time, time=time.time() - tic, images=epoch * n)
            report(args, stage, record, n)
            if args.plotting:
                tic_draw = time.time()
                stage.frames.epoch_end(args, data, record, train_feat, test_feat, centers)
                frame_time += time.time() - tic_draw
            previous = stage.history[-1]['seconds'] if stage.history else 0.0
            record.update(frame_time=frame_time, seconds=previous + time.time() - tic)
            stage.history.append(record)
            save_epoch(args, rt, data, stage, record, centers)
    with saved(args.out_dir):
        finish_stage(args, rt, data, stage)


def start_stage(args, rt, stage):
    """Say what the stage does; a new stage's output set replaces the old one's."""
    if stage.resumed:
        print('resuming %s after epoch %d from %s' % (stage.files.prefix, len(stage.history), stage.source.path))
    elif stage.kind == 'second':
        print('second stage from %s (epoch %d), centers frozen' % (stage.source.path, stage.source.meta['epoch']))
    if not stage.resumed and rt.rank == 0:
        with saved(args.out_dir):
            stage.files.remove_outputs()
    center = ''
    if stage.center_loss is not None:
        center = ', lmbd %g%s, alpha %g, %s update' % (
            args.lmbd, ' (warm-up %g epochs)' % args.lmbd_warmup if stage.schedule.lmbd_warmup else '', args.alpha,
            args.center_update)
    print('%s stage "%s": %s, %s, %s, batch %d, shifts up to %d px%s'
          % (stage.kind, stage.files.prefix, stage.title, plural(args.epochs, 'epoch'), stage.schedule.describe(),
             args.batch_size, args.shift, center))


def evaluate_epoch(args, data, stage, epoch, means, train_feat):
    """(the epoch's record, test features, centers): losses and accuracies by each method.
    ``means``: the epoch's mean softmax loss, center loss and training accuracy."""
    test_y = data['test_y']
    if stage.center_loss is not None:
        centers = stage.center_loss.centers.weight.data(train_feat.context)
    else:  # softmax alone has no centers: use the class means for nearest-center
        centers = evaluation.class_means(train_feat, data['train_y'], stage.arch.num_classes)
    test_scores, test_feat = evaluation.forward_all(stage.net, data['test_x'])
    last_step = epoch * stage.schedule.steps - 1
    record = dict(epoch=epoch, lr=stage.schedule.lr_at(last_step),
                  loss_softmax=None if stage.kind == 'second' else float(means[0]),
                  loss_center=float(means[1]) if stage.center_loss is not None else None,
                  train_acc=float(means[2]),
                  test_acc_softmax=evaluation.accuracy(evaluation.predict_softmax(test_scores), test_y),
                  test_acc_center=evaluation.accuracy(evaluation.predict_center(test_feat, centers), test_y))
    if stage.metric == 'knn':
        record['test_acc_knn'] = evaluation.accuracy(evaluation.predict_knn(
            test_feat, train_feat, data['train_y'], args.knn_k, stage.arch.num_classes), test_y)
    return record, test_feat, centers


def report(args, stage, record, n):
    def loss(key):
        return '-' if record[key] is None else '%.4f' % record[key]
    print('[%s] epoch %2d/%d  lr %.4g  loss: softmax %s center %s  train acc %.4f  test acc: softmax %.4f '
          'center %.4f%s  %.1fs (%d img/s)'
          % (stage.files.prefix, record['epoch'], args.epochs, record['lr'], loss('loss_softmax'), loss('loss_center'),
             record['train_acc'], record['test_acc_softmax'], record['test_acc_center'],
             '  knn %.4f' % record['test_acc_knn'] if stage.metric == 'knn' else '', record['time'],
             n / record['train_time']))


def time_to_floors(args, stage):
    """{'softmax >= 0.992': {'epoch', 'images', 'seconds'} or None, ...}: the first epoch of the
    stage's history at which each of its floors (FLOORS) held; {} where none apply."""
    if args.dataset not in FLOOR_DATASETS or stage.arch.holdout:
        return {}
    reached = {}
    for method, floor in FLOORS[stage.title].items():
        first = next((h for h in stage.history if h['test_acc_' + method] >= floor), None)
        reached['%s >= %g' % (method, floor)] = None if first is None else {
            k: first[k] for k in ('epoch', 'images', 'seconds')}
    return reached


def save_epoch(args, rt, data, stage, record, centers):
    """The last checkpoint (with optimizer states, to resume), the best one when it improved, the metrics."""
    improved = record['test_acc_' + stage.metric] > stage.best
    stage.best = max(stage.best, record['test_acc_' + stage.metric])
    meta = dict(stage.arch._asdict(), dataset=args.dataset, data_dir=os.path.abspath(args.data_dir)
                if args.data_dir else None, train_samples=args.train_samples, stage=stage.kind,
                prefix=stage.files.prefix, classes=data['classes'].tolist(), normalisation=data['normalisation'],
                center_loss=stage.center_loss is not None, precision=rt.precision, epoch=record['epoch'],
                metrics=record, best=stage.best, history=stage.history, projection=stage.projection.state())
    trainers = {'net': stage.trainer}
    if stage.center_trainer is not None:
        trainers['centers'] = stage.center_trainer
    checkpoints.save_checkpoint(stage.files.last, stage.net, centers, meta, trainers)
    if improved:
        checkpoints.save_checkpoint(stage.files.best, stage.net, centers, meta)
    write_json(stage.files.metrics, dict(
        prefix=stage.files.prefix, stage=stage.kind, loss=stage.title, cpu=compat.cpu_name(),
        precision=rt.precision, images_per_epoch=data['train_x'].shape[0], floors=time_to_floors(args, stage),
        epochs=stage.history))


def finish_stage(args, rt, data, stage):
    """The stage's GIFs and curves, and where its checkpoints are, and when it reached its floors."""
    if rt.kv:  # dist_sync keeps every worker's copy identical: this lets one check it
        print('[%s] worker %d: parameter checksum %.10e'
              % (stage.files.prefix, rt.rank, param_checksum(stage.net, stage.center_loss)))
    if rt.rank != 0:
        return
    files = stage.files
    if args.plotting:
        frames_mod.make_gifs(files, args.epochs)
        pictures.plot_curves(files.curves, stage.history, '%s: %s' % (files.prefix, stage.title))
        print('pictures: %s, %s' % (', '.join(files.gif(s) for s in ('train', 'test')), files.curves))
    reached = ['%s %s' % (floor, 'not reached' if at is None else 'at epoch %d (%d images, %.0f s)' % (
        at['epoch'], at['images'], at['seconds'])) for floor, at in time_to_floors(args, stage).items()]
    print('best test accuracy (%s) %.4f; %scheckpoints: %s, %s'
          % (stage.metric, stage.best, 'time to accuracy: %s; ' % ', '.join(reached) if reached else '',
             files.best, files.last))


def plural(n, word):
    return '%d %s%s' % (n, word, '' if n == 1 else 's')


# --------------------------------------------------------------------------- an epoch, and a step

def train_epoch(args, rt, data, stage, epoch):
    """One pass over the shuffled training set, drawing the frames that fall within it.

    With N workers, each batch is a global batch of N x --batch_size images in
    the order one process would take them, and worker k trains on the k-th
    slice of each (np.array_split: slices differ by at most one image); the
    center loss sees the class counts of the whole global batch. So N workers
    take exactly the steps of one process at N x --batch_size.

    Returns (sums of softmax loss, center loss and correct predictions over this
    worker's images, as numpy), their number, the training features in the
    dataset's order on the first device (with several workers, from a forward
    pass over the whole training set after the epoch), and the seconds spent drawing.
    """
    train_x, train_y = data['train_x'], data['train_y']
    n, ctx, workers = train_x.shape[0], rt.ctxs[0], rt.num_workers
    bs, num_batches, schedule = args.batch_size * workers, steps_per_epoch(n, args.batch_size, workers), stage.schedule
    # Each epoch's order depends only on (seed, epoch): a resumed run sees the same batches.
    rng = np.random.RandomState([args.seed, epoch])
    order = rng.permutation(n)
    if args.shift:  # one offset per place in the epoch's order, also from (seed, epoch)
        shifts = nd.array(rng.randint(-args.shift, args.shift + 1, size=(n, 2)), ctx=ctx)
    # Running sums and per-batch losses stay on the device: reading them back is a
    # sync point, so it happens every `sync_every` batches, not every batch.
    sums = nd.zeros((3,), ctx=ctx)                   # softmax loss, center loss, correct predictions
    batch_loss = nd.zeros((num_batches,), ctx=ctx)   # to name the batch where a loss went NaN
    feats, mine_all, sync_every, frame_time = [], [], 50, 0.0
    bar = tqdm(range(num_batches), desc='%s %d/%d' % (stage.files.prefix, epoch, args.epochs), leave=False,
               disable=None)
    places = [np.arange(b * bs, min((b + 1) * bs, n)) for b in range(num_batches)]
    if workers > 1:  # this worker's slice of each global batch
        places = [np.array_split(p, workers)[rt.rank] for p in places]
    # in memory: taken on the device; streamed: decoded by DataLoader workers a few batches ahead
    images = train_x.batches([order[p] for p in places])
    for b in bar:
        batch, mine = order[b * bs:(b + 1) * bs], order[places[b]]
        x, y = next(images), nd.take(train_y, nd.array(mine, ctx=ctx, dtype='int32'))
        counts = None  # one process: train_step counts its own batch; several: the whole global batch
        if workers > 1:
            counts = nd.one_hot(nd.take(train_y, nd.array(batch, ctx=ctx, dtype='int32')),
                                stage.arch.num_classes).sum(axis=0)
        if args.shift:
            x = utils.random_shift(x, shifts[int(places[b][0]):int(places[b][-1]) + 1], data['background'],
                                   args.shift)
        step = (epoch - 1) * schedule.steps + b
        set_step(stage, step)
        for loss, l_s, l_c, scores, features, y_dev in train_step(
                stage.objective, stage.trainer, stage.center_trainer, x, y, rt.ctxs, stage.arch.num_classes,
                stage.reducer, counts=counts, batch_size=len(batch), warm=schedule.lmbd_factor(step)):
            batch_loss[b] += loss.sum().as_in_context(ctx)
            sums += nd.concat(l_s.sum(), l_c.sum(), (nd.argmax(scores, axis=1) == y_dev).sum(),
                              dim=0).as_in_context(ctx)
            feats.append(features.as_in_context(ctx))
        mine_all.append(mine)
        drawing = args.plotting and rt.rank == 0 and stage.frames.due(b + 1)
        if drawing or (b + 1) % sync_every == 0 or b + 1 == num_batches:
            check_finite(batch_loss, b, epoch, num_batches, stage)
            s, seen = sums.asnumpy(), sum(len(m) for m in mine_all)
            bar.set_postfix(loss='%.4f' % ((s[0] + s[1]) / seen), acc='%.4f' % (s[2] / seen))
        if drawing:
            tic = time.time()
            with saved(args.out_dir):
                stage.frames.within(args, data, epoch, b + 1, feats, mine_all, s[2] / seen)
            frame_time += time.time() - tic
    bar.close()
    mine_all = np.concatenate(mine_all)
    return sums.asnumpy(), len(mine_all), training_features(rt, stage, train_x, feats, mine_all), frame_time


def set_step(stage, step):
    """The network's rate (and, for one-cycle, momentum) at ``step`` of the stage's schedule."""
    stage.trainer.set_learning_rate(stage.schedule.lr_at(step))
    if stage.schedule.kind == 'onecycle' and hasattr(stage.trainer._optimizer, 'momentum'):
        stage.trainer._optimizer.momentum = stage.schedule.momentum_at(step)


def training_features(rt, stage, train_x, feats, seen):
    """The features of the whole training set in dataset order: as this epoch's forward passes
    saw them (``feats`` of the images ``seen``, in that order), or, where this worker did not
    see every image, from one more forward pass (rank 0 only: the others need none)."""
    if len(seen) < train_x.shape[0]:
        return evaluation.forward_all(stage.net, train_x)[1] if rt.rank == 0 else None
    return nd.take(nd.concat(*feats, dim=0), nd.array(np.argsort(seen), ctx=rt.ctxs[0], dtype='int32'))


def check_finite(batch_loss, b, epoch, num_batches, stage):
    """Stop the stage at the first batch (up to ``b``) whose loss is NaN or infinite."""
    bad = np.flatnonzero(~np.isfinite(batch_loss[:b + 1].asnumpy()))
    if len(bad):
        raise UserError('the loss became %s in epoch %d at batch %d of %d; the stage stopped and its '
                        'checkpoints of earlier epochs are kept: lower --lr%s'
                        % (batch_loss[int(bad[0])].asscalar(), epoch, bad[0] + 1, num_batches,
                           ' or --lmbd' if stage.center_loss is not None else ''))


def train_step(objective, trainer, center_trainer, x, y, ctxs, num_classes, reducer=None, counts=None,
               batch_size=None, warm=1.0):
    """Forward, backward and update on one batch, split across ``ctxs``.

    Gradients are summed over devices (and over workers by ``reducer``, a
    GradientReducer) and divided by ``batch_size``, the images of the whole
    (global) batch, whose class counts are ``counts`` (by default those of
    ``y``), so several devices and workers take the same step as one. ``warm``:
    the share of lambda the features feel (Objective). Returns
    [(loss, softmax loss, center loss, scores, features, labels)] per device,
    in batch order.
    """
    if counts is None:
        counts = nd.one_hot(y, num_classes).sum(axis=0)  # class counts of the whole batch
    ctxs = ctxs[:x.shape[0]]
    xs = gluon.utils.split_and_load(x, ctxs, even_split=False)
    ys = gluon.utils.split_and_load(y, ctxs, even_split=False)
    with autograd.record():
        if objective.center_loss is None:  # softmax alone: the counts would be an unused input
            outs = [objective(x_dev, y_dev) for x_dev, y_dev in zip(xs, ys)]
        else:
            outs = [objective(x_dev, y_dev, counts.as_in_context(x_dev.context),
                              nd.full((1,), warm, ctx=x_dev.context)) for x_dev, y_dev in zip(xs, ys)]
    autograd.backward([out[0] for out in outs])
    batch_size = x.shape[0] if batch_size is None else batch_size
    if reducer is None:
        trainer.step(batch_size)
        if center_trainer is not None:
            center_trainer.step(batch_size)
    else:
        reducer.allreduce_grads()
        trainer.update(batch_size)
        if center_trainer is not None:
            center_trainer.update(batch_size)
    return [tuple(out) + (y_dev,) for out, y_dev in zip(outs, ys)]
