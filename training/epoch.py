"""One epoch of a stage, in named steps: the order its images are taken in and their shifts
(``plan_epoch``), the steps themselves (``train_epoch``), what it keeps of the features its steps
compute (``Gathered``), and the frames that fall within it (``draw_within``).

With N workers, each batch is a global batch of N x batch_size images in the order one process
would take them, and worker k trains on the k-th slice of each (np.array_split: slices differ by
at most one image); the center loss sees the class counts of the whole global batch. So N workers
take exactly the steps of one process at N x batch_size.
"""
import collections
import time

import numpy as np
from mxnet import nd
from tqdm import tqdm

import utils
from evaluation import predict
from faults.errors import Diverged, saved
from faults.signals import signals_deferred
from runs.meta import Within
from training.step import steps_per_pass, train_step

SYNC_EVERY = 50    # steps between reading the running sums back (a sync point)

# order: the epoch's images, pass after pass (int32); batches: the positions in ``order`` of each step's
# global batch; places: this worker's slice of each (both Steps); shifts, mirrors: a Draws each, or None
Plan = collections.namedtuple('Plan', 'order batches places shifts mirrors')


class Draws(object):
    """One random value per position of an epoch's order (``draw(rng, n)``: n of them), drawn from its
    generator a global batch at a time, in order: the same numbers as drawing them all at once (the
    generator's stream is the same), without an array of them all."""

    def __init__(self, rng, draw):
        self.rng, self.draw, self.drawn = rng, draw, 0

    def of(self, batch, place):
        """The values of the positions ``place`` (numpy, within ``batch``, the step's global batch)."""
        assert batch[0] == self.drawn, 'augmentations are drawn in the order of the steps'
        drawn = self.draw(self.rng, len(batch))
        self.drawn += len(batch)
        return drawn[place - batch[0]]


def shifts(rng, most):
    """(dx, dy) of each image, each within [-most, most] pixels."""
    return Draws(rng, lambda r, n: r.randint(-most, most + 1, size=(n, 2)))


def mirrors(rng):
    """1 for each image mirrored (half of them, at random), else 0."""
    return Draws(rng, lambda r, n: r.randint(0, 2, size=n))


class Steps(object):
    """A sequence of one value per step, each made when asked (``make(step)``): an epoch's batches held
    as arrays, or as the lists a loader takes, would cost memory in proportion to the set."""

    def __init__(self, count, make):
        self.count, self.make = count, make

    def __len__(self):
        return self.count

    def __getitem__(self, b):
        if not 0 <= b < self.count:
            raise IndexError(b)
        return self.make(b)


def plan_epoch(optim, n, passes, epoch, workers, rank):
    """The Plan of ``epoch``: its order and shifts depend only on (seed, epoch), so a resumed run
    sees the same batches as one that was never stopped."""
    rng = np.random.RandomState([optim.seed, epoch])
    order = np.concatenate([rng.permutation(n).astype(np.int32) for _ in range(passes)])
    # one offset per place in the epoch's order, also from (seed, epoch), after the order; the mirrors
    # from a stream of their own, so that a run without them draws the shifts it always drew
    moved = shifts(rng, optim.shift) if optim.shift else None
    mirrored = mirrors(np.random.RandomState([optim.seed, epoch, 1])) if optim.mirror else None
    bs, steps = optim.batch_size * workers, steps_per_pass(len(order), optim.batch_size, workers)
    batches = Steps(steps, lambda b: np.arange(b * bs, min((b + 1) * bs, len(order))))
    places = Steps(steps, lambda b: np.array_split(batches[b], workers)[rank]) if workers > 1 else batches
    return Plan(order, batches, places, moved, mirrored)


