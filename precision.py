"""Which precision trains fastest on this machine: measured once per machine and setting, then cached.

A CPU's flags do not say it: with mxnet 1.9.1's oneDNN, bfloat16 convolutions
were faster than float32 on one CPU with AVX512-BF16 and slower on others that
also have AMX (README, Speed). So ``--precision auto`` times a few training
steps of each candidate, each in a process of its own (MXNet's mixed precision,
``amp.init``, is process-wide and cannot be undone), on its own seeded network
and random batches, never the run's, so that a run's results do not depend on
the measurement.

    python precision.py --measure float32 lenet++ leaky 128 2 10 1x28x28   # one candidate: images/s
"""
import collections
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RULE = 1.10            # bfloat16 is kept only when it trains at least 10% faster than float32
WARMUP, STEPS = 3, 8   # training steps per candidate: not timed, then timed one by one
CACHE_ENV = 'CENTER_LOSS_CACHE'
CACHE_FILE = 'precision.json'

Choice = collections.namedtuple('Choice', 'precision rates how')  # how: 'measured' or 'cached'


def decide(rates):
    """'bfloat16' when it is at least RULE times as fast as float32, else 'float32' (ties too)."""
    if rates.get('bfloat16', 0.0) / rates['float32'] >= RULE - 1e-9:  # 1.10 exactly counts, despite rounding
        return 'bfloat16'
    return 'float32'


def cache_path(environ=None):
    """$CENTER_LOSS_CACHE, else $XDG_CACHE_HOME/center-loss-gluon, else ~/.cache/center-loss-gluon; the file in it."""
    environ = os.environ if environ is None else environ
    folder = environ.get(CACHE_ENV) or os.path.join(
        environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache'), 'center-loss-gluon')
    return os.path.join(folder, CACHE_FILE)


def cache_key(spec):
    """What the choice depends on: the CPU, its threads, MXNet, and the step measured."""
    import compat
    import mxnet as mx
    return '|'.join(str(v) for v in (compat.cpu_field('model name') or platform.machine(),
                                     'threads=%s' % os.environ.get('OMP_NUM_THREADS'), 'mxnet=' + mx.__version__,
                                     spec['model'], spec['act'], 'batch=%d' % spec['batch_size'],
                                     'features=%d' % spec['feature_size'], 'classes=%d' % spec['num_classes'])) \
        + _shape_key(spec)


def _shape_key(spec):
    """The images' shape, for others than MNIST's 1x28x28 (whose keys stay those cached before)."""
    shape = (spec.get('channels', 1),) + tuple(spec.get('image_size', (28, 28)))
    return '' if shape == (1, 28, 28) else '|input=%dx%dx%d' % shape


def read_cache(path):
    """The cached choices, or {} when the file is missing, unreadable or not ours: never an error."""
    try:
        with open(path) as f:
            entries = json.load(f)
        return entries if isinstance(entries, dict) else {}
    except (OSError, ValueError):
        return {}


def write_cache(path, entries):
    """Best-effort: a cache that cannot be written is skipped, the run goes on."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        from runfiles import atomic_write
        atomic_write(path, json.dumps(entries, indent=1, sort_keys=True).encode())
        return True
    except OSError:
        return False


def run_candidate(precision, spec):
    """Images/s of ``precision``, measured by a child process with a clean environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('DMLC_')}  # not a parameter-server worker
    channels, (height, width) = spec.get('channels', 1), spec.get('image_size', (28, 28))
    cmd = [sys.executable, os.path.join(HERE, 'precision.py'), '--measure', precision, spec['model'], spec['act'],
           str(spec['batch_size']), str(spec['feature_size']), str(spec['num_classes']),
           '%dx%dx%d' % (channels, height, width)]
    out = subprocess.run(cmd, env=env, cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True)
    if out.returncode != 0:
        raise RuntimeError('measuring %s failed: %s' % (precision, (out.stderr.strip().splitlines() or ['?'])[-1]))
    return float(out.stdout.strip().splitlines()[-1])


def choose(spec, measure=run_candidate, path=None):
    """The Choice for ``spec`` (model, act, batch_size, feature_size, num_classes) on this CPU:
    from the cache when this machine and setting were measured before, else measured and cached."""
    path = cache_path() if path is None else path
    key = cache_key(spec)
    entry = read_cache(path).get(key)
    if isinstance(entry, dict) and isinstance(entry.get('rates'), dict) and 'float32' in entry['rates']:
        rates = {k: float(v) for k, v in entry['rates'].items()}
        return Choice(decide(rates), rates, 'cached')
    rates = {p: measure(p, spec) for p in ('float32', 'bfloat16')}
    entries = read_cache(path)  # re-read: another run may have written meanwhile
    entries[key] = dict(rates=rates, choice=decide(rates), measured=time.strftime('%Y-%m-%d %H:%M:%S'))
    write_cache(path, entries)
    return Choice(decide(rates), rates, 'measured')


def enable_bfloat16():
    """MXNet's mixed precision for the convolutions: process-wide, before any network exists."""
    from mxnet.contrib import amp
    amp.init(target_dtype='bfloat16', target_precision_ops=['Convolution'])


def measure_steps(precision, model, act, batch_size, feature_size, num_classes, shape=(1, 28, 28), warmup=WARMUP,
                  steps=STEPS):
    """In this process: images/s of hybridized softmax + center loss training steps of a fresh network."""
    sys.path.insert(0, HERE)
    import compat  # noqa: F401  (before mxnet)
    import numpy as np
    import mxnet as mx
    from mxnet import gluon, nd
    import models
    import train
    from center_loss import CenterLoss
    if precision == 'bfloat16':
        enable_bfloat16()
    mx.random.seed(0)
    arch = models.Arch(model, act, feature_size, num_classes, (), shape[0], tuple(shape[1:]))
    net = models.build_net(arch, [mx.cpu()])
    closs = CenterLoss(num_classes, feature_size)
    closs.initialize(ctx=mx.cpu())
    objective = train.Objective(net, closs)
    objective.hybridize(static_alloc=True, static_shape=True)
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.01, 'momentum': 0.9, 'wd': 5e-4})
    ctrainer = gluon.Trainer(closs.collect_params(), 'sgd', {'learning_rate': 0.5})
    rng = np.random.RandomState(0)
    x = nd.array(rng.randn(batch_size, *shape))
    y = nd.array(rng.randint(0, num_classes, batch_size))
    times = []
    for i in range(warmup + steps):
        tic = time.time()
        train.train_step(objective, trainer, ctrainer, x, y, [mx.cpu()], num_classes)
        nd.waitall()
        if i >= warmup:
            times.append(time.time() - tic)
    return batch_size / float(np.median(times))


if __name__ == '__main__':
    if len(sys.argv) not in (8, 9) or sys.argv[1] != '--measure':
        sys.exit('usage: python precision.py --measure PRECISION MODEL ACT BATCH FEATURES CLASSES [CxHxW]')
    p, m, a, b, f, c = sys.argv[2:8]
    shape = tuple(int(v) for v in sys.argv[8].split('x')) if len(sys.argv) == 9 else (1, 28, 28)
    print(measure_steps(p, m, a, int(b), int(f), int(c), shape))
