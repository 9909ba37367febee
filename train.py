"""Training: a stage built (network, centers, Trainers, schedule) and run epoch by epoch (train,
evaluate, report, draw, save), and one epoch's pass; the step itself is step.py's."""
import compat  # noqa: F401  (before mxnet)

import dataclasses
import time

import numpy as np
import mxnet as mx
from mxnet import gluon, nd
from tqdm import tqdm

import checkpoints
import evaluation
import frames as frames_mod
import pictures
import precision
import utils
from atomic import write_json
from center_loss import CenterLoss
from errors import Diverged, saved, signals_deferred
from models import build_net, head_title
from parallel import GradientReducer, param_checksum
from records import plural
from schedule import Schedule
from step import Objective, passes_per_epoch, steps_per_pass, train_step

# This project's targets on MNIST (2-D features), as test accuracies: the first epoch at
# which a stage reaches each is its time to accuracy, in the metrics JSON and its last line.
FLOORS = {'softmax': {'softmax': 0.991},
          'softmax + center loss': {'softmax': 0.992, 'center': 0.989},
          'center loss only': {'center': 0.990}}
FLOOR_DATASETS = ('mnist',)
FITTED = 0.9  # a stage whose last training accuracy is below this has not fit its images: it says so


@dataclasses.dataclass
class Stage:
    """What one stage trains with and keeps: made by build_stage, run by run_stage.

    kind: 'first' or 'second'; files: its RunFiles; source: the checkpoint it starts from (None for
    a new first stage); resumed: source is its own last checkpoint; arch, optim, center: its records
    (models.Arch, records.Optim, records.Center), ``described`` all of them as its checkpoints store
    them; metric: the accuracy that picks the best checkpoint; passes: over the training images in
    an epoch (more than one on a small set: records.Optim.min_epoch_steps).
    """
    kind: str
    files: object
    source: object
    resumed: bool
    arch: object
    optim: object
    center: object
    described: dict
    net: object
    center_loss: object
    objective: object
    trainer: object
    center_trainer: object
    reducer: object
    metric: str
    schedule: object
    passes: int
    history: list
    best: float
    projection: object
    plot_idx: object
    frames: object = None

    @property
    def title(self):
        if self.kind == 'second':
            return 'center loss only'
        return 'softmax + center loss' if self.center_loss is not None else 'softmax'

    @property
    def shown(self):
        """What the stage's report line and pictures call it: ``title`` (the loss: a key of FLOORS and the
        metrics' record) with a margin head named, so that a CosFace run is not drawn as 'softmax'."""
        head = head_title(self.arch.head, self.arch.scale, self.arch.margin)
        if not head or self.kind == 'second':  # the second stage trains center loss alone, the head frozen
            return self.title
        return head + (' + center loss' if self.center_loss is not None else '')


def build_stage(kind, arch, optim, center, output, described, rt, data, files, source):
    """A Stage of ``kind`` with these records, trained on ``data`` (data.Loaded), saved under
    ``files``, from checkpoint ``source`` (or new). Every array taken from the checkpoint is checked
    against what the network, the centers and the optimizers expect before anything runs."""
    second = kind == 'second'
    resumed = source is not None and source.path == files.last
    net = build_net(arch, rt.ctxs)
    if source is not None:
        checkpoints.restore_net(net, source)
    center_loss = None
    if second or center.center_loss:
        center_loss = CenterLoss(arch.num_classes, arch.feature_size, center.lmbd, update=center.center_update)
        center_loss.initialize(mx.init.Normal(0.01), ctx=rt.ctxs)
        if second or resumed:
            center_loss.centers.weight.set_data(checkpoints.checked_centers(source, arch.num_classes,
                                                                            arch.feature_size))
    if second:
        # Only the center loss drives this stage: the centers are frozen, and the
        # class layer keeps the first stage's weights (no weight decay on it
        # either), so softmax accuracy still reads off the moved features.
        center_loss.collect_params().setattr('grad_req', 'null')
        net.output.collect_params().setattr('grad_req', 'null')
    n = data.train_x.shape[0]
    passes = passes_per_epoch(n, optim.batch_size, optim.min_epoch_steps, rt.num_workers)
    schedule = Schedule.of(optim, steps_per_pass(passes * n, optim.batch_size, rt.num_workers),
                           0.0 if second else center.lmbd_warmup)
    trainer, center_trainer, reducer = build_trainers(optim, center.alpha, schedule, rt, net,
                                                      None if second else center_loss)
    if resumed:
        checkpoints.restore_trainer(trainer, source, 'net')
        if center_trainer is not None:
            checkpoints.restore_trainer(center_trainer, source, 'centers')
    objective = Objective(net, center_loss, softmax=not second)
    objective.hybridize(static_alloc=True, static_shape=True)
    state = source.meta if resumed else {}
    plot_idx = pictures.plot_sample(n, optim.seed)
    stage = Stage(kind, files, source, resumed, arch, optim, center, described, net, center_loss, objective, trainer,
                  center_trainer, reducer, output.eval_method or ('center' if second else 'softmax'), schedule,
                  passes, state.get('history', []), state.get('best', -1.0),
                  pictures.Projection(**state.get('projection', {})), plot_idx)
    stage.frames = frames_mod.Frames(plot_idx, data, output.frames, optim.epochs, optim.seed, schedule.steps)
    return stage


