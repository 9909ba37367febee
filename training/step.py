"""One training step, below both the training loop (train.py) and the precision measurement
(precision.py): the objective of a step, and forward, backward and update on one batch."""
from devices import compat  # noqa: F401  (before mxnet)

from mxnet import autograd, gluon, nd
from mxnet.gluon import nn


class Objective(gluon.HybridBlock):
    """One graph for a training step: scores, features, and the per-sample
    softmax and center losses (either may be switched off). ``counts`` are the
    class counts of the whole batch, which may be split across devices.

    With a margin head as the network's class layer (margins.py), the softmax
    loss is taken on the head's logits with the labels (the margin on each
    image's own class); the scores returned, for the accuracy, are its plain
    scaled cosines.

    ``warm`` (shape (1,)) is the share of lambda the features feel (schedule.py:
    the center loss's warm-up). The center loss sees features whose value is
    unchanged but whose gradient is scaled by it; the centers' own gradient is not."""

    def __init__(self, net, center_loss=None, softmax=True, **kwargs):
        super(Objective, self).__init__(**kwargs)
        self.net = net
        self.center_loss = center_loss
        self.ce = gluon.loss.SoftmaxCrossEntropyLoss() if softmax else None
        self.margin = not isinstance(net.output, nn.Dense)

    def hybrid_forward(self, F, x, y, counts=None, warm=None):
        scores, features = self.net(x)
        if self.ce is None:
            l_s = F.zeros_like(y)
        else:
            l_s = self.ce(self.net.output(features, y) if self.margin else scores, y)
        if self.center_loss is None:
            l_c = F.zeros_like(y)
        else:
            pulled = F.broadcast_mul(features, warm) + F.broadcast_mul(F.stop_gradient(features), 1 - warm)
            l_c = self.center_loss(pulled, y, counts)
        return l_s + l_c, l_s, l_c, scores, features


def train_step(objective, trainer, center_trainer, x, y, ctxs, num_classes, reducer=None, counts=None,
               batch_size=None, warm=1.0):
    """Forward, backward and update on one batch, split across ``ctxs``.

    Gradients are summed over devices (and over workers by ``reducer``, a
    parallel.GradientReducer) and divided by ``batch_size``, the images of the
    whole (global) batch, whose class counts are ``counts`` (by default those of
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


def steps_per_pass(n, batch_size, workers=1):
    """Steps of one pass over ``n`` images in global batches of ``batch_size`` x ``workers``; a last
    global batch of fewer images than workers is skipped (it cannot give each a slice)."""
    bs = batch_size * workers
    return n // bs + (n % bs >= workers)


def passes_per_epoch(n, batch_size, min_epoch_steps, workers=1):
    """Passes over ``n`` images in one epoch: one, or as many as make an epoch of at least
    ``min_epoch_steps`` steps on a small set."""
    passes = max(1, -(-int(min_epoch_steps) * batch_size * workers // max(n, 1)))
    while steps_per_pass(passes * n, batch_size, workers) < min_epoch_steps:
        passes += 1
    return passes