class Gathered(object):
    """What an epoch keeps of the features its steps compute, in memory set by the reference's size, not
    by the set's: the latest feature of each image of ``reference`` (sorted image indices), written into
    one (len(reference), d) array as the steps compute them, and, where the reference leaves images out
    and ``class_sums`` (softmax alone: no centers), each class's sum and count of features, for the class
    means."""

    def __init__(self, n, reference, num_classes, class_sums=True):
        self.reference, self.num_classes = reference, num_classes
        self.covers = len(reference) == n
        self.class_sums = class_sums and not self.covers
        self.seen = np.zeros(len(reference), bool)
        self.features, self.pending = None, []
        self.sums, self.counts = None, np.zeros(num_classes)

    def rows_of(self, images):
        """(the reference rows of those of ``images`` in the reference, their places in ``images``)."""
        if self.covers:
            return images, np.arange(len(images))
        rows = np.searchsorted(self.reference, images)
        inside = np.flatnonzero(self.reference[np.minimum(rows, len(self.reference) - 1)] == images)
        return rows[inside], inside

    def add(self, images, features, labels):
        """The features (device array) the step computed for ``images`` (numpy), labelled ``labels``."""
        if self.features is None:
            self.features = nd.zeros((len(self.reference), features.shape[1]), ctx=features.context)
        rows, at = self.rows_of(images)
        rows, last = latest(rows)  # an image twice in one step (a pass ends within it): its later feature
        if len(rows):
            ctx = features.context
            self.features[nd.array(rows, ctx=ctx, dtype='int32')] = nd.take(
                features, nd.array(at[last], ctx=ctx, dtype='int32'))
            self.seen[rows] = True
        if self.class_sums:
            self.pending.append((features, labels))

    def flush(self):
        """Add the pending features to the class sums (at the epoch's sync points: one copy to the host)."""
        for features, labels in self.pending:
            f, y = features.asnumpy().astype(np.float64), labels.asnumpy().astype(np.int64)
            if self.sums is None:
                self.sums = np.zeros((self.num_classes, f.shape[1]))
            np.add.at(self.sums, y, f)
            self.counts += np.bincount(y, minlength=self.num_classes)
        del self.pending[:]

    def arrays(self):
        """What a checkpoint within the epoch keeps of it ({name: numpy array}): the rows seen, their features,
        the class sums and counts."""
        self.flush()
        rows, feats = self.latest()
        kept = {'rows': rows.astype(np.int64), 'counts': self.counts}
        if feats is not None:
            kept['features'] = feats.asnumpy()
        if self.sums is not None:
            kept['sums'] = self.sums
        return kept

    def restore(self, kept, ctx):
        """Put back what ``arrays`` kept (a stop's checkpoint, read back)."""
        rows = kept['rows'].astype(np.int64)
        if 'features' in kept and len(rows):
            self.features = nd.zeros((len(self.reference), kept['features'].shape[1]), ctx=ctx)
            self.features[nd.array(rows, ctx=ctx, dtype='int32')] = nd.array(kept['features'], ctx=ctx)
            self.seen[rows] = True
        self.counts = kept['counts'].astype(np.float64)
        if 'sums' in kept:
            self.sums = kept['sums'].astype(np.float64)

    def latest(self):
        """(reference rows seen, their features as last computed, on the device), or (empty, None)."""
        rows = np.flatnonzero(self.seen)
        if not len(rows):
            return rows, None
        if len(rows) == len(self.reference):
            return rows, self.features
        return rows, nd.take(self.features, nd.array(rows, ctx=self.features.context, dtype='int32'))


def latest(seen):
    """(the values of ``seen``, the place of each one's last occurrence in it)."""
    values, from_end = np.unique(seen[::-1], return_index=True)
    return values, len(seen) - 1 - from_end


# --------------------------------------------------------------------------- the steps

