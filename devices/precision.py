"""Which precision trains fastest on this machine: measured once per machine and setting, then cached.

A CPU's flags do not say it: with mxnet 1.9.1's oneDNN, bfloat16 convolutions
were faster than float32 on one CPU with AVX512-BF16 and slower on others that
also have AMX (docs/speed.md). So ``--precision auto`` times training steps of
each candidate, each in a process of its own (MXNet's mixed precision,
``amp.init``, is process-wide and cannot be undone), on its own seeded network
and random batches, never the run's, so that a run's results do not depend on
the measurement.

The two candidates are timed in turn, round after round (the order flipped each
round), and each one's rate is the median of its rounds: a busy moment of the
machine slows both alike instead of deciding for one. bfloat16 must beat float32
by a margin (RULE). A measurement whose rounds disagree (SPREAD) is used but not
cached. A choice read from the cache is checked against the run's own first epoch
(``check_cached``): a rate far from the cached one, below or above, is said, and
the entry is forgotten, so the next run measures again.

    python -m training.probe --serve float32 lenet++ leaky 128 2 10 1x28x28   # one candidate, timed on request
"""
import collections
import json
import os
import platform
import subprocess
import sys
import time

from faults.atomic import atomic_write

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where `python -m` finds the packages
RULE = 1.10            # bfloat16 is kept only when it trains at least 10% faster than float32
WARMUP, STEPS = 3, 6   # training steps per candidate: not timed, then timed per round
ROUNDS = 3             # rounds of the two candidates in turn
PAUSE = 0.3            # seconds between turns, so that one's OpenMP threads stop spinning before the other runs
FAR = 2.0              # a first epoch at under 1/FAR or over FAR times the cached rate forgets the entry
CHECK_STEPS = 50       # a first epoch shorter than this is no rate to check against (the graph is built in it)
SPREAD = FAR           # a candidate whose rounds differ by more than this (fastest / slowest): not cached
                       # (2 idle cores of a VM: 1.1x to 1.8x at 6 steps a round; a busy machine: 2x and more)
CACHE_ENV = 'CENTER_LOSS_CACHE'
CACHE_FILE = 'precision.json'
CANDIDATES = ('float32', 'bfloat16')

# how: 'measured', 'unsure' (measured, its rounds too far apart to cache) or 'cached'; when: the time it was
# measured; spread: the largest ratio of a candidate's fastest round to its slowest
Choice = collections.namedtuple('Choice', 'precision rates how key when spread', defaults=(None, None))


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
    from devices import compat
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
        atomic_write(path, json.dumps(entries, indent=1, sort_keys=True).encode())
        return True
    except OSError:
        return False


def _command(mode, precision, spec):
    channels, (height, width) = spec.get('channels', 1), spec.get('image_size', (28, 28))
    return [sys.executable, '-m', 'training.probe', mode, precision, spec['model'], spec['act'],
            str(spec['batch_size']), str(spec['feature_size']), str(spec['num_classes']),
            '%dx%dx%d' % (channels, height, width)]


def measure_in_turn(spec, rounds=ROUNDS):
    """{precision: [images/s of each round]}: each candidate in a child process with a clean
    environment, started once and warmed up, then timed in turn, round after round."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('DMLC_')}  # not a parameter-server worker
    children = {p: subprocess.Popen(_command('--serve', p, spec), env=env, cwd=ROOT, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
                for p in CANDIDATES}

    def ask(p, word):
        child = children[p]
        try:
            child.stdin.write(word + '\n')
            child.stdin.flush()
        except OSError:  # it died: its error is on its stderr
            pass
        line = child.stdout.readline()
        if not line:
            said = child.stderr.read().strip().splitlines() or ['?']
            raise RuntimeError('measuring %s failed: %s' % (p, said[-1]))
        return float(line)
    try:
        for p in CANDIDATES:
            ask(p, 'warm')
        rates = {p: [] for p in CANDIDATES}
        for r in range(rounds):
            for p in (CANDIDATES if r % 2 == 0 else CANDIDATES[::-1]):
                time.sleep(PAUSE)
                rates[p].append(ask(p, 'go'))
        return rates
    finally:
        for child in children.values():
            try:
                child.stdin.close()
            except OSError:
                pass
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            child.stdout.close()
            child.stderr.close()


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2.0


def spread_of(rounds):
    """The largest ratio of a candidate's fastest round to its slowest (1.0: the rounds agree)."""
    return max(max(r) / max(min(r), 1e-9) for r in rounds.values())


