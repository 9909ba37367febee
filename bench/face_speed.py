"""The face networks' training step, ours against PyTorch's with the same network, like for like.

    python bench/face_speed.py --torch ~/torch-venv/bin/python            # iresnet50 and mobilefacenet
    python bench/face_speed.py --models iresnet18 --rounds 5 --torch PYTHON

For each network: its parameters, counted in ours (model_zoo/) and in the PyTorch reference written from
the papers (bench/pytorch_faces.py), which must be equal; then a training step on one batch of random
112x112 colour images (batch 32, 512-D features, 1,000 classes, softmax + the count-balanced center loss,
SGD with momentum and weight decay, the centers by plain SGD), each contender in a process of its own and
warmed up, timed in turn round after round (the order flipped each round), each round's figure the
images/s of its median step of 6; the medians over the rounds and their ratio. Ours is
``python -m training.probe`` (the hybridized step of ``--precision auto``), in float32 and, on a CPU with
bfloat16 instructions, in bfloat16 (convolutions; PyTorch's counterpart: autocast). Nothing else may run
on the machine meanwhile.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from devices import compat  # noqa: E402  (before mxnet)
from devices.compat import cpu_has_bf16  # noqa: E402
from devices.precision import median  # noqa: E402

BATCH, FEATURES, CLASSES = 32, 512, 1000
PAUSE = 0.3


def ours_command(model, precision, batch):
    return [sys.executable, '-m', 'training.probe', '--serve', precision, model, 'prelu', str(batch), str(FEATURES),
            str(CLASSES), '3x112x112']


def torch_command(python, model, precision, batch):
    return [python, os.path.join(HERE, 'pytorch_faces.py'), '--serve', model, str(batch), str(FEATURES),
            str(CLASSES)] + (['--bf16'] if precision == 'bfloat16' else [])


def ours_params(model):
    import numpy as np
    import mxnet as mx
    from mxnet import nd
    import models
    net = models.get_model(model, CLASSES, FEATURES, 'prelu', (112, 112))
    net.initialize(mx.init.Xavier())
    net(nd.zeros((1, 3, 112, 112)))
    body = [p for name, p in net.collect_params().items()
            if not name.endswith(('running_mean', 'running_var')) and not name.startswith(net.output.prefix)]
    return sum(int(np.prod(p.shape)) for p in body)


def in_turn(commands, rounds):
    """{name: [images/s of each round]} of ``commands`` ({name: argv}), each started once, warmed up, then asked
    for a timed round in turn."""
    children = {name: subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, universal_newlines=True)
                for name, argv in commands.items()}

    def ask(name, word):
        child = children[name]
        child.stdin.write(word + '\n')
        child.stdin.flush()
        line = child.stdout.readline()
        if not line:
            raise SystemExit('%s failed: %s' % (name, (child.stderr.read().strip().splitlines() or ['?'])[-1]))
        return float(line)
    try:
        for name in children:
            ask(name, 'warm')
        rates = {name: [] for name in children}
        for r in range(rounds):
            for name in (list(children) if r % 2 == 0 else list(children)[::-1]):
                time.sleep(PAUSE)
                rates[name].append(ask(name, 'go'))
        return rates
    finally:
        for child in children.values():
            child.stdin.close()
            child.wait()


def main():
    from cli.flags import Parser, listed, number
    from runs.records import MODELS
    faces = tuple(m for m in MODELS if m.startswith('iresnet') or m == 'mobilefacenet')
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', type=listed(faces), default='iresnet50,mobilefacenet')
    p.add_argument('--batch_size', type=number(int, above=0), default=BATCH)
    p.add_argument('--rounds', type=number(int, above=0), default=3)
    p.add_argument('--torch', metavar='PYTHON', default=None,
                   help='a Python interpreter that has PyTorch (default: none, ours alone)')
    args = p.parse_args()
    if args.torch and not os.access(args.torch, os.X_OK):
        p.error('--torch: %s is not an executable Python' % args.torch)
    precisions = ['float32'] + (['bfloat16'] if cpu_has_bf16() else [])
    print('%s, %s cores, OMP_NUM_THREADS=%s; batch %d, %d-D, %d classes, softmax + center loss; %s'
          % (compat.cpu_name(), len(os.sched_getaffinity(0)), os.environ.get('OMP_NUM_THREADS'), args.batch_size,
             FEATURES, CLASSES, 'bfloat16 too' if len(precisions) > 1 else 'float32 only (no bfloat16 instructions)'))
    for model in args.models:
        line = '%s: parameters (without the class layer) ours %s' % (model, format(ours_params(model), ','))
        if args.torch:
            theirs = json.loads(subprocess.check_output([args.torch, os.path.join(HERE, 'pytorch_faces.py'), '--count',
                                                         model, str(FEATURES)], universal_newlines=True))
            line += ', PyTorch %s %s' % (theirs['torch'], format(theirs['params'], ','))
        print(line, flush=True)
        for precision in precisions:
            commands = {'ours': ours_command(model, precision, args.batch_size)}
            if args.torch:
                commands['pytorch'] = torch_command(args.torch, model, precision, args.batch_size)
            rates = in_turn(commands, args.rounds)
            shown = ', '.join('%s %.1f images/s (rounds %s)' % (name, median(r), ', '.join('%.1f' % v for v in r))
                              for name, r in rates.items())
            ratio = '; ours / PyTorch %.2fx' % (median(rates['ours']) / median(rates['pytorch'])) \
                if 'pytorch' in rates else ''
            print('  %s: %s%s' % (precision, shown, ratio), flush=True)


if __name__ == '__main__':
    main()