def train_epoch(stage, rt, data, epoch, drawing, save=None):
    """One epoch: one shuffled pass over the training set (several on a small set), drawing the
    frames that fall within it when ``drawing``. Returns (sums of softmax loss, center loss and
    correct predictions over this worker's images, as numpy; their number; the Gathered features;
    the seconds spent drawing).

    Between two steps a stop (Ctrl-C, SIGTERM) or the stage's interval (--save_minutes) saves the run
    where it is, by ``save(Within, Gathered)``; a stop then ends the epoch, and the run. A stage resumed
    from such a checkpoint (``stage.within``) starts at its step, with its sums and features."""
    optim, ctx, workers = stage.optim, rt.ctxs[0], rt.num_workers
    plan = plan_epoch(optim, data.train_x.shape[0], stage.passes, epoch, workers, rt.rank)
    steps = len(plan.batches)
    gathered = Gathered(data.train_x.shape[0], stage.reference, stage.arch.num_classes, stage.center_loss is None)
    # Running sums and per-batch losses stay on the device: reading them back is a sync point, so it
    # happens every SYNC_EVERY batches (and where a frame is drawn), not every batch.
    sums = nd.zeros((3,), ctx=ctx)            # softmax loss, center loss, correct predictions
    batch_loss = nd.zeros((steps,), ctx=ctx)  # to name the batch where a loss went NaN
    seen, frame_time, start, tic = 0, 0.0, 0, time.time()
    within, stage.within = stage.within, None
    if within is not None:  # a stop's checkpoint within this epoch: its step, sums, features and draws
        start, seen, frame_time, tic = within.step, within.seen, within.frame_time, tic - within.seconds
        sums = nd.array(within.sums, ctx=ctx)
        gathered.restore(stage.within_arrays, ctx)
        for b in range(start):  # the augmentation's draws of the steps done, drawn again and dropped
            for draws in (plan.shifts, plan.mirrors):
                if draws is not None:
                    draws.of(plan.batches[b], plan.places[b])
    bar = tqdm(range(start, steps), desc='%s %d/%d' % (stage.files.prefix, epoch, optim.epochs), leave=False,
               disable=None, initial=start, total=steps)
    # in memory: taken on the device; streamed: decoded by DataLoader workers a few batches ahead
    images = data.train_x.batches(Steps(steps - start, lambda k: plan.order[plan.places[start + k]]))
    saved_at = time.time()
    with signals_deferred() as stops:
        for b in bar:
            due = stage.output.save_minutes and time.time() - saved_at > 60 * stage.output.save_minutes
            if stops or due:
                if save is not None and b > start:  # (at ``start`` what is saved already stands)
                    gathered.flush()
                    save(Within(epoch, b, sums.asnumpy().tolist(), seen, frame_time, time.time() - tic), gathered)
                saved_at = time.time()
                if stops:  # the end of the block stops the run
                    break
            batch_loss[b], step_sums = one_step(stage, rt, data, plan, b, next(images), (epoch - 1) * steps + b,
                                                gathered)
            sums += step_sums
            seen += len(plan.places[b])
            draw = drawing and rt.rank == 0 and stage.frames.due(b + 1)
            if draw or (b + 1) % SYNC_EVERY == 0 or b + 1 == steps:
                check_finite(batch_loss, b, epoch, steps, stage)
                gathered.flush()
                s = sums.asnumpy()
                bar.set_postfix(loss='%.4f' % ((s[0] + s[1]) / seen), acc='%.4f' % (s[2] / seen))
            if draw:
                drawn_at = time.time()
                with saved(stage.files.out_dir):
                    draw_within(stage, data, epoch, b + 1, gathered, s[2] / seen)
                frame_time += time.time() - drawn_at
        bar.close()
    return sums.asnumpy(), seen, gathered, frame_time


def one_step(stage, rt, data, plan, b, x, step, gathered):
    """Step ``b`` of the plan on its images ``x``: (its loss, its [softmax loss, center loss, correct
    predictions] summed), both on the first device; its features go to ``gathered``."""
    ctx, mine = rt.ctxs[0], plan.order[plan.places[b]]
    y = nd.take(data.train_y, nd.array(mine, ctx=ctx, dtype='int32'))
    counts = None  # one process: train_step counts its own batch; several: the whole global batch
    if rt.num_workers > 1:
        counts = nd.one_hot(nd.take(data.train_y, nd.array(plan.order[plan.batches[b]], ctx=ctx, dtype='int32')),
                            stage.arch.num_classes).sum(axis=0)
    if plan.shifts is not None:
        offsets = nd.array(plan.shifts.of(plan.batches[b], plan.places[b]), ctx=ctx)
        x = utils.random_shift(x, offsets, data.background, stage.optim.shift)
    if plan.mirrors is not None:
        x = utils.random_mirror(x, nd.array(plan.mirrors.of(plan.batches[b], plan.places[b]), ctx=ctx))
    stage.set_step(step)
    loss_sum, sums, features = 0, 0, []
    for loss, l_s, l_c, scores, feats, y_dev in train_step(
            stage.objective, stage.trainer, stage.center_trainer, x, y, rt.ctxs, stage.arch.num_classes,
            stage.reducer, counts=counts, batch_size=len(plan.batches[b]), warm=stage.schedule.lmbd_factor(step)):
        loss_sum = loss_sum + loss.sum().as_in_context(ctx)
        sums = sums + nd.concat(l_s.sum(), l_c.sum(), (nd.argmax(scores, axis=1) == y_dev).sum(),
                                dim=0).as_in_context(ctx)
        features.append(feats.as_in_context(ctx))
    gathered.add(mine, features[0] if len(features) == 1 else nd.concat(*features, dim=0), y)
    return loss_sum, sums