def build_trainers(optim, alpha, schedule, rt, net, center_loss):
    """(network Trainer, centers' Trainer or None, gradient reducer or None).

    The network's Trainer applies the schedule's rate (an mxnet.lr_scheduler) at each update. The
    centers learn by their own plain SGD at rate alpha, whatever the network's schedule. Across
    workers a GradientReducer sums every gradient, the network's and the centers', through the
    distributed KVStore, and the two Trainers update locally, so the schedule and alpha stay ours.
    """
    kvstore = None if rt.kv else rt.kvstore
    params = {k: v for k, v in net.collect_params().items() if v.grad_req != 'null'}
    opt_params = {'learning_rate': optim.lr, 'wd': optim.wd, 'lr_scheduler': schedule.rate()}
    if optim.optimizer == 'sgd':
        opt_params['momentum'] = optim.momentum
    trainer = gluon.Trainer(params, optim.optimizer, opt_params, kvstore=kvstore)
    center_trainer = None
    if center_loss is not None:
        center_trainer = gluon.Trainer(center_loss.collect_params(), 'sgd',
                                       {'learning_rate': alpha, 'momentum': 0.0, 'wd': 0.0}, kvstore=kvstore)
    reducer = None
    if rt.kv:
        reduced = list(params.values()) + (list(center_loss.collect_params().values()) if center_loss else [])
        reducer = GradientReducer(rt.kv, reduced)
    return trainer, center_trainer, reducer


def run_stage(stage, rt, data, output, dataset):
    """Train ``stage`` epoch by epoch: train, evaluate, report, draw, save; then the GIFs and curves.
    ``dataset``: the data's name, for the floors of MNIST."""
    optim = stage.optim
    if len(stage.history) >= optim.epochs:
        print('%s is complete (%s); nothing to resume' % (stage.files.prefix, plural(len(stage.history), 'epoch')))
        return
    start_stage(stage, rt, data, output)
    n = data.train_x.shape[0] * stage.passes
    for epoch in range(len(stage.history) + 1, optim.epochs + 1):
        tic = time.time()
        sums, seen, train_feat, frame_time = train_epoch(stage, rt, data, output, epoch)
        train_time = time.time() - tic - frame_time
        if epoch == len(stage.history) + 1 and rt.rank == 0:
            note = precision.check_cached(rt.cached, rt.precision, n / train_time)
            if note:
                print(note)
        if rt.rank != 0:  # every worker trains its slice of each batch; the first evaluates, saves and draws
            print('[%s] worker %d: epoch %2d/%d  train acc %.4f on its slices  %.1fs'
                  % (stage.files.prefix, rt.rank, epoch, optim.epochs, sums[2] / seen, train_time))
            continue
        record, test_feat, centers = evaluate_epoch(stage, data, output, epoch, sums / seen, train_feat)
        # The user sees an epoch finish with its report line: Ctrl-C or SIGTERM from then on
        # waits until its pictures and checkpoints are written.
        with signals_deferred(), saved(stage.files.out_dir):
            record.update(train_time=train_time, time=time.time() - tic, images=epoch * n)
            report(stage, record, n)
            if output.plotting:
                tic_draw = time.time()
                stage.frames.epoch_end(stage, data, record, train_feat, test_feat, centers)
                frame_time += time.time() - tic_draw
            previous = stage.history[-1]['seconds'] if stage.history else 0.0
            record.update(frame_time=frame_time, seconds=previous + time.time() - tic)
            stage.history.append(record)
            save_epoch(stage, rt, data, record, centers, dataset)
    with saved(stage.files.out_dir):
        finish_stage(stage, rt, output, dataset)


