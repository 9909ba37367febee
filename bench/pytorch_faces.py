"""The face networks in PyTorch, for bench/face_speed.py: the reference whose parameters ours must equal and
whose training step ours is timed against, written from the papers and insightface's description (not its
code): IR-ResNet 18/34/50/100 (Deng et al. 2019) and MobileFaceNet (Chen et al. 2018), as
model_zoo/iresnet.py and model_zoo/mobilefacenet.py describe them.

    python bench/pytorch_faces.py --count MODEL FEATURES          # one JSON line: the parameters
    python bench/pytorch_faces.py --serve MODEL BATCH FEATURES CLASSES [--bf16]

``--serve`` builds the network with a class layer, softmax + the count-balanced center loss (the same as
ours), SGD (momentum 0.9, wd 5e-4) and plain SGD at alpha 0.5 for the centers, on one random batch of
112x112 colour images, one thread per core; then answers each line of its input, 'warm' (untimed steps)
or 'go' (timed steps), with the images/s of its median step, as training/probe.py does for ours.
``--bf16`` runs the forward pass under torch.autocast(cpu, bfloat16).
"""
import argparse
import json
import os
import sys
import time

try:
    import torch
    from torch import nn
except ImportError:
    sys.exit('pytorch_faces.py: needs PyTorch (pip install torch); bench/face_speed.py runs it with --torch PYTHON')

DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
BOTTLENECKS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))
WARMUP, STEPS = 3, 6


class Unit(nn.Module):
    """BN - conv3x3 - BN - PReLU - conv3x3 (stride) - BN, plus the shortcut (1x1 conv + BN where it changes)."""

    def __init__(self, cin, c, stride):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(cin), nn.Conv2d(cin, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c),
                                  nn.PReLU(c), nn.Conv2d(c, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c))
        self.short = None if stride == 1 and cin == c else nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False),
                                                                          nn.BatchNorm2d(c))

    def forward(self, x):
        return self.body(x) + (x if self.short is None else self.short(x))


def iresnet(layers, features):
    mods, cin = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)], 64
    for c, units in zip((64, 128, 256, 512), DEPTHS[layers]):
        for u in range(units):
            mods.append(Unit(cin, c, 2 if u == 0 else 1))
            cin = c
    last = nn.BatchNorm1d(features)
    last.weight.requires_grad = False  # insightface's: no learned scale
    mods += [nn.BatchNorm2d(512), nn.Flatten(), nn.Linear(512 * 7 * 7, features), last]
    return nn.Sequential(*mods)


def block(cin, cout, kernel=1, stride=1, groups=1, linear=False):
    mods = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return mods if linear else mods + [nn.PReLU(cout)]


class Bottleneck(nn.Module):
    def __init__(self, cin, c, t, stride):
        super().__init__()
        self.residual = stride == 1 and cin == c
        self.body = nn.Sequential(*block(cin, t * cin), *block(t * cin, t * cin, 3, stride, t * cin),
                                  *block(t * cin, c, linear=True))

    def forward(self, x):
        return self.body(x) + x if self.residual else self.body(x)


def mobilefacenet(features):
    mods, cin = block(3, 64, 3, 2) + block(64, 64, 3, 1, 64), 64
    for t, c, n, s in BOTTLENECKS:
        for i in range(n):
            mods.append(Bottleneck(cin, c, t, s if i == 0 else 1))
            cin = c
    mods += block(128, 512) + [nn.Conv2d(512, 512, 7, groups=512, bias=False), nn.BatchNorm2d(512), nn.Flatten(),
                               nn.Linear(512, features, bias=False), nn.BatchNorm1d(features)]
    return nn.Sequential(*mods)


def network(model, features):
    return mobilefacenet(features) if model == 'mobilefacenet' else iresnet(int(model[len('iresnet'):]), features)


def count(module):
    """Every parameter, learned or fixed (insightface's last BN scale), as PyTorch's parameters() gives them."""
    return sum(p.numel() for p in module.parameters())


def serve(model, batch, features, classes, bf16):
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    torch.manual_seed(0)
    body, head = network(model, features), nn.Linear(features, classes)
    centers = nn.Parameter(torch.randn(classes, features) * 0.01)
    opt = torch.optim.SGD([p for p in list(body.parameters()) + list(head.parameters()) if p.requires_grad], lr=0.01,
                          momentum=0.9, weight_decay=5e-4)
    copt = torch.optim.SGD([centers], lr=0.5)
    x, y = torch.randn(batch, 3, 112, 112), torch.randint(0, classes, (batch,))

    def step():
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            feats = body(x)
            scores = head(feats)
        feats, scores = feats.float(), scores.float()
        counts = torch.bincount(y, minlength=classes).float()[y]
        loss = nn.functional.cross_entropy(scores, y) + (0.5 * ((feats - centers[y]) ** 2).sum(1) / counts).mean()
        opt.zero_grad()
        copt.zero_grad()
        loss.backward()
        opt.step()
        copt.step()

    def steps(n):
        times = []
        for _ in range(n):
            tic = time.time()
            step()
            times.append(time.time() - tic)
        return batch / sorted(times)[len(times) // 2]
    for line in sys.stdin:
        print(steps(WARMUP if line.strip() == 'warm' else STEPS), flush=True)


if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--count', nargs=2, metavar=('MODEL', 'FEATURES'))
    p.add_argument('--serve', nargs=4, metavar=('MODEL', 'BATCH', 'FEATURES', 'CLASSES'))
    p.add_argument('--bf16', action='store_true')
    args = p.parse_args()
    if args.count:
        print(json.dumps(dict(params=count(network(args.count[0], int(args.count[1]))), torch=torch.__version__)))
    elif args.serve:
        serve(args.serve[0], *(int(v) for v in args.serve[1:]), bf16=args.bf16)
    else:
        p.error('give --count or --serve')
