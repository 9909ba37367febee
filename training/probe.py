"""The timed training steps of ``--precision auto`` (devices/precision.py): each candidate precision
runs in a process of its own, started as

    python -m training.probe --serve float32 lenet++ leaky 128 2 10 1x28x28

which builds a fresh seeded network, then answers 'warm' (untimed steps) and 'go' (timed steps) with
the images/s of its median step, until its input ends."""
import sys
import time

from devices import compat  # noqa: F401  (before mxnet)

import numpy as np
import mxnet as mx
from mxnet import gluon, nd

import models
from center_loss import CenterLoss
from devices.precision import STEPS, WARMUP, enable_bfloat16
from training import step


def build_steps(precision, model, act, batch_size, feature_size, num_classes, shape=(1, 28, 28)):
    """In this process: a function that runs ``n`` hybridized softmax + center loss training steps
    of a fresh network on one random batch and returns their images/s (the median step's)."""
    if precision == 'bfloat16':
        enable_bfloat16()
    mx.random.seed(0)
    arch = models.Arch(model, act, feature_size, num_classes, (), shape[0], tuple(shape[1:]))
    net = models.build_net(arch, [mx.cpu()])
    closs = CenterLoss(num_classes, feature_size)
    closs.initialize(ctx=mx.cpu())
    objective = step.Objective(net, closs)
    objective.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.01, 'momentum': 0.9, 'wd': 5e-4})
    ctrainer = gluon.Trainer(closs.collect_params(), 'sgd', {'learning_rate': 0.5})
    rng = np.random.RandomState(0)
    x = nd.array(rng.randn(batch_size, *shape))
    y = nd.array(rng.randint(0, num_classes, batch_size))

    def steps(n):
        times = []
        for _ in range(n):
            tic = time.time()
            step.train_step(objective, trainer, ctrainer, x, y, [mx.cpu()], num_classes)
            nd.waitall()
            times.append(time.time() - tic)
        return batch_size / float(np.median(times))
    return steps


def measure_steps(precision, model, act, batch_size, feature_size, num_classes, shape=(1, 28, 28), warmup=WARMUP,
                  steps=STEPS):
    """In this process: images/s of ``steps`` training steps after ``warmup`` untimed ones."""
    run = build_steps(precision, model, act, batch_size, feature_size, num_classes, shape)
    run(warmup)
    return run(steps)


def serve(precision, model, act, batch_size, feature_size, num_classes, shape):
    """The child of measure_in_turn: 'warm' runs the untimed steps, 'go' the timed ones, each
    answered with images/s, until its input ends."""
    run = build_steps(precision, model, act, batch_size, feature_size, num_classes, shape)
    for line in sys.stdin:
        print(run(WARMUP if line.strip() == 'warm' else STEPS), flush=True)


if __name__ == '__main__':
    if len(sys.argv) != 9 or sys.argv[1] != '--serve':
        sys.exit('usage: python -m training.probe --serve PRECISION MODEL ACT BATCH FEATURES CLASSES CxHxW')
    p, m, a, b, f, c = sys.argv[2:8]
    serve(p, m, a, int(b), int(f), int(c), tuple(int(v) for v in sys.argv[8].split('x')))
