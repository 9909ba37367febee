"""A stage: built (network, centers, Trainers, schedule) and run epoch by epoch (train, evaluate,
report, draw, save), then its GIFs and curves; the epoch itself is training/epoch.py's, the step
training/step.py's."""
from devices import compat  # noqa: F401  (before mxnet)

import dataclasses
import os
import time
from typing import List, Optional

import numpy as np
import mxnet as mx
from mxnet import gluon, nd

import margins
from center_loss import CenterLoss
from devices import precision
from devices.parallel import GradientReducer, param_checksum
from evaluation import frames as frames_mod
from evaluation import pictures, predict, verify
from evaluation.frames import Frames
from faults.signals import signals_deferred
from faults.errors import saved
from models import build_net, head_title
from runs import checkpoints
from runs.checkpoints import Checkpoint
from runs.files import RunFiles
from runs.meta import Epoch, Run, Within
from runs.records import Arch, Center, Optim, Output, plural
from training import epoch as epochs
from training import floors
from training import saves
from training.schedule import Schedule
from training.step import Objective, passes_per_epoch, steps_per_pass

FITTED = 0.9  # a stage whose last training accuracy is below this has not fit its images: it says so


@dataclasses.dataclass
class Stage:
    """What one stage trains with and keeps: made by build_stage, run by run_stage.

    ``kind``: 'first' or 'second'; ``source``: the checkpoint it starts from (None for a new first
    stage), ``resumed``: its own last one; ``run``: the records its checkpoints store; ``metric``:
    the accuracy that picks the best checkpoint; ``passes``: over the training images in an epoch
    (more than one on a small set); ``reference``: the training images whose features an epoch
    keeps, ``reference_y`` their labels; what its frames draw: the training images ``plot_idx`` at
    ``drawn`` (their features as last computed, NaN before), labelled ``drawn_y``, and the test images
    ``test_drawn`` labelled ``test_drawn_y``; ``plot_rows``: each reference image's row among the drawn;
    ``held_drawn`` (None without held-out classes) the held-out classes' test images its test frames draw as
    crosses, labelled ``held_drawn_y`` (the dataset's class ids); ``within``: where a checkpoint saved within
    an epoch stands (runs.meta.Within), with ``within_arrays``, what that epoch had kept, until the epoch goes on.
    """
    kind: str
    files: RunFiles
    source: Optional[Checkpoint]
    resumed: bool
    run: Run
    net: gluon.HybridBlock
    center_loss: Optional[CenterLoss]
    objective: Objective
    trainer: gluon.Trainer
    center_trainer: Optional[gluon.Trainer]
    reducer: Optional[GradientReducer]
    metric: str
    schedule: Schedule
    passes: int
    history: List[Epoch]
    best: float
    projection: pictures.Projection
    reference: np.ndarray
    reference_y: nd.NDArray
    plot_idx: np.ndarray
    plot_rows: np.ndarray
    drawn: np.ndarray
    drawn_y: np.ndarray
    test_idx: np.ndarray
    test_drawn: nd.NDArray
    test_drawn_y: np.ndarray
    held_drawn: Optional[nd.NDArray]
    held_drawn_y: Optional[np.ndarray]
    test_features: Optional[np.ndarray] = None
    frames: Optional[Frames] = None
    within: Optional[Within] = None
    within_arrays: Optional[dict] = None

    @property
    def arch(self) -> Arch:
        return self.run.arch

    @property
    def optim(self) -> Optim:
        return self.run.optim

    @property
    def center(self) -> Center:
        return self.run.center

    @property
    def output(self) -> Output:
        return self.run.output

    @property
    def title(self):
        """The stage's loss: a key of training.floors.FLOORS and the metrics' record."""
        if self.kind == 'second':
            return 'center loss only'
        return 'softmax + center loss' if self.center_loss is not None else 'softmax'

    @property
    def shown(self):
        """What the stage's report line and pictures call it: ``title`` with a margin head named, so that
        a CosFace run is not drawn as 'softmax'."""
        head = head_title(self.arch.head, self.arch.scale, self.arch.margin)
        if not head or self.kind == 'second':  # the second stage trains center loss alone, the head frozen
            return self.title
        return head + (' + center loss' if self.center_loss is not None else '')

    def set_step(self, step):
        """What changes at each step besides the rate (which the Trainer's scheduler applies): one-cycle's
        momentum, and SphereFace's lambda in the first stage."""
        if self.schedule.kind == 'onecycle' and self.optim.optimizer == 'sgd':
            self.trainer.optimizer.momentum = self.schedule.momentum_at(step)
        if self.kind == 'first' and isinstance(self.net.output, margins.SphereFace):
            self.net.output.anneal(step, self.schedule.total)  # its floor at 6% of the stage, as the paper's


