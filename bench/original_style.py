"""The original Gluon port's training loop, rewritten here to its recipe, for bench/speed.py.

    python bench/original_style.py SLICE.npz

Runs on its own, without this project's compat.py, so MXNet keeps its default
thread count as the original did (bench/speed.py starts it with
OMP_NUM_THREADS removed from the environment). The recipe:
- a DataLoader over a uint8 dataset with a per-sample ToTensor/Normalize transform;
- the original's own LeNet++ (its lenet.py: LeakyReLU(0.01)), hybridized without static_alloc;
- the center loss's class counts through asnumpy + np.bincount every batch;
- the mean loss read back every batch;
- a full pass over the training set for its accuracy after each epoch.
After 20 batches of warm-up, prints one JSON line: images/s of one epoch's
loop, and of the epoch with its training-set pass.
"""
import argparse
import json
import time

import numpy as np

if 'bool' not in vars(np):  # mxnet 1.9.1 on numpy >= 1.24 (see compat.py)
    np.bool = bool

import mxnet as mx  # noqa: E402
from mxnet import autograd, gluon, nd  # noqa: E402
from mxnet.gluon import nn  # noqa: E402
from mxnet.gluon.data.vision import transforms  # noqa: E402


class LeNetPlus(nn.HybridBlock):
    def __init__(self, **kwargs):
        super(LeNetPlus, self).__init__(**kwargs)
        with self.name_scope():
            self.body = nn.HybridSequential()
            for channels in (32, 64, 128):
                for _ in range(2):
                    self.body.add(nn.Conv2D(channels, kernel_size=5, padding=2), nn.LeakyReLU(0.01))
                self.body.add(nn.MaxPool2D(pool_size=2, strides=2))
            self.body.add(nn.Flatten())
            self.features = nn.Dense(2)
            self.output = nn.Dense(10)

    def hybrid_forward(self, F, x):
        features = self.features(self.body(x))
        return self.output(features), features


class CenterLoss(gluon.HybridBlock):
    """The original's loss: counts from the host every batch."""

    def __init__(self, num_classes, feature_size, lmbd, **kwargs):
        super(CenterLoss, self).__init__(**kwargs)
        self._lmbd = lmbd
        with self.name_scope():
            self.centers = nn.Embedding(num_classes, feature_size)

    def hybrid_forward(self, F, feature, label):
        hist = nd.array(np.bincount(label.asnumpy().astype(int)), ctx=label.context)
        counts = F.take(hist, label)
        diff = feature - self.centers(label)
        return self._lmbd * 0.5 * F.sum(F.square(diff), 1) / counts


def run(images, labels, batch_size=128, warmup=20):
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(0.1307, 0.3081)])
    dataset = gluon.data.ArrayDataset(nd.array(images[..., None], dtype='uint8'),
                                      labels.astype(np.float32)).transform_first(transform)
    loader = gluon.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
    net = LeNetPlus()
    net.initialize(mx.init.Xavier(magnitude=2.24))
    net.hybridize()
    closs = CenterLoss(10, 2, 1.0)
    closs.initialize()
    ce = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1, 'wd': 1e-4})
    ctrainer = gluon.Trainer(closs.collect_params(), 'sgd', {'learning_rate': 0.5})

    def step(data, label):
        with autograd.record():
            scores, features = net(data)
            loss = ce(scores, label) + closs(features, label)
        loss.backward()
        trainer.step(data.shape[0])
        ctrainer.step(data.shape[0])
        nd.mean(loss).asscalar()

    for i, (data, label) in enumerate(loader):
        if i == warmup:
            break
        step(data, label)
    tic = time.time()
    for data, label in loader:
        step(data, label)
    loop = time.time() - tic
    correct = 0
    for data, label in loader:  # the original's accuracy pass over the training set
        scores, _ = net(data)
        correct += (nd.argmax(scores, axis=1) == label).sum().asscalar()
    whole = time.time() - tic
    return len(labels) / loop, len(labels) / whole


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('slice', help='.npz with images (N, 28, 28) uint8 and labels (N,)')
    args = p.parse_args()
    try:
        arrays = np.load(args.slice)
        images, labels = arrays['images'], arrays['labels']
    except (OSError, ValueError, KeyError) as e:
        p.exit(2, '%s: error: %s: not a slice written by bench/speed.py (%s)\n' % (p.prog, args.slice, e))
    loop_rate, epoch_rate = run(images, labels)
    print(json.dumps(dict(loop=loop_rate, epoch=epoch_rate)))