def check_finite(batch_loss, b, epoch, num_batches, stage):
    """Stop the stage at the first batch (up to ``b``) whose loss is NaN or infinite."""
    bad = np.flatnonzero(~np.isfinite(batch_loss[:b + 1].asnumpy()))
    if len(bad):
        optim = stage.optim
        retry = ['--lr', '%g' % (optim.lr / 2), '--warmup', '%g' % max(2 * optim.warmup, 1.0)]
        if stage.center_loss is not None and stage.kind == 'first':
            retry += ['--lmbd', '%g' % (stage.center.lmbd / 2)]
        raise Diverged('the loss became %s in epoch %d at batch %d of %d; the stage stopped and its checkpoints '
                       'of earlier epochs are kept; a lower --lr, a longer --warmup%s may train it'
                       % (batch_loss[int(bad[0])].asscalar(), epoch, bad[0] + 1, num_batches,
                          ' or a lower --lmbd' if len(retry) > 4 else ''), retry)


# --------------------------------------------------------------------------- what the epoch keeps

def training_features(stage, rt, data, gathered):
    """The features of the reference images (``stage.reference``), in that order, as the epoch's steps
    last computed them, or, where this worker did not see each of them, from one more forward pass
    (rank 0 only: the others need none)."""
    rows, feats = gathered.latest()
    if len(rows) == len(stage.reference):
        return feats
    return predict.forward_all(stage.net, data.train_x.subset(stage.reference))[1] if rt.rank == 0 else None


def class_means(gathered, train_feat, reference_labels, num_classes):
    """Each class's mean feature (K, d): over the reference when it holds every image, else over
    every image the epoch trained on (the sums Gathered kept)."""
    if gathered.covers or gathered.sums is None:
        return predict.class_means(train_feat, reference_labels, num_classes)
    means = gathered.sums / np.maximum(gathered.counts, 1)[:, None]
    return nd.array(means, ctx=train_feat.context)


def draw_within(stage, data, epoch, steps_done, gathered, train_acc):
    """The frame ``steps_done`` steps into ``epoch``: the plotted training images at their latest features
    (those not yet trained on this epoch at their last drawn ones), the test sample forwarded now."""
    rows, feats = gathered.latest()
    plotted = stage.plot_rows[rows]
    stage.drawn[plotted[plotted >= 0]] = feats.asnumpy()[plotted >= 0]
    predicted, test_feat = predict.forward_all(stage.net, stage.test_drawn)
    test_y = stage.test_drawn_y
    test_acc = float((predicted.asnumpy().astype(np.int64) == test_y).mean())
    known = ~np.isnan(stage.drawn[:, 0])
    if stage.center_loss is not None:
        centers = stage.center_loss.centers.weight.list_data()[0].asnumpy()
    else:  # softmax alone: the class means of the features drawn
        centers = predict.class_means(nd.array(stage.drawn[known]), nd.array(stage.drawn_y[known]),
                                      stage.arch.num_classes).asnumpy()
    stage.frames.draw(stage.frames.position(epoch, steps_done), (stage.drawn, stage.drawn_y, train_acc),
                      (test_feat.asnumpy(), test_y, test_acc), centers, held_features(stage))


def held_features(stage):
    """(features, dataset class ids) of the held-out classes' test images the test frames draw, forwarded
    now; None without held-out classes."""
    if stage.held_drawn is None:
        return None
    return predict.forward_all(stage.net, stage.held_drawn)[1].asnumpy(), stage.held_drawn_y