def build_stage(kind, run, rt, data, files, source):
    """A Stage of ``kind`` with the records ``run`` (a runs.meta.Run), trained on ``data``
    (imagesets.dataset.Loaded), saved under ``files``, from checkpoint ``source`` (or new). Every array
    taken from the checkpoint is checked against what the network, the centers and the optimizers
    expect before anything runs."""
    second, arch, optim, center, output = kind == 'second', run.arch, run.optim, run.center, run.output
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
    state = source.meta if resumed else None
    metric = output.eval_method or ('pairs' if data.pair_lists else 'center' if second else 'softmax')
    stage = Stage(kind, files, source, resumed, run, net, center_loss, objective, trainer, center_trainer,
                  reducer, metric, schedule, passes,
                  list(state.history) if state else [], state.best if state else -1.0,
                  pictures.Projection(**(state.projection if state else {})),
                  *drawn_sets(data, optim.seed, arch.feature_size, rt))
    stage.frames = Frames(files, output.frames, optim.epochs, schedule.steps, '%s (%s stage)' % (stage.shown, kind),
                          data.classes, data.num_total, data.class_names, stage.projection)
    if state is not None and state.within is not None:  # stopped within an epoch: it goes on from that step
        stage.within = state.within
        stage.within_arrays = {k[len('within.'):]: v.asnumpy() for k, v in source.arrays.items()
                               if k.startswith('within.')}
    return stage


# The fields of Stage that drawn_sets fills.
DRAWN = ('reference', 'reference_y', 'plot_idx', 'plot_rows', 'drawn', 'drawn_y', 'test_idx', 'test_drawn',
         'test_drawn_y', 'held_drawn', 'held_drawn_y')


def drawn_sets(data, seed, feature_size, rt, plot=pictures.PLOTTED):
    """The values of Stage's DRAWN fields: which images an epoch keeps the features of, and which its
    frames draw (``plot`` training images; the test ones held in memory: drawn again and again)."""
    n = data.train_x.shape[0]
    reference, plot_idx = predict.reference_sample(n, seed), pictures.plot_sample(n, seed, plot)
    ctx = rt.ctxs[0]
    reference_y = nd.take(data.train_y, nd.array(reference, ctx=ctx, dtype='int32'))
    plot_rows = np.full(len(reference), -1, np.int64)
    plot_rows[np.searchsorted(reference, plot_idx)] = np.arange(len(plot_idx))
    drawn_y = data.train_y.asnumpy().astype(np.int64)[plot_idx]
    test_idx = frames_mod.test_sample(data.test_x.shape[0], seed)
    test_drawn_y = data.test_y.asnumpy().astype(np.int64)[test_idx]
    held = held_y = None
    if data.held_x is not None:  # the classes never trained on: as many test images as the test frames draw
        held_idx = frames_mod.test_sample(data.held_x.shape[0], seed)
        held, held_y = data.held_x.take(held_idx), data.held_y.asnumpy().astype(np.int64)[held_idx]
    return (reference, reference_y, plot_idx, plot_rows, np.full((len(plot_idx), feature_size), np.nan, np.float32), drawn_y,
            test_idx, data.test_x.take(test_idx), test_drawn_y, held, held_y)


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


# --------------------------------------------------------------------------- the stage's epochs