def start_stage(stage, rt, data, output):
    """Say what the stage does; a new stage's output set replaces the old one's."""
    if stage.resumed:
        print('resuming %s after epoch %d from %s' % (stage.files.prefix, len(stage.history), stage.source.path))
    elif stage.kind == 'second':
        print('second stage from %s (epoch %d), centers frozen' % (stage.source.path, stage.source.meta['epoch']))
    if not stage.resumed and rt.rank == 0:
        with saved(stage.files.out_dir):
            stage.files.remove_outputs()
    optim, center, schedule = stage.optim, stage.center, stage.schedule
    text = ''
    if stage.center_loss is not None:
        text = ', lmbd %g%s, alpha %g, %s update' % (
            center.lmbd, ' (warm-up %g epochs)' % schedule.lmbd_warmup if schedule.lmbd_warmup else '', center.alpha,
            center.center_update)
    n = data.train_x.shape[0]
    passes = 'one pass over the %d training images' % n if stage.passes == 1 else \
        '%d passes over the %d training images: an epoch is at least %d steps' % (
            stage.passes, n, optim.min_epoch_steps)
    print('%s stage "%s": %s, %s of %d steps (%s), %d steps in all; %s, batch %d, shifts up to %d px%s'
          % (stage.kind, stage.files.prefix, stage.shown, plural(optim.epochs, 'epoch'), schedule.steps, passes,
             schedule.total, schedule.describe(), optim.batch_size, optim.shift, text))


def evaluate_epoch(stage, data, output, epoch, means, train_feat):
    """(the epoch's record, test features, centers): losses and accuracies by each method.
    ``means``: the epoch's mean softmax loss, center loss and training accuracy."""
    if stage.center_loss is not None:
        centers = stage.center_loss.centers.weight.data(train_feat.context)
    else:  # softmax alone has no centers: use the class means for nearest-center
        centers = evaluation.class_means(train_feat, data.train_y, stage.arch.num_classes)
    test_scores, test_feat = evaluation.forward_all(stage.net, data.test_x)
    last_step = epoch * stage.schedule.steps - 1
    record = dict(epoch=epoch, lr=stage.schedule.lr_at(last_step),
                  loss_softmax=None if stage.kind == 'second' else float(means[0]),
                  loss_center=float(means[1]) if stage.center_loss is not None else None,
                  train_acc=float(means[2]),
                  test_acc_softmax=evaluation.accuracy(evaluation.predict_softmax(test_scores), data.test_y),
                  test_acc_center=evaluation.accuracy(evaluation.predict_center(test_feat, centers), data.test_y))
    if stage.metric == 'knn':
        record['test_acc_knn'] = evaluation.accuracy(evaluation.predict_knn(
            test_feat, train_feat, data.train_y, min(output.knn_k, data.train_x.shape[0]), stage.arch.num_classes),
            data.test_y)
    return record, test_feat, centers


def report(stage, record, n):
    def loss(key):
        return '-' if record[key] is None else '%.4f' % record[key]
    print('[%s] epoch %2d/%d  lr %.4g  loss: softmax %s center %s  train acc %.4f  test acc: softmax %.4f '
          'center %.4f%s  %.1fs (%d img/s)'
          % (stage.files.prefix, record['epoch'], stage.optim.epochs, record['lr'], loss('loss_softmax'),
             loss('loss_center'), record['train_acc'], record['test_acc_softmax'], record['test_acc_center'],
             '  knn %.4f' % record['test_acc_knn'] if stage.metric == 'knn' else '', record['time'],
             n / record['train_time']))


def time_to_floors(stage, dataset):
    """{'softmax >= 0.992': {'epoch', 'images', 'seconds'} or None, ...}: the first epoch of the
    stage's history at which each of its floors (FLOORS) held; {} where none apply."""
    if dataset not in FLOOR_DATASETS or stage.arch.holdout:
        return {}
    reached = {}
    for method, floor in FLOORS[stage.title].items():
        first = next((h for h in stage.history if h['test_acc_' + method] >= floor), None)
        reached['%s >= %g' % (method, floor)] = None if first is None else {
            k: first[k] for k in ('epoch', 'images', 'seconds')}
    return reached


