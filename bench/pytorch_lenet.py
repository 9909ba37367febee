"""The PyTorch equivalent of our first stage, for bench/speed.py.

    python bench/pytorch_lenet.py SLICE.npz [--act prelu|leaky] [--bf16]

LeNet++ (PReLU as in the paper, or LeakyReLU(0.2) as our default; the original port used 0.01) with 2-D
features, softmax + the same count-balanced center loss, SGD (momentum 0.9,
wd 5e-4) and plain SGD at alpha = 0.5 for the centers, batch 128, batches
sliced from in-memory tensors, one thread per core. ``--bf16`` runs the
forward pass under torch.autocast(cpu, bfloat16), PyTorch's counterpart of
our --precision bfloat16. After 20 batches of warm-up, prints one JSON line:
images/s of one epoch.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
try:
    import torch
    from torch import nn
except ImportError:
    sys.exit('pytorch_lenet.py: needs PyTorch (pip install torch); bench/speed.py runs it only where torch is')


def lenet_plus(act):
    def make_act(channels):
        return nn.PReLU(channels) if act == 'prelu' else nn.LeakyReLU(0.2)

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 5, padding=2), make_act(cout), nn.Conv2d(cout, cout, 5, padding=2),
                make_act(cout), nn.MaxPool2d(2)]
    return nn.Sequential(*block(1, 32), *block(32, 64), *block(64, 128), nn.Flatten(), nn.Linear(1152, 2))


def run(images, labels, act, bf16, batch_size=128, warmup=20):
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(0)
    body, head = lenet_plus(act), nn.Linear(2, 10)
    centers = nn.Parameter(torch.randn(10, 2))
    opt = torch.optim.SGD(list(body.parameters()) + list(head.parameters()), lr=0.01, momentum=0.9,
                          weight_decay=5e-4)
    copt = torch.optim.SGD([centers], lr=0.5)
    x = (torch.tensor(images, dtype=torch.float32)[:, None] / 255 - 0.1307) / 0.3081
    y = torch.tensor(labels, dtype=torch.long)
    n = len(y)

    def step(idx):
        xb, yb = x[idx], y[idx]
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            feats = body(xb)
            scores = head(feats)
        feats, scores = feats.float(), scores.float()
        counts = torch.bincount(yb, minlength=10).float()[yb]
        loss = nn.functional.cross_entropy(scores, yb) + \
            (0.5 * ((feats - centers[yb]) ** 2).sum(1) / counts).mean()
        opt.zero_grad()
        copt.zero_grad()
        loss.backward()
        opt.step()
        copt.step()

    order = torch.randperm(n)
    for start in range(0, min(n, warmup * batch_size), batch_size):
        step(order[start:start + batch_size])
    tic = time.time()
    order = torch.randperm(n)
    for start in range(0, n, batch_size):
        step(order[start:start + batch_size])
    return n / (time.time() - tic)


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('slice', help='.npz with images (N, 28, 28) uint8 and labels (N,)')
    p.add_argument('--act', choices=('prelu', 'leaky'), default='prelu')
    p.add_argument('--bf16', action='store_true')
    args = p.parse_args()
    try:
        arrays = np.load(args.slice)
        images, labels = arrays['images'], arrays['labels']
    except (OSError, ValueError, KeyError) as e:
        p.exit(2, '%s: error: %s: not a slice written by bench/speed.py (%s)\n' % (p.prog, args.slice, e))
    print(json.dumps(dict(loop=run(images, labels, args.act, args.bf16),
                          torch=torch.__version__)))
