"""How the learning rate and the center loss's weight change over a stage, step by step.

A stage of E epochs of S steps each has T = E * S steps; step t (0-based) is at
epoch position p = t / S (0 at the start, E at the end). With a warm-up of W
epochs the rate climbs linearly from 0 to ``lr`` over the first W epochs:

    warm(p)  = min(1, (p + 1/S) / W)            (never 0: the first step learns)

and then, with the rest r = (p - W) / (E - W) in [0, 1):

    step      lr * factor ** floor(floor(p) / lr_step)   (the original port's schedule)
    cosine    lr * (1 + cos(pi * r)) / 2        (Loshchilov and Hutter, SGDR, 2017)
    linear    lr * (1 - r)
    onecycle  cosine, with SGD's momentum moved the other way: from ``momentum_low`` at
              the peak rate back to ``momentum`` at the end, and from ``momentum`` down
              to ``momentum_low`` during the warm-up (Smith, 2018)

A rate that ends at 0 still learns on its last steps: every schedule but 'step'
ends at ``lr * final`` (default 0 for cosine and linear, as their papers do).

The center loss's weight on the features can warm up too: lambda(p) = lambda *
min(1, (p + 1/S) / lmbd_warmup). It only scales the gradient the features get
(train.Objective): the centers keep learning at alpha from the first step, so
they are near their class means when the pull on the features becomes strong.
"""
import math

SCHEDULES = ('step', 'cosine', 'linear', 'onecycle')


class Schedule(object):
    """The rate (and momentum, and center-loss weight factor) at each step of a stage.

    Parameters mirror the command-line flags: ``kind`` one of SCHEDULES; ``lr`` the
    peak rate; ``epochs`` and ``steps_per_epoch`` the stage's length; ``warmup`` and
    ``lmbd_warmup`` in epochs (fractions allowed); ``lr_step``/``lr_factor`` for
    'step'; ``final`` the last rate as a fraction of ``lr``; ``momentum`` and
    ``momentum_low`` for 'onecycle'.
    """

    def __init__(self, kind, lr, epochs, steps_per_epoch, warmup=0.0, lr_step=None, lr_factor=0.1, final=0.0,
                 momentum=0.9, momentum_low=0.85, lmbd_warmup=0.0):
        if kind not in SCHEDULES:
            raise ValueError('schedule must be one of %s, got %r' % (', '.join(SCHEDULES), kind))
        if kind != 'step' and warmup >= epochs:
            raise ValueError('a warm-up of %g epochs leaves nothing of %d epochs to anneal' % (warmup, epochs))
        self.kind, self.lr, self.epochs, self.steps = kind, float(lr), int(epochs), int(steps_per_epoch)
        self.warmup, self.lr_step, self.lr_factor, self.final = float(warmup), lr_step, float(lr_factor), float(final)
        self.momentum, self.momentum_low, self.lmbd_warmup = float(momentum), float(momentum_low), float(lmbd_warmup)

    def position(self, step):
        """Epochs done before step ``step`` (0-based, counted from the stage's start)."""
        return step / float(self.steps)

    def _warm(self, step, length):
        if length <= 0:
            return 1.0
        return min(1.0, (self.position(step) + 1.0 / self.steps) / length)

    def _rest(self, step):
        """How far into the annealing part step ``step`` is: 0 at its start, near 1 at the end."""
        return max(0.0, (self.position(step) - self.warmup) / (self.epochs - self.warmup))

    def lr_at(self, step):
        if self.position(step) < self.warmup:
            return self.lr * self._warm(step, self.warmup)
        if self.kind == 'step':
            return self.lr * self.lr_factor ** (int(self.position(step)) // self.lr_step)
        r = self._rest(step)
        shape = (1 + math.cos(math.pi * r)) / 2 if self.kind in ('cosine', 'onecycle') else 1 - r
        return self.lr * (self.final + (1 - self.final) * shape)

    def momentum_at(self, step):
        """SGD's momentum: constant but for 'onecycle'."""
        if self.kind != 'onecycle':
            return self.momentum
        high, low = self.momentum, self.momentum_low
        if self.position(step) < self.warmup:
            return high - (high - low) * self._warm(step, self.warmup)
        return low + (high - low) * (1 - (1 + math.cos(math.pi * self._rest(step))) / 2)

    def lmbd_factor(self, step):
        """The share of lambda the features' gradient gets at step ``step``."""
        return self._warm(step, self.lmbd_warmup)

    def describe(self):
        if self.kind == 'step':
            text = 'lr %g (x%g every %d epochs)' % (self.lr, self.lr_factor, self.lr_step)
        else:
            text = 'lr %g, %s to %g' % (self.lr, self.kind, self.lr * self.final)
        if self.warmup:
            text += ' after %g epochs of warm-up' % self.warmup
        if self.kind == 'onecycle':
            text += ', momentum %g-%g' % (self.momentum_low, self.momentum)
        return text
