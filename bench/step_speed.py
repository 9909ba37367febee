"""Images/s of one hybridized LeNet++ training step (softmax + center loss) per activation.

    python bench/step_speed.py [--batch_size 128] [--steps 40] [--acts leaky,prelu,prelu-sub,prelu-op,relu]

'prelu' is models.PReLU (a * x + (1 - a) * max(x, 0), each product a depthwise 1x1 convolution: oneDNN's
operators only); for comparison, the same function written two other ways: 'prelu-sub', max(x, 0) +
a * (x - max(x, 0)) with MXNet's elementwise subtraction, and
'prelu-op', MXNet's own LeakyReLU(act_type='prelu') operator.
Batches are random tensors already on the device, so this times the step alone.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from devices import compat  # noqa: E402,F401

import mxnet as mx  # noqa: E402
from mxnet import autograd, gluon, nd  # noqa: E402
from mxnet.gluon import nn  # noqa: E402

import models  # noqa: E402
from model_zoo import layers  # noqa: E402
from center_loss import CenterLoss  # noqa: E402

ACTS = models.ACTIVATIONS + ('prelu-sub', 'prelu-op')


class OpPReLU(nn.HybridBlock):
    def __init__(self, channels, spatial=True, **kwargs):
        super(OpPReLU, self).__init__(**kwargs)
        with self.name_scope():
            self.alpha = self.params.get('alpha', shape=(channels,), init=mx.init.Constant(0.25))

    def hybrid_forward(self, F, x, alpha):
        return F.LeakyReLU(x, gamma=alpha, act_type='prelu')


class SubPReLU(nn.HybridBlock):
    def __init__(self, channels, spatial=True, **kwargs):
        super(SubPReLU, self).__init__(**kwargs)
        self._channels = channels
        with self.name_scope():
            self.alpha = self.params.get('alpha', shape=(channels, 1, 1, 1), init=mx.init.Constant(0.25))

    def hybrid_forward(self, F, x, alpha):
        pos = F.relu(x)
        return pos + F.Convolution(x - pos, alpha, kernel=(1, 1), num_filter=self._channels,
                                   num_group=self._channels, no_bias=True)


def step_speed(act, batch_size, steps, ctx):
    saved = layers.PReLU  # what model_zoo.layers.activation builds
    if act in ('prelu-op', 'prelu-sub'):
        layers.PReLU, act = {'prelu-op': OpPReLU, 'prelu-sub': SubPReLU}[act], 'prelu'
    try:
        net = models.LeNetPlus(act=act)
    finally:
        layers.PReLU = saved
    net.initialize(mx.init.Xavier(magnitude=2.24), ctx=ctx)
    net.hybridize(static_alloc=True, static_shape=True)
    closs = CenterLoss(10, 2)
    closs.initialize(ctx=ctx)
    closs.hybridize(static_alloc=True, static_shape=True)
    ce = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.01, 'momentum': 0.9})
    ctrainer = gluon.Trainer(closs.collect_params(), 'sgd', {'learning_rate': 0.5})
    x = nd.random.normal(shape=(batch_size, 1, 28, 28), ctx=ctx)
    y = nd.random.randint(0, 10, (batch_size,), ctx=ctx).astype('float32')
    warmup = 3
    for i in range(warmup + steps):
        if i == warmup:
            nd.waitall()
            tic = time.time()
        with autograd.record():
            scores, features = net(x)
            loss = ce(scores, y) + closs(features, y)
        loss.backward()
        trainer.step(batch_size)
        ctrainer.step(batch_size)
    nd.waitall()
    return steps * batch_size / (time.time() - tic)


def main():
    from cli.flags import Parser, listed, number
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--batch_size', type=number(int, above=0), default=128)
    p.add_argument('--steps', type=number(int, above=0), default=40)
    p.add_argument('--acts', type=listed(ACTS), default='leaky,prelu,prelu-sub,prelu-op,relu')
    args = p.parse_args()
    ctx = mx.gpu(0) if mx.context.num_gpus() else mx.cpu()
    print('mxnet %s, %s, OMP_NUM_THREADS=%s, batch %d' % (mx.__version__, ctx, os.environ.get('OMP_NUM_THREADS'),
                                                        args.batch_size))
    for act in args.acts:
        print('%-9s %7.0f images/s' % (act, step_speed(act, args.batch_size, args.steps, ctx)))


if __name__ == '__main__':
    main()