def save_epoch(stage, rt, data, record, centers, dataset):
    """The last checkpoint (with optimizer states, to resume), the best one when it improved, the metrics."""
    improved = record['test_acc_' + stage.metric] > stage.best
    stage.best = max(stage.best, record['test_acc_' + stage.metric])
    meta = dict(run=stage.described, stage=stage.kind, prefix=stage.files.prefix, classes=data.classes.tolist(),
                normalisation=data.normalisation, precision=rt.precision, epoch=record['epoch'], metrics=record,
                best=stage.best, history=stage.history, projection=stage.projection.state())
    trainers = {'net': stage.trainer}
    if stage.center_trainer is not None:
        trainers['centers'] = stage.center_trainer
    checkpoints.save_checkpoint(stage.files.last, stage.net, centers, meta, trainers)
    if improved:
        checkpoints.save_checkpoint(stage.files.best, stage.net, centers, meta)
    write_json(stage.files.metrics, dict(
        prefix=stage.files.prefix, stage=stage.kind, loss=stage.title, cpu=compat.cpu_name(),
        precision=rt.precision, images_per_epoch=data.train_x.shape[0] * stage.passes,
        floors=time_to_floors(stage, dataset), epochs=stage.history))


def finish_stage(stage, rt, output, dataset):
    """The stage's GIFs and curves, and where its checkpoints are, when it reached its floors, and
    whether it fit its training images."""
    if rt.kv:  # dist_sync keeps every worker's copy identical: this lets one check it
        print('[%s] worker %d: parameter checksum %.10e'
              % (stage.files.prefix, rt.rank, param_checksum(stage.net, stage.center_loss)))
    if rt.rank != 0:
        return
    files = stage.files
    if output.plotting:
        frames_mod.make_gifs(files, stage.optim.epochs)
        pictures.plot_curves(files.curves, stage.history, '%s: %s' % (files.prefix, stage.shown))
        print('pictures: %s, %s' % (', '.join(files.gif(s) for s in ('train', 'test')), files.curves))
    reached = ['%s %s' % (floor, 'not reached' if at is None else 'at epoch %d (%d images, %.0f s)' % (
        at['epoch'], at['images'], at['seconds'])) for floor, at in time_to_floors(stage, dataset).items()]
    print('best test accuracy (%s) %.4f; %scheckpoints: %s, %s'
          % (stage.metric, stage.best, 'time to accuracy: %s; ' % ', '.join(reached) if reached else '',
             files.best, files.last))
    last = stage.history[-1]['train_acc']
    if last < FITTED:
        print('note: the training accuracy is %.4f after %s (%d steps): the network has not fit its training '
              'images yet; give it more steps (--epochs, or --min_epoch_steps on a small set)%s'
              % (last, plural(stage.optim.epochs, 'epoch'), stage.schedule.total,
                 ', or a lower --lmbd' if stage.center_loss is not None and stage.kind == 'first' else ''))


# --------------------------------------------------------------------------- an epoch