def run_stage(stage, rt, data, dataset):
    """Train ``stage`` epoch by epoch: train, evaluate, report, draw, save; then the GIFs and curves.
    ``dataset``: the data's name, for the floors of MNIST."""
    optim, output = stage.optim, stage.output
    if len(stage.history) >= optim.epochs:
        if output.plotting and not stage.files.pictures_made():  # its last save or pictures failed (a full disk)
            print('%s is complete (%s); its GIFs and curves were not made: drawing them from what it saved'
                  % (stage.files.prefix, plural(len(stage.history), 'epoch')))
            with saved(stage.files.out_dir):
                finish_stage(stage, rt, dataset)
        else:
            print('%s is complete (%s); nothing to resume' % (stage.files.prefix,
                                                              plural(len(stage.history), 'epoch')))
        return
    start_stage(stage, rt, data)
    n = data.train_x.shape[0] * stage.passes
    save = saves.saver_within(stage, rt, data) if rt.rank == 0 else None  # (the first worker alone writes)
    for epoch in range(len(stage.history) + 1, optim.epochs + 1):
        carried = stage.within.seconds if stage.within is not None else 0.0  # of an epoch a stop cut
        tic = time.time() - carried
        sums, seen, gathered, frame_time = epochs.train_epoch(stage, rt, data, epoch, output.plotting, save)
        train_time = time.time() - tic - frame_time
        if epoch == len(stage.history) + 1 and rt.rank == 0 and not carried:
            note = precision.check_cached(rt.cached, rt.precision, n / train_time, stage.schedule.steps)
            if note:
                print(note)
        if rt.rank != 0:  # every worker trains its slice of each batch; the first evaluates, saves and draws
            print('[%s] worker %d: epoch %2d/%d  train acc %.4f on its slices  %.1fs'
                  % (stage.files.prefix, rt.rank, epoch, optim.epochs, sums[2] / seen, train_time))
            continue
        record, centers = evaluate_epoch(stage, rt, data, epoch, sums / seen, gathered)
        # The user sees an epoch finish with its report line: Ctrl-C or SIGTERM from then on
        # waits until its pictures and checkpoints are written.
        with signals_deferred(), saved(stage.files.out_dir):
            record.train_time, record.time, record.images = train_time, time.time() - tic, epoch * n
            report(stage, record, n)
            if output.plotting:
                tic_draw = time.time()
                stage.frames.draw(epoch, (stage.drawn, stage.drawn_y, record.train_acc),
                                  (stage.test_features, stage.test_drawn_y, record.test_acc_softmax),
                                  centers.asnumpy(), epochs.held_features(stage))
                frame_time += time.time() - tic_draw
            previous = stage.history[-1].seconds if stage.history else 0.0
            record.frame_time, record.seconds = frame_time, previous + time.time() - tic
            stage.history.append(record)
            saves.save_epoch(stage, rt, data, record, centers, dataset)
    with saved(stage.files.out_dir):
        finish_stage(stage, rt, dataset)


def start_stage(stage, rt, data):
    """Say what the stage does; a new stage's output set replaces the old one's."""
    if stage.resumed and stage.within is not None:
        print('resuming %s within epoch %d at step %d of %d from %s' % (
            stage.files.prefix, stage.within.epoch, stage.within.step, stage.schedule.steps, stage.source.path))
    elif stage.resumed:
        print('resuming %s after epoch %d from %s' % (stage.files.prefix, len(stage.history), stage.source.path))
    elif stage.kind == 'second':
        print('second stage from %s (epoch %d), centers frozen' % (stage.source.path, stage.source.meta.epoch))
    if rt.rank == 0:
        with saved(stage.files.out_dir):
            left = stage.files.leftovers()  # (this run's lock is held: no write of it is under way)
            for path in left:
                os.remove(path)
            if left:
                print('removed %d part-written file%s an interrupted save of %s left: %s'
                      % (len(left), '' if len(left) == 1 else 's', stage.files.prefix, ', '.join(left[:3])))
            if not stage.resumed:
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
    print('%s stage "%s": %s, %s of %d steps (%s), %d steps in all; %s, batch %d, shifts up to %d px%s%s'
          % (stage.kind, stage.files.prefix, stage.shown, plural(optim.epochs, 'epoch'), schedule.steps, passes,
             schedule.total, schedule.describe(), optim.batch_size, optim.shift,
             ', a random half mirrored' if optim.mirror else '', text))
    print('the best checkpoint is picked on %s; %s' % (measure_of(stage, data), sizes(stage)))


def measure_of(stage, data):
    """What picks the stage's best checkpoint, in words."""
    if stage.metric == 'pairs':
        return 'the mean 10-fold accuracy of the verification sets %s (cosine, flip test)' % ', '.join(n for n, _ in
                                                                                           data.pair_lists)
    return 'the test accuracy by %s (%d test images)' % (
        {'softmax': 'softmax', 'center': 'nearest center', 'knn': 'k-NN'}[stage.metric], data.test_x.shape[0])


def sizes(stage):
    """What the class layer and the centers take, which the number of classes sets."""
    def size_of(params):  # (kB below a tenth of a MB: MNIST's are a few hundred bytes)
        size = sum(int(np.prod(p.shape)) * 4 for p in params)
        return '%.1f MB' % (size / 1e6) if size >= 1e5 else '%.1f kB' % (size / 1e3)
    text = 'class layer %s' % size_of(stage.net.output.collect_params().values())
    if stage.center_loss is not None:
        text += ', centers %s' % size_of(stage.center_loss.collect_params().values())
    return '%s (%d classes x %d-D, float32; with their gradients and optimizer states, up to 3x that)' % (
        text, stage.arch.num_classes, stage.arch.feature_size)