def split_choice(rounds):
    """True when the rounds taken in turn disagree on the choice: bfloat16 at RULE times float32 or more
    in one round and under it in another (the two of a round saw the same machine; rounds that disagree
    saw it change)."""
    ratios = [b / max(f, 1e-9) for b, f in zip(rounds['bfloat16'], rounds['float32'])]
    return min(ratios) < RULE <= max(ratios)


def choose(spec, measure=measure_in_turn, path=None):
    """The Choice for ``spec`` (model, act, batch_size, feature_size, num_classes) on this CPU: from the
    cache when this machine and setting were measured before, else measured, and cached when the rounds
    agree on the choice and each candidate's within SPREAD (else the machine was busier in some rounds
    than in others: the choice is used for this run only, and the next run measures again)."""
    path = cache_path() if path is None else path
    key = cache_key(spec)
    entry = read_cache(path).get(key)
    if isinstance(entry, dict) and isinstance(entry.get('rates'), dict) and set(CANDIDATES) <= set(entry['rates']):
        try:
            rates = {p: float(entry['rates'][p]) for p in CANDIDATES}
            rounds = entry.get('rounds')
            spread = spread_of(rounds) if isinstance(rounds, dict) and rounds else None
            return Choice(decide(rates), rates, 'cached', key, str(entry.get('measured', 'before')), spread)
        except (TypeError, ValueError, ZeroDivisionError):
            pass  # not what this version writes: measure again
    rounds = measure(spec)
    rates, spread = {p: median(rounds[p]) for p in CANDIDATES}, spread_of(rounds)
    when = time.strftime('%Y-%m-%d %H:%M:%S')
    if spread > SPREAD or split_choice(rounds):
        return Choice(decide(rates), rates, 'unsure', key, when, spread)
    entries = read_cache(path)  # re-read: another run may have written meanwhile
    entries[key] = dict(rates=rates, rounds=rounds, choice=decide(rates), measured=when)
    write_cache(path, entries)
    return Choice(decide(rates), rates, 'measured', key, when, spread)


def describe(choice):
    """The first line's words on ``choice``: when it was measured, both rates, and how sure it is."""
    rates = 'bfloat16 %.0f, float32 %.0f images/s' % (choice.rates['bfloat16'], choice.rates['float32'])
    sure = '' if choice.spread is None else ', rounds within %.0f%%' % (100 * (choice.spread - 1))
    if choice.how == 'unsure':
        why = 'a candidate\'s rounds differ by %.0f%% (over %.0f%%' % (100 * (choice.spread - 1), 100 * (SPREAD - 1)) \
            if choice.spread > SPREAD else 'its rounds disagree on the choice (%.2fx' % RULE
        return ('measured now: %s, but %s: the machine was busy): not cached, the next run measures again'
                % (rates, why))
    return '%s: %s%s (bfloat16 only when %.2fx float32)' % (
        'measured now' if choice.how == 'measured' else 'cached, measured %s' % choice.when, rates, sure, RULE)


def check_cached(choice, precision, seen, steps, path=None):
    """After a run's first epoch of ``steps`` steps, trained at ``seen`` images/s in ``precision``: when the
    epoch was long enough to say (CHECK_STEPS: the first steps build the graph) and the cached ``choice``
    is far from it (under 1/FAR or over FAR times its rate: it was measured while the machine was busier or
    idler than now, or the cache is stale), the line to print, and the cache entry is forgotten so that the
    next run measures again; else None."""
    if choice is None or choice.how != 'cached' or steps < CHECK_STEPS:
        return None
    cached = choice.rates[precision]
    if cached / FAR <= seen <= cached * FAR:
        return None
    path = cache_path() if path is None else path
    entries = read_cache(path)
    entries.pop(choice.key, None)
    write_cache(path, entries)
    return ('note: this epoch trained at %.0f images/s in %s, %s the %.0f that --precision auto measured here on '
            '%s (%s): the machine was %s then, or the cache is stale; the entry is forgotten, the next run '
            'measures again' % (seen, precision, 'under half' if seen < cached else 'over twice', cached,
                                choice.when, path, 'idler' if seen < cached else 'busier'))


def enable_bfloat16():
    """MXNet's mixed precision for the convolutions: process-wide, before any network exists."""
    from mxnet.contrib import amp
    amp.init(target_dtype='bfloat16', target_precision_ops=['Convolution'])
