"""Center loss against its successors on classes never seen: one protocol, every head, several seeds.

    python bench/heads.py --table --datasets mnist,fashion-mnist --seeds 42,7,3 --log heads.jsonl
    python bench/heads.py --table --datasets mnist --seeds 42 --runs arcface,cosface --log b.jsonl   # a part
    python bench/heads.py --from heads.jsonl b.jsonl   # the table of rows logged before (any CPU, any session)
    python bench/heads.py --from heads.jsonl --seeds 42,7   # only these seeds' rows (--datasets likewise)
    python bench/heads.py --table --datasets mnist --seeds 42 --feature_size 2   # the papers' 2-D pictures
    python bench/heads.py --cost                   # a step's time of each head against softmax
    python -m cli.glyphs G; python bench/heads.py --table --datasets glyphs --glyphs G --log g.jsonl
    python bench/heads.py --table --datasets glyphs-validation --glyphs G --seeds 42 --extra "--lr 0.05"

``--table`` trains, for each dataset and seed, with classes 5-9 held out and 32-D features, at the default
schedule (no flag but these, ``--seed``, the head's and those chosen for the dataset on its validation,
``head_data.CHOSEN``), in float32 (``--precision``: main.py's default picks bfloat16 where it trains faster,
which moves the figures): softmax; softmax + center loss; the second stage, after a first stage shorter by
the second's 2 epochs (4 + 2: every row trains 6 epochs, a second stage's counted); NormFace, SphereFace,
CosFace, ArcFace; ArcFace + center loss. Then ``--verify`` on each, and prints one Markdown table: for each
run, at its last checkpoint (``--checkpoint last``: the epoch the test set would pick is a choice made on
test images, and on 5,000 of them a tie of a few images), the test accuracy on the trained classes (softmax:
the head's own argmax), AUC and TAR at FAR 1e-3 by cosine on pairs of the held-out classes, precision at 1,
R-precision and MAP@R ranked by cosine, each as the mean and the spread (half the range) over the seeds;
with several seeds, each run's paired differences against softmax; then, for the runs whose features are not
normalised (softmax, center loss, SphereFace), the retrieval figures ranked by Euclidean distance
(pytorch-metric-learning's default) beside the cosine ones. Runs already in ``--work`` are reused, and one
stopped within its training is resumed (``main.py --resume``; Ctrl-C or SIGTERM stops the run being trained
too, which keeps its last epoch), so an interrupted table continues where it stopped. ``--runs`` picks runs
by prefix (softmax, center-loss, center-loss-short-second, normface, sphereface, cosface, arcface,
arcface-center), so that two processes can share a table; each logged row carries its CPU and commit, and
``--from`` joins logs. Each dataset and seed ends with ``main.py --compare --checkpoint last`` on every run
there: ``heads-<dataset>.png`` draws their features after the last epoch side by side (trained classes
above, held-out below), beside each run's GIFs.
``--feature_size 2`` trains the same protocol with 2-D features, as the papers draw theirs (its own
folders and its own table).

``--datasets glyphs`` (with ``--glyphs G``, a set ``python -m cli.glyphs G`` built; not a default) trains on
the characters of G/train and measures the third never seen (in G/test alone): the many-class regime center
loss was made for. ``glyphs-validation`` chooses a schedule and lambda without touching those: it trains
on G/train less a fifth of its characters (drawn with seed 0, the same for every run and seed), holds out a
quarter of each character's images as its test slice, and measures the held-out fifth's (``--holdout``,
``--test_split 0.25``), a class-disjoint validation as metric learning's benchmarks do; each candidate is an
``--extra``, filed and shown apart.

A run that fails (a loss that becomes NaN, say) is logged as failed, with main.py's last line, and listed
under the table. ``--extra "--lr 0.01"`` adds flags to the first stage of the runs picked: the fix tried
for a head that does not train at the defaults, filed apart (prefix ``sphereface+lr-0.01``) and shown as a
row of its own (``SphereFace (--lr 0.01)``), so the protocol's rows stay the defaults'.

A log holds one JSON line a run: its dataset, seed, feature size (none logged: 32), run, CPU and commit (and
the training's, where it differs), the glyph set's seed and fingerprint, the flags chosen; the epoch read;
the trained classes' accuracy (softmax and nearest center); AUC and TAR by cosine on the held-out classes'
pairs; precision at 1, R-precision and MAP@R by cosine and, for unnormalised features, by Euclidean
distance; the queries; or, for a run that failed, main.py's last line.

``--cost`` times hybridized training steps (forward, backward, update) of LeNet++ with each class layer
on one batch of 64 MNIST-sized images, the heads in turn, several rounds, and prints each head's median
step time against softmax's.
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# (name, prefix, flags of its first stage); a second stage (flags None) starts from its SECOND_FROM
RUNS = [('softmax', 'softmax', []),
        ('softmax + center loss', 'center-loss', ['--center_loss']),
        ('center loss, second stage, same epochs', 'center-loss-short-second', None),
        ('NormFace', 'normface', ['--head', 'normface']),
        ('SphereFace', 'sphereface', ['--head', 'sphereface']),
        ('CosFace', 'cosface', ['--head', 'cosface']),
        ('ArcFace', 'arcface', ['--head', 'arcface']),
        ('ArcFace + center loss', 'arcface-center', ['--head', 'arcface', '--center_loss'])]
PREFIXES = tuple(prefix for _, prefix, _ in RUNS)
# a second stage's first stage, not a row of its own: shorter than every row's by the second stage's epochs,
# so that the two stages together train as many epochs as every other row (a second stage counts)
SECOND_FROM = {'center-loss-short-second': ('center-loss-short', ['--center_loss'])}
# rows of logs written before: the second stage after the whole first stage (6 + 2 epochs), shown apart
LOGGED_BEFORE = {'center loss, second stage': 'center loss, second stage, same epochs'}
NAMES = [n for name, _, _ in RUNS for n in [name] + [old for old, new in LOGGED_BEFORE.items() if new == name]]
# the runs whose features the head does not normalise (models.normalises): softmax's, center loss's, SphereFace's
UNNORMALISED = ('softmax', 'softmax + center loss', 'center loss, second stage, same epochs',
                'center loss, second stage', 'SphereFace')
# which images each dataset trains on and measures (bench/head_data.py; bench/ is on the path: this script's)
from head_data import DATASETS, chosen_flags, data_flags, glyph_set, glyphs_of  # noqa: E402


def main_py(args, log):
    """main.py run with ``args``, each line of its output written to ``log`` as it comes (an hour-long run
    can be followed with tail -f, and a stopped one keeps what it printed): None, or its last line if it failed."""
    cmd = [sys.executable, os.path.join(ROOT, 'main.py')] + args
    print('$ python main.py ' + ' '.join(args), flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                            env=dict(os.environ, PYTHONUNBUFFERED='1'))
    lines = []
    with open(log, 'a') as f:
        def keep(line):  # whole lines, so that two tables sharing a folder interleave only between lines
            f.write(line)
            f.flush()
            lines[:] = lines[-4:] + [line]
        try:
            for line in proc.stdout:
                keep(line)
        except BaseException:  # Ctrl-C, or SIGTERM (see main): the run stops with the table, keeping its last epoch
            proc.terminate()  # main.py stops within a batch; a later --table resumes it
            for line in proc.stdout:
                keep(line)
            raise
        finally:
            proc.wait()
    out = ''.join(lines)
    if proc.returncode != 0:
        last = (out.strip().splitlines() or ['exit %d' % proc.returncode])[-1]
        print('  failed (exit %d): %s' % (proc.returncode, last), flush=True)
        return last
    return None


def table(args, datasets, seeds):
    """Train, measure and log every run picked, for each dataset and seed; then print the table."""
    import runlog
    rows = []
    where_from = runlog.provenance()
    tag = re.sub(r'[^A-Za-z0-9.]+', '-', args.extra).strip('-')  # '--lr 0.01' -> 'lr-0.01'
    for dataset in datasets:
        for seed in seeds:
            folder = os.path.join(args.work, '%s-seed%d%s' % (dataset, seed, '' if args.feature_size == 32 else
                                                              '-%dd' % args.feature_size))
            where = ['--ckpt_dir', os.path.join(folder, 'ckpt'), '--out_dir', os.path.join(folder, 'out'),
                     '--precision', args.precision] + (['--no_plotting'] if args.no_plotting else [])
            os.makedirs(folder, exist_ok=True)
            for name, prefix, flags in RUNS:
                if prefix in (args.runs or PREFIXES):
                    row = dict(table_row(args, dataset, seed, folder, where, (name, prefix, flags), tag),
                               **glyphs_of(dataset, args.glyphs))
                    rows.append(dict(cpu=where_from['cpu'], commit=where_from['commit'], dataset=dataset, seed=seed,
                                     feature_size=args.feature_size, **row))
                    runlog.append(args.log, rows[-1])
            trained = trained_runs(os.path.join(folder, 'ckpt'))
            if len(trained) > 1:  # every run there, those of another process sharing the table included
                main_py(['--compare', '--checkpoint', 'last', '--prefix', ','.join(trained)] + where, folder + '.log')
    print_table(rows)


def stage_epochs(extra):
    """The epochs of a first stage given ``extra`` (main.py's default without --epochs), and of a second."""
    from cli.flags import STAGE_DEFAULTS, build_parser
    given = build_parser('').parse_args(['--train'] + shlex.split(extra)).epochs
    return given or STAGE_DEFAULTS['first']['epochs'], STAGE_DEFAULTS['second']['epochs']


def table_row(args, dataset, seed, folder, where, run, tag):
    """One run of the table trained (or resumed, or taken as it is) and measured: its row's figures, or
    {'run', 'failed': main.py's last line}."""
    from runs.files import RunFiles
    name, base, flags = run
    log = folder + '.log'
    # a second stage (flags None) is filed as <its first stage>-second, as main.py files it
    first = (SECOND_FROM[base][0] if flags is None else base) + ('+' + tag if tag else '')
    prefix, name = first + ('-second' if flags is None else ''), name + (' (%s)' % args.extra.strip() if tag else '')
    files = RunFiles(os.path.join(folder, 'ckpt'), os.path.join(folder, 'out'), prefix)
    measure = ['--verify', '--checkpoint', 'last', '--prefix', prefix] + where

    # the flags chosen for the dataset, of the first stage (a second stage's too: its SECOND_FROM)
    chosen = chosen_flags(dataset, SECOND_FROM[base][1] if flags is None else flags)

    def train(prefix, flags, last=()):  # (``last`` after --extra: argparse takes a flag's last value)
        return ['--train', '--prefix', prefix, '--seed', str(seed)] + data_flags(dataset, args.glyphs, args.work) + \
            ['--feature_size', str(args.feature_size)] + flags + chosen + shlex.split(args.extra) + list(last)
    failed = None
    if not os.path.isfile(files.verify_json):
        if os.path.isfile(files.last):
            # trained, or stopped within: continue it as it was recorded (a stage complete is left
            # as it is), so a table stopped within a run or before --verify loses no epoch
            stage = ['--second_train' if flags is None else '--train', '--resume', '--prefix', first]
        elif flags is None:
            # its first stage trained, resumed (a table stopped within it), or left as it is if complete
            epochs, second = args.stage_epochs
            before = ['--train', '--resume', '--prefix', first] if os.path.isfile(files.first().last) else \
                train(first, SECOND_FROM[base][1], ['--epochs', str(epochs - second)])
            failed = main_py(before + where, log)
            stage = ['--second_train', '--checkpoint', 'last', '--prefix', first]
        else:
            stage = train(prefix, flags)
        failed = failed or main_py(stage + where, log) or main_py(measure, log)
    elif not last_read(files.verify_json):  # measured at the best before: again
        failed = main_py(measure, log)
    chosen = {'chosen': ' '.join(chosen)} if chosen else {}
    if failed:  # in the log too, so that the table says which runs did not train
        return dict(run=name, failed=failed, **chosen)
    result = json.load(open(files.verify_json))
    metrics = json.load(open(files.metrics))
    # the epoch --verify read (the last), so a row is one epoch
    epoch = [e for e in metrics['epochs'] if e['epoch'] == result['epoch']] or metrics['epochs'][-1:]
    # the precision the run trained in (a run reused from --work may predate the flag given)
    return dict(run=name, **chosen, precision=metrics.get('precision', 'float32'), epoch=result['epoch'],
                accuracy=epoch[0]['test_acc_softmax'], center_accuracy=epoch[0]['test_acc_center'],
                auc=result['cosine']['auc'], tar=result['cosine']['tar_at_far_0.001'], **result['cosine']['retrieval'],
                **{'euclidean_' + k: v for k, v in result['euclidean'].get('retrieval', {}).items() if k != 'queries'})


def print_table(rows):
    from head_tables import print_table as table  # (bench/ is on the path: this script's folder)
    table(rows, NAMES, UNNORMALISED)


def trained_runs(ckpt):
    """The runs with a last checkpoint in ``ckpt``, in the table's order, each followed by its --extra
    variants ('sphereface+lr-0.01' after 'sphereface'; 'center-loss-short+lr-0.01-second' after
    'center-loss-short-second')."""
    def plain(name):
        head, _, rest = name.partition('+')
        return head + ('-second' if rest.endswith('-second') else '')
    have = [f[:-len('-last.params')] for f in os.listdir(ckpt) if f.endswith('-last.params')] \
        if os.path.isdir(ckpt) else []
    return sorted((n for n in have if plain(n) in PREFIXES), key=lambda n: (PREFIXES.index(plain(n)), '+' in n, n))


def last_read(verify):
    """Whether ``verify`` (a -verify.json) measured the run's last checkpoint."""
    return json.load(open(verify))['checkpoint'].endswith('-last.params')


def logged(paths):
    """The rows of --log files; a run logged twice (dataset, features, seed, run) counts once, the last line."""
    import runlog
    rows = {}
    for row in runlog.read(paths):
        row.setdefault('feature_size', 32)  # rows logged before the flag: the protocol's 32-D
        row.setdefault('precision', 'float32')  # and before the field: every one from a CPU without bfloat16
        rows[(row['dataset'], row['feature_size'], row['seed'], row['run'])] = row
    return list(rows.values())


def cost(rounds=5, steps=20):
    from devices import compat  # (before mxnet)
    import mxnet as mx
    from mxnet import gluon, nd
    import models
    from training import step
    from faults.signals import raise_if_stopped
    raise_if_stopped()  # a Ctrl-C that came while mxnet loaded
    rng = np.random.RandomState(0)
    x, y = nd.array(rng.randn(64, 1, 28, 28)), nd.array(rng.randint(0, 10, 64))
    runners = {}
    for head in models.HEADS:
        mx.random.seed(0)
        scale, margin = models.head_values(head, None, None)
        net = models.build_net(models.Arch('lenet++', 'leaky', 2, 10, head=head, scale=scale, margin=margin),
                               [mx.cpu()])
        objective = step.Objective(net)
        objective.hybridize(static_alloc=True, static_shape=True)
        trainer = gluon.Trainer(net.collect_params(), 'sgd', {'learning_rate': 0.01, 'momentum': 0.9})
        runners[head] = (objective, trainer)
    times = {head: [] for head in runners}
    for r in range(rounds + 1):
        for head, (objective, trainer) in runners.items():
            tic = time.time()
            for _ in range(steps):
                step.train_step(objective, trainer, None, x, y, [mx.cpu()], 10)
            nd.waitall()
            raise_if_stopped()
            if r:  # round 0 warms every graph up
                times[head].append((time.time() - tic) / steps)
    print('a training step of LeNet++ (2-D features, batch 64) on %s, %d cores: median of %d rounds of %d steps'
          % (compat.cpu_name(), len(os.sched_getaffinity(0)), rounds, steps))
    base = float(np.median(times['softmax']))
    print('| class layer | ms a step | against softmax |\n|---|---|---|')
    for head, t in times.items():
        print('| %s | %.2f | %+.1f%% |' % (head, 1000 * float(np.median(t)), 100 * (float(np.median(t)) / base - 1)))


def parser():
    from cli.flags import PRECISIONS, Parser, listed, number, shell_words
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--table', action='store_true')
    p.add_argument('--cost', action='store_true')
    # no default here: with --from, only the datasets and seeds given are shown (a table whose third seed is
    # half run can be shown over the seeds it has in full); --table's defaults are TABLE_DATASETS and _SEEDS
    p.add_argument('--datasets', type=listed(DATASETS), default=None,
                   help='(--table: mnist,fashion-mnist; --from: every dataset logged)')
    p.add_argument('--glyphs', default=None, metavar='G', help='the glyph set (python -m cli.glyphs G) of --datasets '
                                                               'glyphs and glyphs-validation')
    p.add_argument('--seeds', type=listed(number(int, at_least=0)), default=None,
                   help='(--table: 42,7,3; --from: every seed logged)')
    p.add_argument('--work', default=os.path.join(ROOT, 'output', 'heads'), help='checkpoints and figures')
    p.add_argument('--no_plotting', action='store_true', help='no GIFs (they change no figure of the table)')
    p.add_argument('--feature_size', type=number(int, above=0), default=32,
                   help='the features\' size (the protocol: 32)')
    # pinned, not main.py's auto: auto picks bfloat16 on some CPUs, and the figures of a seed trained there
    # would differ from those of the same seed elsewhere by more than the CPU's rounding
    p.add_argument('--precision', choices=PRECISIONS, default='float32',
                   help='of every run (the protocol: float32, so that rows from any CPU join)')
    p.add_argument('--runs', type=listed(PREFIXES), default=None, help='only these runs (prefixes, comma-separated)')
    p.add_argument('--extra', type=shell_words, default='',
                   help='flags added to the first stage of each run picked, filed and shown apart (a fix tried)')
    p.add_argument('--log', default=None, help='append each row as a JSON line to this file')
    p.add_argument('--from', dest='logs', nargs='+', metavar='LOG', help='print the table of these logs')
    return p


TABLE_DATASETS, TABLE_SEEDS = ['mnist', 'fashion-mnist'], [42, 7, 3]


def from_logs(args, p):
    """The table of the rows logged, of the datasets and seeds asked for."""
    try:
        rows = [r for r in logged(args.logs) if (args.seeds is None or r['seed'] in args.seeds)
                and (args.datasets is None or r['dataset'] in args.datasets)]
    except (KeyError, TypeError) as e:
        p.error('--from: a line lacks %s: not a log of this script' % e)
    if not rows:
        wanted = [args.datasets and 'dataset ' + ','.join(args.datasets),
                  args.seeds and 'seed ' + ','.join(map(str, args.seeds))]
        p.error('--from: no row of %s in these logs' % (' and '.join(filter(None, wanted)) or 'any run'))
    print_table(rows)


def main():
    import runlog
    from cli.flags import build_parser
    from faults.errors import UserError
    from faults.signals import stopped, stops_handled
    from runs.lock import writable_folder
    p = parser()
    args = p.parse_args()
    if not (args.logs or args.cost or args.table):
        p.error('--table and/or --cost, or --from LOG...')
    try:
        if args.logs:
            return from_logs(args, p)
        if args.extra:  # main.py's own parser: a flag it does not take, or a bad value, stops here, not in each run
            trainer = build_parser('')
            trainer.prog = '%s: --extra' % p.prog
            trainer.parse_args(['--train'] + shlex.split(args.extra))
        args.stage_epochs = epochs, second = stage_epochs(args.extra)
        if args.table and set(SECOND_FROM) & set(args.runs or PREFIXES) and epochs <= second:
            p.error('--extra: --epochs %d leaves no epoch for the first stage of the second stage\'s run (it trains '
                    '%d less, the second stage\'s): more epochs, or --runs without it' % (epochs, second))
        runlog.ready(args.log)
        if args.table and {'glyphs', 'glyphs-validation'} & set(args.datasets or ()) and glyph_set(args.glyphs):
            p.error('--datasets glyphs: ' + glyph_set(args.glyphs))
        if args.table:
            writable_folder(args.work, '--work')
    except (OSError, ValueError, UserError) as e:
        p.error(str(e).splitlines()[0])
    # main.py runs in the repository's root: the folders given from anywhere else, made absolute
    args.work, args.glyphs = os.path.abspath(args.work), args.glyphs and os.path.abspath(args.glyphs)
    # Ctrl-C and SIGTERM (a kill, a job's end) as main.py takes them, so that the run being trained stops too
    # (main_py), and a second signal does not break into that
    with stops_handled():
        try:
            if args.cost:
                cost()
            if args.table:
                table(args, args.datasets or TABLE_DATASETS, args.seeds or TABLE_SEEDS)
        except KeyboardInterrupt as e:  # a table's run stopped too, keeping its last epoch
            word, status = stopped(e)
            print('%s: run the same command again to continue' % word, file=sys.stderr)
            sys.exit(status)


if __name__ == '__main__':
    main()