def train_epoch(stage, rt, data, output, epoch):
    """One epoch: one shuffled pass over the training set (several on a small set), drawing the
    frames that fall within it.

    With N workers, each batch is a global batch of N x batch_size images in
    the order one process would take them, and worker k trains on the k-th
    slice of each (np.array_split: slices differ by at most one image); the
    center loss sees the class counts of the whole global batch. So N workers
    take exactly the steps of one process at N x batch_size.

    Returns (sums of softmax loss, center loss and correct predictions over this
    worker's images, as numpy), their number, the training features in the
    dataset's order on the first device (with several workers, from a forward
    pass over the whole training set after the epoch), and the seconds spent drawing.
    """
    train_x, train_y, optim = data.train_x, data.train_y, stage.optim
    ctx, workers, bs, n = rt.ctxs[0], rt.num_workers, optim.batch_size * rt.num_workers, train_x.shape[0]
    # Each epoch's order depends only on (seed, epoch): a resumed run sees the same batches.
    rng = np.random.RandomState([optim.seed, epoch])
    order = np.concatenate([rng.permutation(n) for _ in range(stage.passes)])
    steps = steps_per_pass(len(order), optim.batch_size, workers)  # the schedule's steps per epoch
    if optim.shift:  # one offset per place in the epoch's order, also from (seed, epoch)
        shifts = nd.array(rng.randint(-optim.shift, optim.shift + 1, size=(len(order), 2)), ctx=ctx)
    # Running sums and per-batch losses stay on the device: reading them back is a
    # sync point, so it happens every `sync_every` batches, not every batch.
    sums = nd.zeros((3,), ctx=ctx)                   # softmax loss, center loss, correct predictions
    batch_loss = nd.zeros((steps,), ctx=ctx)         # to name the batch where a loss went NaN
    feats, mine_all, sync_every, frame_time = [], [], 50, 0.0
    bar = tqdm(range(steps), desc='%s %d/%d' % (stage.files.prefix, epoch, optim.epochs), leave=False, disable=None)
    places = [np.arange(b * bs, min((b + 1) * bs, len(order))) for b in range(steps)]
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
        if optim.shift:
            x = utils.random_shift(x, shifts[int(places[b][0]):int(places[b][-1]) + 1], data.background, optim.shift)
        step = (epoch - 1) * steps + b
        if stage.schedule.kind == 'onecycle' and hasattr(stage.trainer._optimizer, 'momentum'):
            stage.trainer._optimizer.momentum = stage.schedule.momentum_at(step)  # the rate: the Trainer's scheduler
        if stage.kind == 'first' and hasattr(stage.net.output, 'anneal'):  # SphereFace: its lambda at this step
            stage.net.output.anneal(step)
        for loss, l_s, l_c, scores, features, y_dev in train_step(
                stage.objective, stage.trainer, stage.center_trainer, x, y, rt.ctxs, stage.arch.num_classes,
                stage.reducer, counts=counts, batch_size=len(batch), warm=stage.schedule.lmbd_factor(step)):
            batch_loss[b] += loss.sum().as_in_context(ctx)
            sums += nd.concat(l_s.sum(), l_c.sum(), (nd.argmax(scores, axis=1) == y_dev).sum(),
                              dim=0).as_in_context(ctx)
            feats.append(features.as_in_context(ctx))
        mine_all.append(mine)
        drawing = output.plotting and rt.rank == 0 and stage.frames.due(b + 1)
        if drawing or (b + 1) % sync_every == 0 or b + 1 == steps:
            check_finite(batch_loss, b, epoch, steps, stage)
            s, seen = sums.asnumpy(), sum(len(m) for m in mine_all)
            bar.set_postfix(loss='%.4f' % ((s[0] + s[1]) / seen), acc='%.4f' % (s[2] / seen))
        if drawing:
            tic = time.time()
            with saved(stage.files.out_dir):
                stage.frames.within(stage, data, epoch, b + 1, feats, mine_all, s[2] / seen)
            frame_time += time.time() - tic
    bar.close()
    mine_all = np.concatenate(mine_all)
    return sums.asnumpy(), len(mine_all), training_features(rt, stage, train_x, feats, mine_all), frame_time


def training_features(rt, stage, train_x, feats, seen):
    """The features of the whole training set in dataset order: as this epoch's forward passes
    last saw them (``feats`` of the images ``seen``, in that order), or, where this worker did not
    see every image, from one more forward pass (rank 0 only: the others need none)."""
    last = np.full(train_x.shape[0], -1, np.int64)
    images, at = latest(seen)  # an image seen twice (several passes): its later place
    last[images] = at
    if (last < 0).any():
        return evaluation.forward_all(stage.net, train_x)[1] if rt.rank == 0 else None
    return nd.take(nd.concat(*feats, dim=0), nd.array(last, ctx=rt.ctxs[0], dtype='int32'))


def latest(seen):
    """(the images of ``seen``, the place of each one's last occurrence in it)."""
    images, from_end = np.unique(seen[::-1], return_index=True)
    return images, len(seen) - 1 - from_end


def check_finite(batch_loss, b, epoch, num_batches, stage):
    """Stop the stage at the first batch (up to ``b``) whose loss is NaN or infinite."""
    bad = np.flatnonzero(~np.isfinite(batch_loss[:b + 1].asnumpy()))
    if len(bad):
        raise Diverged('the loss became %s in epoch %d at batch %d of %d; the stage stopped and its checkpoints '
                       'of earlier epochs are kept: lower --lr%s, or lengthen the warm-up (--warmup)'
                       % (batch_loss[int(bad[0])].asscalar(), epoch, bad[0] + 1, num_batches,
                          ' or --lmbd' if stage.center_loss is not None else ''))
