"""Training speed of this trainer against an original-style Gluon loop and PyTorch, in one run.

    python bench/speed.py            # a 12,000-image slice of MNIST (about two minutes on 2 cores)
    python bench/speed.py --full     # the whole training set

Prints images/s of the first stage with center loss (LeNet++, 2-D features,
batch 128) for:
- ours: main.train_epoch, batches sliced from arrays held on the device, one
  hybridized graph per step, sums read back every 50 batches;
- original-style: the original Gluon port's recipe, written here: a DataLoader
  with a per-sample ToTensor/Normalize transform, class counts through
  asnumpy + np.bincount every batch, the loss read back every batch, and a
  full pass over the training set for its accuracy after each epoch;
- PyTorch (when torch is installed): LeNet++ with PReLU and the same balanced
  center loss, batches sliced from in-memory tensors;
then the ratios, our whole epoch against our training loop alone, the time of
nearest-center and k-NN evaluation of 10,000 test features against 60,000
training features, and the peak memory of a one-epoch `main.py` run.
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import compat  # noqa: E402,F401

import numpy as np  # noqa: E402
import mxnet as mx  # noqa: E402
from mxnet import autograd, gluon, nd  # noqa: E402

import main as trainer_mod  # noqa: E402
import utils  # noqa: E402
from models import LeNetPlus  # noqa: E402

BATCH = 128


def load(n):
    directory = utils.find_data('mnist', download=False)
    images, labels = utils.load_split(directory, 'train')
    return images[:n], labels[:n]


def ours(images, labels, epochs):
    """Images/s of our training loop, and of our whole epoch (test evaluation included)."""
    args = trainer_mod.parse_args(['--train', '--center_loss', '--use_gpu', 'False', '--no_plotting'])
    args.kv, args.rank, args.num_workers = None, 0, 1
    trainer_mod.resolve_arch(args)
    ctxs = [mx.cpu()]
    mean, std = images.mean() / 255.0, images.std() / 255.0
    train_x, train_y = utils.to_nd(images, labels, mean, std, ctxs[0])
    test_img, test_lbl = utils.load_split(utils.find_data('mnist', download=False), 'test')
    test_x, test_y = utils.to_nd(test_img, test_lbl, mean, std, ctxs[0])
    data = dict(train_x=train_x, train_y=train_y)
    net = trainer_mod.build_net(args, ctxs)
    closs = trainer_mod.CenterLoss(10, 2, args.lmbd)
    closs.initialize(ctx=ctxs)
    objective = trainer_mod.Objective(net, closs)
    objective.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': args.lr, 'momentum': 0.9, 'wd': args.wd})
    ctrainer = gluon.Trainer(closs.collect_params(), 'sgd', {'learning_rate': args.alpha})
    loop, whole = [], []
    for epoch in range(1, epochs + 1):
        tic = time.time()
        sums, train_feat = trainer_mod.train_epoch(args, data, ctxs, objective, trainer, ctrainer, epoch, 'bench')
        loop.append(time.time() - tic)
        scores, feats = utils.forward_all(net, test_x)
        utils.accuracy(utils.predict_softmax(scores), test_y)
        utils.accuracy(utils.predict_center(feats, closs.centers.weight.data()), test_y)
        whole.append(time.time() - tic)
    n = len(labels)
    return n / loop[-1], n / whole[-1], whole[-1] / loop[-1]


class OriginalCenterLoss(gluon.HybridBlock):
    """The original port's loss: counts from the host every batch."""

    def __init__(self, num_classes, feature_size, lmbd, **kwargs):
        super(OriginalCenterLoss, self).__init__(**kwargs)
        self._lmbd = lmbd
        with self.name_scope():
            self.centers = gluon.nn.Embedding(num_classes, feature_size)

    def hybrid_forward(self, F, feature, label):
        hist = nd.array(np.bincount(label.asnumpy().astype(int)), ctx=label.context)
        counts = F.take(hist, label)
        diff = feature - self.centers(label)
        return self._lmbd * 0.5 * F.sum(F.square(diff), 1) / counts


def original_style(images, labels, epochs):
    """Images/s of the original-style loop alone, and with its per-epoch training-set pass."""
    from mxnet.gluon.data.vision import transforms
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(0.1307, 0.3081)])
    dataset = gluon.data.ArrayDataset(nd.array(images[..., None], dtype='uint8'),
                                      labels.astype(np.float32)).transform_first(transform)
    loader = gluon.data.DataLoader(dataset, batch_size=BATCH, shuffle=True)
    net = LeNetPlus(act='leaky')
    net.initialize(mx.init.Xavier(magnitude=2.24))
    net.hybridize()
    closs = OriginalCenterLoss(10, 2, 1.0)
    closs.initialize()
    ce = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.1, 'wd': 1e-4})
    ctrainer = gluon.Trainer(closs.collect_params(), 'sgd', {'learning_rate': 0.5})
    loop, whole = [], []
    for _ in range(epochs):
        tic = time.time()
        for data, label in loader:
            with autograd.record():
                scores, features = net(data)
                loss = ce(scores, label) + closs(features, label)
            loss.backward()
            trainer.step(data.shape[0])
            ctrainer.step(data.shape[0])
            nd.mean(loss).asscalar()
        loop.append(time.time() - tic)
        correct = 0
        for data, label in loader:  # the original's accuracy pass over the training set
            scores, _ = net(data)
            correct += (nd.argmax(scores, axis=1) == label).sum().asscalar()
        whole.append(time.time() - tic)
    n = len(labels)
    return n / loop[-1], n / whole[-1]


