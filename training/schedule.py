"""How the learning rate and the center loss's weight change over a stage, step by step.

A stage of E epochs of S steps each has T = E * S steps; step t counts from 0. With a warm-up of
W steps (``warmup`` epochs, and at least ``min_warmup_steps``) the rate climbs linearly from 0 to
``lr``, the first step already learning:

    warm(t)  = (t + 1) / W                        for t < W

and then, with the rest r = (t - W) / (T - W) in [0, 1):

    step      lr * factor ** floor(floor(t / S) / lr_step)   (the original port's schedule)
    cosine    lr * (final + (1 - final) * (1 + cos(pi * r)) / 2)   (Loshchilov and Hutter, SGDR, 2017)
    linear    lr * (final + (1 - final) * (1 - r))
    onecycle  cosine, with SGD's momentum moved the other way: from ``momentum_low`` at
              the peak rate back to ``momentum`` at the end, and from ``momentum`` down
              to ``momentum_low`` during the warm-up (Smith, 2018)

A rate that ends at 0 still learns on its last step: r stays below 1 (final is 0 by default
for cosine and linear, as their papers have it).

The rate is MXNet's own: ``rate()`` is an ``mxnet.lr_scheduler`` scheduler (its linear warm-up,
then its CosineScheduler, PolyScheduler of power 1, or MultiFactorScheduler) that gluon's Trainer
applies at each update. Written here are only what MXNet has no scheduler for: one-cycle's
momentum and the center loss's weight.

The center loss's weight on the features can warm up too: lambda(t) = lambda * min(1, (t + 1) /
(S * lmbd_warmup)). It only scales the gradient the features get (step.Objective): the centers
keep learning at alpha from the first step, so they are near their class means when the pull on
the features becomes strong.
"""
import math

from mxnet import lr_scheduler

from runs.records import SCHEDULES, check_warmup


class _FromZero(object):
    """Gluon's Optimizer counts an update before it asks for its rate (1 on the first step): the
    warm-up takes that count, so the first step learns (lr / W), and the annealing takes the step's
    own index t, so that r < 1 on the last step and it learns too."""

    def __call__(self, num_update):
        if num_update < self.warmup_steps:
            return self.get_warmup_lr(num_update)
        return super(_FromZero, self).__call__(max(num_update - 1, self.warmup_steps))


class _Cosine(_FromZero, lr_scheduler.CosineScheduler):
    pass


class _Linear(_FromZero, lr_scheduler.PolyScheduler):
    pass


class Schedule(object):
    """The rate (and momentum, and center-loss weight factor) at each step of a stage.

    ``kind`` one of SCHEDULES; ``lr`` the peak rate; ``epochs`` and ``steps_per_epoch`` the
    stage's length; ``warmup`` and ``lmbd_warmup`` in epochs (fractions allowed), the warm-up at
    least ``min_warmup_steps`` steps (but never more than half the stage); ``lr_step`` and
    ``lr_factor`` for 'step'; ``final`` the last rate as a fraction of ``lr``; ``momentum`` and
    ``momentum_low`` for 'onecycle'.
    """

    def __init__(self, kind, lr, epochs, steps_per_epoch, warmup=0.0, lr_step=8, lr_factor=0.1, final=0.0,
                 momentum=0.9, momentum_low=0.85, lmbd_warmup=0.0, min_warmup_steps=0):
        if kind not in SCHEDULES:
            raise ValueError('schedule must be one of %s, got %r' % (', '.join(SCHEDULES), kind))
        check_warmup(kind, warmup, epochs)
        self.kind, self.lr, self.epochs, self.steps = kind, float(lr), int(epochs), int(steps_per_epoch)
        self.total = self.epochs * self.steps
        self.warmup_steps = 0
        if warmup > 0:
            self.warmup_steps = min(max(int(round(warmup * self.steps)), int(min_warmup_steps)), self.total // 2)
        self.lr_step, self.lr_factor, self.final = int(lr_step), float(lr_factor), float(final)
        self.momentum, self.momentum_low, self.lmbd_warmup = float(momentum), float(momentum_low), float(lmbd_warmup)

    @classmethod
    def of(cls, optim, steps_per_epoch, lmbd_warmup=0.0):
        """The schedule of a records.Optim at ``steps_per_epoch``."""
        return cls(optim.lr_schedule, optim.lr, optim.epochs, steps_per_epoch, warmup=optim.warmup,
                   lr_step=optim.lr_step, lr_factor=optim.lr_factor, final=optim.lr_final, momentum=optim.momentum,
                   momentum_low=optim.momentum_low, lmbd_warmup=lmbd_warmup, min_warmup_steps=optim.min_warmup_steps)

    def rate(self):
        """A new mxnet.lr_scheduler.LRScheduler of this stage, for the network's Trainer."""
        w = self.warmup_steps
        if self.kind == 'step':
            every = self.lr_step * self.steps
            return lr_scheduler.MultiFactorScheduler(list(range(every, self.total, every)) or [self.total],
                                                     self.lr_factor, self.lr, warmup_steps=w)
        final = self.lr * self.final
        if self.kind == 'linear':
            return _Linear(self.total, self.lr, pwr=1, final_lr=final, warmup_steps=w)
        return _Cosine(self.total, self.lr, final_lr=final, warmup_steps=w)

    def lr_at(self, step):
        """The rate of step ``step`` (0-based), as the Trainer applies it."""
        return self.rate()(step + 1)

    def _rest(self, step):
        return max(0.0, (step - self.warmup_steps) / float(self.total - self.warmup_steps))

    def momentum_at(self, step):
        """SGD's momentum: constant but for 'onecycle'."""
        if self.kind != 'onecycle':
            return self.momentum
        high, low = self.momentum, self.momentum_low
        if step < self.warmup_steps:
            return high - (high - low) * (step + 1) / float(self.warmup_steps)
        return low + (high - low) * (1 - (1 + math.cos(math.pi * self._rest(step))) / 2)

    def lmbd_factor(self, step):
        """The share of lambda the features' gradient gets at step ``step``."""
        if self.lmbd_warmup <= 0:
            return 1.0
        return min(1.0, (step + 1) / (self.steps * self.lmbd_warmup))

    def describe(self):
        if self.kind == 'step':
            text = 'lr %g (x%g every %d epochs)' % (self.lr, self.lr_factor, self.lr_step)
        else:
            text = 'lr %g, %s to %g' % (self.lr, self.kind, self.lr * self.final)
        if self.warmup_steps:
            text += ' after %d steps of warm-up' % self.warmup_steps
        if self.kind == 'onecycle':
            text += ', momentum %g-%g' % (self.momentum_low, self.momentum)
        return text