def evaluate_epoch(stage, rt, data, epoch, means, gathered):
    """(the epoch's Epoch record, the centers): losses and accuracies by each method; the features of
    the images its frame draws are kept in the stage. ``means``: the epoch's mean softmax loss, center
    loss and training accuracy."""
    train_feat = epochs.training_features(stage, rt, data, gathered)
    if stage.center_loss is not None:
        centers = stage.center_loss.centers.weight.data(train_feat.context)
    else:  # softmax alone has no centers: use the class means for nearest-center
        centers = epochs.class_means(gathered, train_feat, stage.reference_y, stage.arch.num_classes)
    stage.drawn = nd.take(train_feat, nd.array(np.searchsorted(stage.reference, stage.plot_idx),
                                               ctx=train_feat.context, dtype='int32')).asnumpy()
    methods = ('softmax', 'center') + (('knn',) if stage.metric == 'knn' else ())
    found, stage.test_features = predict.accuracies(
        stage.net, data.test_x, data.test_y, methods, centers, train_feat, stage.reference_y,
        min(stage.output.knn_k, len(stage.reference)), keep=stage.test_idx)
    record = Epoch(epoch, stage.schedule.lr_at(epoch * stage.schedule.steps - 1),
                   None if stage.kind == 'second' else float(means[0]),
                   float(means[1]) if stage.center_loss is not None else None, float(means[2]),
                   found['softmax'], found['center'], found.get('knn'),
                   pairs=verify.verification_sets(stage.net, stage.arch, data.normalisation, data.pair_lists,
                                                  rt.ctxs[0]))
    return record, centers


def report(stage, record, n):
    def loss(value):
        return '-' if value is None else '%.4f' % value
    print('[%s] epoch %2d/%d  lr %.4g  loss: softmax %s center %s  train acc %.4f  test acc: softmax %.4f '
          'center %.4f%s%s  %.1fs (%d img/s)'
          % (stage.files.prefix, record.epoch, stage.optim.epochs, record.lr, loss(record.loss_softmax),
             loss(record.loss_center), record.train_acc, record.test_acc_softmax, record.test_acc_center,
             '  knn %.4f' % record.test_acc_knn if stage.metric == 'knn' else '',
             ''.join('  %s %.4f+-%.4f flip %.4f+-%.4f' % (name, r['accuracy'], r['std'], r['accuracy_flip'],
                                                          r['std_flip']) for name, r in record.pairs.items()),
             record.time, n / record.train_time))


def finish_stage(stage, rt, dataset):
    """The stage's GIFs and curves, and where its checkpoints are, when it reached its floors, and
    whether it fit its training images."""
    if rt.kv:  # dist_sync keeps every worker's copy identical: this lets one check it
        print('[%s] worker %d: parameter checksum %.10e'
              % (stage.files.prefix, rt.rank, param_checksum(stage.net, stage.center_loss)))
    if rt.rank != 0:
        return
    files = stage.files
    if stage.output.plotting:
        frames_mod.make_gifs(files, stage.optim.epochs)
        pictures.plot_curves(files.curves, stage.history, '%s: %s' % (files.prefix, stage.shown))
        print('pictures: %s, %s' % (', '.join(files.gif(s) for s in ('train', 'test')), files.curves))
    held = floors.time_to_floors(stage.title, stage.history, dataset, stage.arch.holdout)
    reached = ['%s %s' % (floor, 'not reached' if at is None else 'at epoch %d (%d images, %.0f s)' % (
        at['epoch'], at['images'], at['seconds'])) for floor, at in held.items()]
    print('best %s %.4f; %scheckpoints: %s, %s'
          % ('mean verification accuracy' if stage.metric == 'pairs' else 'test accuracy (%s)' % stage.metric,
             stage.best, 'time to accuracy: %s; ' % ', '.join(reached) if reached else '',
             files.best, files.last))
    last = stage.history[-1].train_acc
    if last < FITTED:
        print('note: the training accuracy is %.4f after %s (%d steps): the network has not fit its training '
              'images yet; give it more steps (--epochs, or --min_epoch_steps on a small set)%s'
              % (last, plural(stage.optim.epochs, 'epoch'), stage.schedule.total,
                 ', or a lower --lmbd' if stage.center_loss is not None and stage.kind == 'first' else ''))