def pytorch(images, labels, epochs):
    try:
        import torch
    except ImportError:
        return None
    from torch import nn as tnn
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(0)

    def block(cin, cout):
        return [tnn.Conv2d(cin, cout, 5, padding=2), tnn.PReLU(cout), tnn.Conv2d(cout, cout, 5, padding=2),
                tnn.PReLU(cout), tnn.MaxPool2d(2)]
    body = tnn.Sequential(*block(1, 32), *block(32, 64), *block(64, 128), tnn.Flatten(), tnn.Linear(1152, 2))
    head = tnn.Linear(2, 10)
    centers = tnn.Parameter(torch.randn(10, 2))
    opt = torch.optim.SGD(list(body.parameters()) + list(head.parameters()), lr=0.01, momentum=0.9,
                          weight_decay=5e-4)
    copt = torch.optim.SGD([centers], lr=0.5)
    x = (torch.tensor(images, dtype=torch.float32)[:, None] / 255 - 0.1307) / 0.3081
    y = torch.tensor(labels, dtype=torch.long)
    n, times = len(y), []
    for _ in range(epochs):
        tic = time.time()
        order = torch.randperm(n)
        for start in range(0, n, BATCH):
            idx = order[start:start + BATCH]
            xb, yb = x[idx], y[idx]
            feats = body(xb)
            counts = torch.bincount(yb, minlength=10).float()[yb]
            loss = tnn.functional.cross_entropy(head(feats), yb) + \
                (0.5 * ((feats - centers[yb]) ** 2).sum(1) / counts).mean()
            opt.zero_grad()
            copt.zero_grad()
            loss.backward()
            opt.step()
            copt.step()
        times.append(time.time() - tic)
    return n / times[-1]


def evaluation_times():
    rng = np.random.RandomState(0)
    gallery = nd.array(rng.randn(60000, 2))
    gallery_labels = nd.array(rng.randint(0, 10, 60000))
    queries, centers = nd.array(rng.randn(10000, 2)), nd.array(rng.randn(10, 2))
    nd.waitall()
    tic = time.time()
    utils.predict_center(queries, centers).asnumpy()
    center_s = time.time() - tic
    tic = time.time()
    utils.predict_knn(queries, gallery, gallery_labels, 10, 10).asnumpy()
    return center_s, time.time() - tic


def peak_memory(n):
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, os.path.join(ROOT, 'main.py'), '--train', '--center_loss', '--epochs', '1',
                        '--train_samples', str(n), '--use_gpu', 'False', '--ckpt_dir', tmp, '--out_dir', tmp],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0  # KiB -> MiB


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--full', action='store_true', help='the whole training set instead of 12,000 images')
    p.add_argument('--samples', type=int, default=12000, help='training images without --full')
    p.add_argument('--epochs', type=int, default=2, help='per contender; the last is reported')
    args = p.parse_args()
    n = 60000 if args.full else args.samples
    images, labels = load(n)
    print('mxnet %s, CPU, OMP_NUM_THREADS=%s, %d images, batch %d, LeNet++ 2-D features, softmax + center loss'
          % (mx.__version__, os.environ.get('OMP_NUM_THREADS'), n, BATCH))
    our_loop, our_epoch, epoch_ratio = ours(images, labels, args.epochs)
    orig_loop, orig_epoch = original_style(images, labels, args.epochs)
    torch_loop = pytorch(images, labels, args.epochs)
    print('ours            %6.0f images/s training loop, %6.0f with the test evaluation' % (our_loop, our_epoch))
    print('original-style  %6.0f images/s training loop, %6.0f with its training-set pass' % (orig_loop, orig_epoch))
    if torch_loop is None:
        print('PyTorch         not installed (pip install torch==2.13.0)')
    else:
        print('PyTorch (PReLU) %6.0f images/s training loop' % torch_loop)
    print('ratio ours / original-style: %.2fx loop, %.2fx epoch' % (our_loop / orig_loop, our_epoch / orig_epoch))
    if torch_loop is not None:
        print('ratio ours / PyTorch:        %.2fx loop' % (our_loop / torch_loop))
    print('our whole epoch / our training loop: %.2fx' % epoch_ratio)
    center_s, knn_s = evaluation_times()
    print('evaluation of 10,000 test features: nearest center %.3fs, k-NN (k=10, 60,000 gallery) %.2fs'
          % (center_s, knn_s))
    print('peak memory of a one-epoch main.py run on %d images: %.0f MiB' % (n, peak_memory(n)))


if __name__ == '__main__':
    main()
