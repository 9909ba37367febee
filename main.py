"""Softmax and center loss (Wen et al., ECCV 2016) on MNIST with MXNet Gluon.

    python main.py --train --center_loss   # stage 1: softmax + lmbd * center loss
    python main.py --second_train          # stage 2: center loss alone, centers frozen
    python main.py --test                  # softmax, nearest-center and k-NN accuracy
    python main.py --verify                # open-set: pairs of unseen classes (with --holdout)
"""
import argparse
import collections
import contextlib
import fcntl
import math
import os
import signal
import socket
import sys
import tempfile
import time

try:
    import compat  # noqa: F401  (before mxnet: numpy alias, thread count, CUDA libraries)
except ImportError as e:  # a set-up problem, not a bug: say what to install
    print('error: %s' % e, file=sys.stderr)
    sys.exit(2)

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd
from tqdm import tqdm

import checkpoints
import evaluation
import pictures
import utils
import verification
from center_loss import CenterLoss, UPDATES
from checkpoints import CheckpointError, CheckpointNotFound
from errors import EXIT_INT, EXIT_IO, EXIT_TERM, EXIT_USAGE, SaveError, Terminated, UserError
from models import ACTIVATIONS, MODELS, get_model
from runfiles import RunFiles, comparison_path, verify_path, write_json
from runtime import GradientReducer, get_contexts, gpu_cards, param_checksum, setup_runtime, setup_workers
from utils import DataError, DataNotFound

EVAL_METHODS = ('softmax', 'center', 'knn')
KVSTORES = ('device', 'local', 'dist_sync', 'dist_device_sync')
PRECISIONS = ('auto', 'float32', 'bfloat16')
# The rows of --compare: the three runs of the original port's figure.
COMPARED = [('softmax', 'softmax'), ('center-loss', 'softmax + center loss'),
            ('center-loss-second', 'center loss only (second stage)')]
# Flags that fix the network's shape: a later stage takes them from the checkpoint.
ARCH_DEFAULTS = collections.OrderedDict([('model', 'lenet++'), ('act', 'leaky'), ('feature_size', 2),
                                         ('num_classes', 10), ('holdout', ())])


# --------------------------------------------------------------------------- command line

class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2, no usage dump
        self.exit(2, '%s: error: %s (see --help)\n' % (self.prog, message))


def str2bool(value):
    v = str(value).strip().lower()
    if v in ('1', 'true', 'yes', 'y', 'on'):
        return True
    if v in ('0', 'false', 'no', 'n', 'off'):
        return False
    raise argparse.ArgumentTypeError('expected a boolean (True/False), got %r' % value)


def number(kind, above=None, at_least=None):
    """An argparse type for every numeric flag: one message style, finite values only."""
    def parse(value):
        try:
            v = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError('expected a %s, got %r' % (
                'whole number' if kind is int else 'float', value))
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError('expected a finite number, got %r' % value)
        if above is not None and not v > above:
            raise argparse.ArgumentTypeError('must be > %g, got %r' % (above, value))
        if at_least is not None and not v >= at_least:
            raise argparse.ArgumentTypeError('must be %g or more, got %r' % (at_least, value))
        return v
    return parse


def class_ids(value):
    """--holdout: class ids separated by commas, e.g. 5,6,7,8,9 -> (5, 6, 7, 8, 9)."""
    parts = [v.strip() for v in value.split(',')]
    try:
        ids = [int(v) for v in parts]
    except ValueError:
        raise argparse.ArgumentTypeError('expected class ids separated by commas, e.g. 5,6,7,8,9, got %r' % value)
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise argparse.ArgumentTypeError('class %d is named twice in %r' % (twice[0], value))
    return tuple(sorted(ids))


POSITIVE_INT, POSITIVE = number(int, above=0), number(float, above=0)
NON_NEGATIVE_INT, NON_NEGATIVE = number(int, at_least=0), number(float, at_least=0)


def parse_args(argv=None):
    p = Parser(prog='main.py', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_argument_group('what to do (any combination, run in this order)')
    mode.add_argument('--train', action='store_true', help='first stage: softmax (+ center loss with --center_loss)')
    mode.add_argument('--center_loss', action='store_true', help='add lmbd * center loss to the first stage')
    mode.add_argument('--second_train', action='store_true',
                      help='second stage: center loss alone, centers frozen, from the first stage\'s best checkpoint')
    mode.add_argument('--test', action='store_true', help='evaluate the best checkpoint of the last stage named')
    mode.add_argument('--verify', action='store_true',
                      help='open-set verification of the best checkpoint: all pairs of test images of the held-out '
                           'classes (or of all classes), LFW-style 10 folds, known vs held-out AUROC; '
                           'output/<prefix>-verify.json and -roc.png (several: --prefix A,B,C)')
    mode.add_argument('--compare', action='store_true',
                      help='draw output/comparison-<dataset>.png: train and test feature maps of the softmax, '
                           'center-loss and center-loss-second checkpoints (or those of --prefix A,B,C), one row '
                           'each; held-out classes drawn as crosses')
    mode.add_argument('--resume', action='store_true',
                      help='continue the stage(s) from their last checkpoint (after Ctrl-C or a crash)')

    files = p.add_argument_group('files')
    files.add_argument('--prefix', default=None,
                       help='name of the first stage (default: center-loss with --center_loss or with '
                            '--second_train/--test alone, else softmax); the second stage is <prefix>-second. '
                            '--verify and --compare alone take several: A,B,C')
    files.add_argument('--ckpt_dir', default='ckpt')
    files.add_argument('--out_dir', default='output')
    files.add_argument('--dataset', default='mnist', choices=sorted(utils.SHA256))
    files.add_argument('--data_dir', default=None, help='directory with the four IDX files (.gz or raw)')
    files.add_argument('--train_samples', type=POSITIVE_INT, default=None, help='use the first N training images')
    files.add_argument('--test_samples', type=POSITIVE_INT, default=None, help='use the first N test images')

    opt = p.add_argument_group('optimisation')
    opt.add_argument('--epochs', type=POSITIVE_INT, default=20)
    opt.add_argument('--batch_size', type=POSITIVE_INT, default=128)
    opt.add_argument('--optimizer', choices=('sgd', 'adam'), default='sgd', help='sgd uses --momentum')
    opt.add_argument('--lr', type=POSITIVE, default=0.01)
    opt.add_argument('--momentum', type=NON_NEGATIVE, default=0.9)
    opt.add_argument('--lr_step', type=POSITIVE_INT, default=8, help='multiply lr by lr_factor every N epochs')
    opt.add_argument('--lr_factor', type=POSITIVE, default=0.1)
    opt.add_argument('--wd', type=NON_NEGATIVE, default=5e-4, help='weight decay')
    opt.add_argument('--seed', type=NON_NEGATIVE_INT, default=42)
    opt.add_argument('--shift', type=NON_NEGATIVE_INT, default=2,
                     help='augment: translate each training image by up to N pixels each way (0: off)')

    cl = p.add_argument_group('center loss')
    cl.add_argument('--lmbd', type=NON_NEGATIVE, default=1.0, help='lambda: weight of the center loss')
    cl.add_argument('--alpha', type=POSITIVE, default=0.5, help='alpha: learning rate of the centers')
    cl.add_argument('--center_update', choices=UPDATES, default='gradient',
                    help='gradient: balanced loss, centers by SGD at alpha; paper: Eq. 4 of the paper')

    net = p.add_argument_group('network and classes (later stages take these from the checkpoint)')
    net.add_argument('--model', choices=sorted(MODELS), default=None, help='default lenet++')
    net.add_argument('--act', choices=ACTIVATIONS, default=None, help='default leaky')
    net.add_argument('--feature_size', type=POSITIVE_INT, default=None, help='default 2')
    net.add_argument('--num_classes', type=POSITIVE_INT, default=None,
                     help='default 10, or the number of classes trained on with --holdout')
    net.add_argument('--holdout', type=class_ids, default=None,
                     help='class ids kept out of training, e.g. 5,6,7,8,9: both stages train on the other classes '
                          '(at least two), whose test images give the accuracy; --verify measures on the held-out '
                          'ones')

    ev = p.add_argument_group('evaluation and output')
    ev.add_argument('--eval_method', choices=EVAL_METHODS, default=None,
                    help='accuracy that picks the best checkpoint (default: softmax for the first stage, '
                         'center for the second) and that --test prints (default: all three)')
    ev.add_argument('--knn_k', type=POSITIVE_INT, default=10, help='neighbours for --eval_method knn')
    ev.add_argument('--plotting', dest='plotting', action='store_true', default=True,
                    help='feature-map PNG per epoch and GIFs (the default)')
    ev.add_argument('--no_plotting', dest='plotting', action='store_false', help='no pictures')

    dev = p.add_argument_group('device')
    dev.add_argument('--use_gpu', type=str2bool, default=True, help='False forces the CPU')
    dev.add_argument('--gpus', default=None,
                     help='GPU indices, e.g. 0 or 0,1 for data-parallel training (default: gpu 0 if MXNet sees one)')
    dev.add_argument('--kvstore', default='device', choices=KVSTORES,
                     help='how gradients are summed over devices (local, device) or over worker processes '
                          '(dist_sync, dist_device_sync: start those with launch.py)')
    dev.add_argument('--precision', default='auto', choices=PRECISIONS,
                     help='bfloat16: convolutions in bfloat16 (oneDNN, fp32 weights, updates and features); '
                          'auto (default): whichever trains faster here, measured once and cached (precision.py); '
                          'a continued stage keeps its checkpoint\'s')

    args = p.parse_args(argv)
    if not (args.train or args.second_train or args.test or args.verify or args.compare):
        p.error('nothing to do: pass --train [--center_loss], --second_train, --test, --verify and/or --compare')
    args.prefixes = None if args.prefix is None else [v.strip() for v in args.prefix.split(',')]
    if args.prefixes and len(args.prefixes) > 1:
        if args.train or args.second_train or args.test:
            p.error('--prefix %s: several prefixes only with --verify and/or --compare alone' % args.prefix)
        if len(set(args.prefixes)) != len(args.prefixes):
            p.error('--prefix %s names a run twice' % args.prefix)
    if args.prefix is None:
        args.prefix = 'softmax' if args.train and not args.center_loss else 'center-loss'
    else:
        args.prefix = args.prefixes[0]
    if args.holdout is not None:
        total = len(utils.CLASS_NAMES[args.dataset])
        unknown = [c for c in args.holdout if not 0 <= c < total]
        if unknown:
            p.error('--holdout: %s has no class %d (its classes are 0 to %d)' % (args.dataset, unknown[0], total - 1))
        if total - len(args.holdout) < 2:
            p.error('--holdout %s leaves %d class%s to train on: at least two are needed'
                    % (','.join(map(str, args.holdout)), total - len(args.holdout),
                       '' if total - len(args.holdout) == 1 else 'es'))
    if args.kvstore.startswith('dist') and args.train and args.second_train:
        p.error('with --kvstore %s run one stage per launch' % args.kvstore)
    for prefix in args.prefixes or [args.prefix]:
        if not prefix or os.sep in prefix or '/' in prefix or prefix.startswith('.'):
            p.error('--prefix %r must be a plain name: no path separator, not starting with "."' % prefix)
    return args




# --------------------------------------------------------------------------- what the program decides

class Arch(collections.namedtuple('Arch', list(ARCH_DEFAULTS), defaults=[()])):  # holdout: none
    """The network's shape: from the flags for a new first stage, else from the checkpoint."""

    @classmethod
    def of(cls, ckpt):
        meta = dict(ckpt.meta)
        meta.setdefault('holdout', [])  # checkpoints from before --holdout trained on every class
        missing = [k for k in cls._fields if k not in meta]
        if missing:
            raise CheckpointError('%s lacks its description; retrain to make it again' % ckpt.path)
        return cls(**dict({k: meta[k] for k in cls._fields}, holdout=tuple(meta['holdout'])))


def flag_value(value):
    if isinstance(value, tuple):  # --holdout
        return ','.join(map(str, value)) or 'none'
    return value


def resolve_arch(args, ckpt=None):
    """The Arch of a stage: ``ckpt``'s when there is one (a flag given must agree with it), else the flags'.

    With --holdout the class layer has one output per trained class.
    """
    if ckpt is None:
        arch = Arch(**{k: d if getattr(args, k) is None else getattr(args, k) for k, d in ARCH_DEFAULTS.items()})
        if arch.holdout:
            trained = len(utils.CLASS_NAMES[args.dataset]) - len(arch.holdout)
            if args.num_classes not in (None, trained):
                raise UserError('--num_classes %d: with --holdout %s the class layer has one output per trained '
                                'class, %d; drop --num_classes' % (args.num_classes, flag_value(arch.holdout),
                                                                   trained))
            arch = arch._replace(num_classes=trained)
        return arch
    arch = Arch.of(ckpt)
    for key, value in arch._asdict().items():
        given = getattr(args, key)
        if given is not None and given != value:
            raise UserError('the checkpoint was made with --%s %s, not %s: drop the flag or retrain'
                            % (key, flag_value(value), flag_value(given)))
    return arch


# --------------------------------------------------------------------------- files

def writable_folder(path, flag):
    """Make ``path`` a folder this run can write in, or say why not, before any training starts."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError('%s %s: not a folder (a file is in the way)' % (flag, path))
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix='.write-test-')
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise UserError('%s %s: cannot write there (%s)' % (flag, path, e.strerror or e))


_LOCKS = []  # open lock files: each holds its flock until this process ends


def lock_run(files):
    """Take the lock of this run (its checkpoint folder and first-stage prefix) for as long as the
    process lives, or stop if another process holds it. An OS lock (flock) dies with its holder,
    whatever kills it, on any machine that shares the folder."""
    path = os.path.join(files.ckpt_dir, '.%s.lock' % files.first().prefix)
    f = open(path, 'a+')
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or 'another process'
        f.close()
        raise UserError('%s is in use by %s: two runs of one prefix would overwrite each other\'s checkpoints '
                        'and pictures; wait for it, or use another --prefix or --ckpt_dir'
                        % (path, holder))
    f.seek(0)
    f.truncate()
    f.write('pid %d on %s, started %s: python main.py %s' % (os.getpid(), socket.gethostname(),
                                                              time.strftime('%Y-%m-%d %H:%M:%S'),
                                                              ' '.join(sys.argv[1:])))
    f.flush()
    _LOCKS.append(f)
    return path


TRAINING_STOPPED = 'the stage stopped; the checkpoints and pictures of the epochs before are kept'
NO_CHECKPOINT_CHANGED = 'no checkpoint changed'  # --verify, --compare: they only read checkpoints


@contextlib.contextmanager
def saved(what, consequence=TRAINING_STOPPED):
    """Turn a failed write into SaveError naming the file; what was saved before stays."""
    try:
        yield
    except OSError as error:
        raise SaveError('could not write %s (%s): %s' % (error.filename or what, error.strerror or error,
                                                         consequence))


# --------------------------------------------------------------------------- checkpoints and data

NOTHING_TO_RESUME = ': nothing to resume; drop --resume to start the stage'


def make_hint(files):
    """': run `python main.py ...` first', the command that makes the checkpoints of ``files``."""
    if files.is_second:
        base = files.first().prefix
        cmd = '--second_train' + ('' if base == 'center-loss' else ' --prefix ' + base)
    elif files.prefix == 'softmax':
        cmd = '--train'
    else:
        cmd = '--train --center_loss' + ('' if files.prefix == 'center-loss' else ' --prefix ' + files.prefix)
    return ': run `python main.py %s` first' % cmd


def open_checkpoint(path, hint=''):
    """Read a checkpoint; a missing one is a UserError that says what makes it."""
    try:
        return checkpoints.load_checkpoint(path)
    except CheckpointNotFound as e:
        raise UserError('%s%s' % (e, hint))


def starting_checkpoint(args, files):
    """The checkpoint this command starts from, or None for a new first stage.

    It is read once: its description gives the network's shape before the data
    is loaded, and the stage, --test or --compare that starts from it takes it.
    """
    if args.train:
        return open_checkpoint(files.last, NOTHING_TO_RESUME) if args.resume else None
    if args.second_train:
        if args.resume:
            return open_checkpoint(files.second().last, NOTHING_TO_RESUME)
        return open_checkpoint(files.best, make_hint(files))
    if args.test or args.verify:
        return open_checkpoint(files.best, make_hint(files))
    found = [f.best for f, _ in compared_runs(args) if os.path.isfile(f.best)]
    return open_checkpoint(found[0]) if found else None


def find_data_dir(args):
    try:
        return utils.find_data(args.dataset, args.data_dir)
    except DataNotFound as e:
        raise UserError('%s. Pass --data_dir DIR holding %s' % (
            e, ', '.join(s + '.gz' for split in ('train', 'test') for s in utils.FILES[split])))
    except DataError as e:
        raise UserError('--data_dir: %s' % e if args.data_dir else e)


def read_data(args):
    """(folder, (train images, labels), (test images, labels)) as numpy, sliced by --train_samples/--test_samples."""
    directory = find_data_dir(args)
    train_img, train_lbl = utils.load_split(directory, 'train')
    test_img, test_lbl = utils.load_split(directory, 'test')
    return (directory, (train_img[:args.train_samples], train_lbl[:args.train_samples]),
            (test_img[:args.test_samples], test_lbl[:args.test_samples]))


def load_data(args, arch, rt, raw=None, normalisation=None):
    """Train and test arrays of the classes ``arch`` trains on, on the first device (every worker
    holds the whole training set); ``raw``: read_data's answer, when it was read already;
    ``normalisation``: (mean, std) a checkpoint records, else those of the training images.

    With held-out classes (arch.holdout) their training images are dropped here,
    before any batch is drawn; the other labels become 0..K-1 (``classes`` maps
    them back); their test images are apart, as ``held_x``/``held_y``.
    """
    directory, (train_img, train_lbl), (test_img, test_lbl) = raw or read_data(args)
    top, total = int(max(train_lbl.max(), test_lbl.max())), len(utils.CLASS_NAMES[args.dataset])
    if not arch.holdout and top >= arch.num_classes:
        raise UserError('labels go up to %d but --num_classes is %d' % (top, arch.num_classes))
    if arch.holdout and top >= total:
        raise UserError('labels go up to %d but %s has %d classes' % (top, args.dataset, total))
    classes, mapping = utils.split_classes(total if arch.holdout else arch.num_classes, arch.holdout)
    known_train, known_test = mapping[train_lbl] >= 0, mapping[test_lbl] >= 0
    train_img, train_lbl = train_img[known_train], mapping[train_lbl[known_train]]
    held_img, held_lbl = test_img[~known_test], test_lbl[~known_test]
    test_img, test_lbl = test_img[known_test], mapping[test_lbl[known_test]]
    if not len(train_lbl) or not len(test_lbl):
        raise UserError('no %s images of the classes trained on (%s)' % (
            'training' if not len(train_lbl) else 'test', ','.join(map(str, classes))))
    # Normalise with the statistics of the images trained on, whatever the dataset.
    mean, std = normalisation or (float(train_img.mean() / 255.0), float(train_img.std() / 255.0))
    train_x, train_y = utils.to_nd(train_img, train_lbl, mean, std, rt.ctxs[0])
    test_x, test_y = utils.to_nd(test_img, test_lbl, mean, std, rt.ctxs[0])
    held_x, held_y = utils.to_nd(held_img, held_lbl, mean, std, rt.ctxs[0]) if len(held_lbl) else (None, None)
    print('data: %s from %s, %d train / %d test images%s%s' % (
        args.dataset, directory, len(train_lbl), len(test_lbl),
        ' of classes %s (held out: %s, %d test images)' % (','.join(map(str, classes)), flag_value(arch.holdout),
                                                           len(held_lbl)) if arch.holdout else '',
        ' (worker %d of %d: slice %d of each global batch)' % (rt.rank, rt.num_workers, rt.rank)
        if rt.num_workers > 1 else ''))
    return dict(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, held_x=held_x, held_y=held_y,
                classes=np.array(classes), num_total=max(total, arch.num_classes), normalisation=[mean, std],
                class_names=utils.CLASS_NAMES[args.dataset], background=float(-mean / std))


def build_net(arch, ctxs, ckpt=None):
    """The network of ``arch`` on ``ctxs``, hybridized; with the weights of ``ckpt`` when given."""
    net = get_model(arch.model, arch.num_classes, arch.feature_size, arch.act)
    net.initialize(mx.init.Xavier(magnitude=2.24), ctx=ctxs)
    net(nd.zeros((1, 1, 28, 28), ctx=ctxs[0]))  # settle deferred shapes so a checkpoint can be checked
    net.hybridize(static_alloc=True, static_shape=True)
    if ckpt is not None:
        checkpoints.restore_net(net, ckpt)
    return net


class Objective(gluon.HybridBlock):
    """One graph for a training step: scores, features, and the per-sample
    softmax and center losses (either may be switched off). ``counts`` are the
    class counts of the whole batch, which may be split across devices."""

    def __init__(self, net, center_loss=None, softmax=True, **kwargs):
        super(Objective, self).__init__(**kwargs)
        self.net = net
        self.center_loss = center_loss
        self.ce = gluon.loss.SoftmaxCrossEntropyLoss() if softmax else None

    def hybrid_forward(self, F, x, y, counts=None):
        scores, features = self.net(x)
        l_s = self.ce(scores, y) if self.ce is not None else F.zeros_like(y)
        l_c = self.center_loss(features, y, counts) if self.center_loss is not None else F.zeros_like(y)
        return l_s + l_c, l_s, l_c, scores, features


# --------------------------------------------------------------------------- a stage: built, then run

class Stage(object):
    """What one stage trains with and keeps: made by build_stage, run by run_stage.

    kind: 'first' or 'second'; files: its RunFiles; source: the checkpoint it
    starts from (None for a new first stage); resumed: source is its own last
    checkpoint; metric: the accuracy that picks the best checkpoint.
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    @property
    def title(self):
        if self.kind == 'second':
            return 'center loss only'
        return 'softmax + center loss' if self.center_loss is not None else 'softmax'


def build_stage(args, rt, files, kind, source, n_train):
    """A Stage of ``kind`` saved under ``files``, from checkpoint ``source`` (or new)."""
    second = kind == 'second'
    resumed = source is not None and source.path == files.last
    arch = resolve_arch(args, source)
    net = build_net(arch, rt.ctxs, source)
    center_loss = None
    if second or args.center_loss:
        center_loss = CenterLoss(arch.num_classes, arch.feature_size, args.lmbd, update=args.center_update)
        center_loss.initialize(mx.init.Normal(0.01), ctx=rt.ctxs)
        if second or resumed:
            center_loss.centers.weight.set_data(source.centers)
    if second:
        # Only the center loss drives this stage: the centers are frozen, and the
        # class layer keeps the first stage's weights (no weight decay on it
        # either), so softmax accuracy still reads off the moved features.
        center_loss.collect_params().setattr('grad_req', 'null')
        net.output.collect_params().setattr('grad_req', 'null')
    trainer, center_trainer, reducer = build_trainers(args, rt, net, None if second else center_loss)
    if resumed:
        checkpoints.restore_trainer(trainer, source, 'net')
        if center_trainer is not None:
            checkpoints.restore_trainer(center_trainer, source, 'centers')
    objective = Objective(net, center_loss, softmax=not second)
    objective.hybridize(static_alloc=True, static_shape=True)
    state = source.meta if resumed else {}
    return Stage(kind=kind, files=files, source=source, resumed=resumed, arch=arch, net=net,
                 center_loss=center_loss, objective=objective, trainer=trainer, center_trainer=center_trainer,
                 reducer=reducer, metric=args.eval_method or ('center' if second else 'softmax'),
                 history=state.get('history', []), best=state.get('best', -1.0),
                 projection=pictures.Projection(**state.get('projection', {})),
                 plot_idx=pictures.plot_sample(n_train, args.seed))


def build_trainers(args, rt, net, center_loss):
    """(network Trainer, centers' Trainer or None, gradient reducer or None).

    The centers learn by their own plain SGD at rate alpha, whatever the
    network's schedule. Across workers a GradientReducer sums every gradient,
    the network's and the centers', through the distributed KVStore, and the
    two Trainers update locally, so the learning-rate schedule and the
    centers' alpha stay ours.
    """
    kvstore = None if rt.kv else args.kvstore
    params = {k: v for k, v in net.collect_params().items() if v.grad_req != 'null'}
    opt_params = {'learning_rate': args.lr, 'wd': args.wd}
    if args.optimizer == 'sgd':
        opt_params['momentum'] = args.momentum
    trainer = gluon.Trainer(params, args.optimizer, opt_params, kvstore=kvstore)
    center_trainer = None
    if center_loss is not None:
        center_trainer = gluon.Trainer(center_loss.collect_params(), 'sgd',
                                       {'learning_rate': args.alpha, 'momentum': 0.0, 'wd': 0.0}, kvstore=kvstore)
    reducer = None
    if rt.kv:
        reduced = list(params.values()) + (list(center_loss.collect_params().values()) if center_loss else [])
        reducer = GradientReducer(rt.kv, reduced)
    return trainer, center_trainer, reducer


def run_stage(args, rt, data, stage):
    """Train ``stage`` epoch by epoch: train, evaluate, report, draw, save; then the GIFs and curves."""
    if len(stage.history) >= args.epochs:
        print('%s is complete (%d epochs); nothing to resume' % (stage.files.prefix, len(stage.history)))
        return
    start_stage(args, rt, stage)
    for epoch in range(len(stage.history) + 1, args.epochs + 1):
        lr = args.lr * args.lr_factor ** ((epoch - 1) // args.lr_step)
        stage.trainer.set_learning_rate(lr)
        tic = time.time()
        sums, seen, train_feat = train_epoch(args, rt, data, stage, epoch)
        train_time = time.time() - tic
        if rt.rank != 0:  # every worker trains its slice of each batch; the first evaluates, saves and draws
            print('[%s] worker %d: epoch %2d/%d  train acc %.4f on its slices  %.1fs'
                  % (stage.files.prefix, rt.rank, epoch, args.epochs, sums[2] / seen, train_time))
            continue
        record, test_feat, centers = evaluate_epoch(args, data, stage, epoch, lr, sums / seen, train_feat)
        record.update(time=time.time() - tic, train_time=train_time)
        stage.history.append(record)
        report(args, stage, record, len(train_feat))
        with saved(args.out_dir):
            if args.plotting:
                draw_epoch(args, data, stage, record, train_feat, test_feat, centers)
            save_epoch(args, rt, data, stage, record, centers)
    with saved(args.out_dir):
        finish_stage(args, rt, stage)


def start_stage(args, rt, stage):
    """Say what the stage does; a new stage's output set replaces the old one's."""
    if stage.resumed:
        print('resuming %s after epoch %d from %s' % (stage.files.prefix, len(stage.history), stage.source.path))
    elif stage.kind == 'second':
        print('second stage from %s (epoch %d), centers frozen' % (stage.source.path, stage.source.meta['epoch']))
    if not stage.resumed and rt.rank == 0:
        with saved(args.out_dir):
            stage.files.remove_outputs()
    print('%s stage "%s": %s, %d epochs, lr %g (x%g every %d), batch %d, shifts up to %d px%s'
          % (stage.kind, stage.files.prefix, stage.title, args.epochs, args.lr, args.lr_factor, args.lr_step,
             args.batch_size, args.shift, ', lmbd %g, alpha %g, %s update' % (args.lmbd, args.alpha, args.center_update)
             if stage.center_loss is not None else ''))


def evaluate_epoch(args, data, stage, epoch, lr, means, train_feat):
    """(the epoch's record, test features, centers): losses and accuracies by each method.
    ``means``: the epoch's mean softmax loss, center loss and training accuracy."""
    test_y = data['test_y']
    if stage.center_loss is not None:
        centers = stage.center_loss.centers.weight.data(train_feat.context)
    else:  # softmax alone has no centers: use the class means for nearest-center
        centers = evaluation.class_means(train_feat, data['train_y'], stage.arch.num_classes)
    test_scores, test_feat = evaluation.forward_all(stage.net, data['test_x'])
    record = dict(epoch=epoch, lr=lr, loss_softmax=None if stage.kind == 'second' else float(means[0]),
                  loss_center=float(means[1]) if stage.center_loss is not None else None,
                  train_acc=float(means[2]),
                  test_acc_softmax=evaluation.accuracy(evaluation.predict_softmax(test_scores), test_y),
                  test_acc_center=evaluation.accuracy(evaluation.predict_center(test_feat, centers), test_y))
    if stage.metric == 'knn':
        record['test_acc_knn'] = evaluation.accuracy(evaluation.predict_knn(
            test_feat, train_feat, data['train_y'], args.knn_k, stage.arch.num_classes), test_y)
    return record, test_feat, centers


def report(args, stage, record, n):
    def loss(key):
        return '-' if record[key] is None else '%.4f' % record[key]
    print('[%s] epoch %2d/%d  lr %.4g  loss: softmax %s center %s  train acc %.4f  test acc: softmax %.4f '
          'center %.4f%s  %.1fs (%d img/s)'
          % (stage.files.prefix, record['epoch'], args.epochs, record['lr'], loss('loss_softmax'), loss('loss_center'),
             record['train_acc'], record['test_acc_softmax'], record['test_acc_center'],
             '  knn %.4f' % record['test_acc_knn'] if stage.metric == 'knn' else '', record['time'],
             n / record['train_time']))


def draw_epoch(args, data, stage, record, train_feat, test_feat, centers):
    """This epoch's feature maps of the plotted training points and of the test set."""
    train_feat = train_feat.asnumpy()[stage.plot_idx]
    stage.projection.fit(train_feat)
    ids = data['classes']  # labels back to class ids: colours and names stay those of the dataset's classes
    maps = {'train': (train_feat, ids[data['train_y'].asnumpy().astype(int)[stage.plot_idx]], record['train_acc']),
            'test': (test_feat.asnumpy(), ids[data['test_y'].asnumpy().astype(int)], record['test_acc_softmax'])}
    for split, (feat, labels, acc) in maps.items():
        pictures.plot_features(stage.files.frame(split, record['epoch']), stage.projection(feat), labels,
                               data['num_total'], '%s (%s stage), %s set, epoch %d, accuracy %.4f'
                               % (stage.title, stage.kind, split, record['epoch'], acc),
                               centers=stage.projection(centers.asnumpy()), class_names=data['class_names'],
                               center_labels=ids)


def save_epoch(args, rt, data, stage, record, centers):
    """The last checkpoint (with optimizer states, to resume), the best one when it improved, the metrics."""
    improved = record['test_acc_' + stage.metric] > stage.best
    stage.best = max(stage.best, record['test_acc_' + stage.metric])
    meta = dict(stage.arch._asdict(), dataset=args.dataset, stage=stage.kind, prefix=stage.files.prefix,
                classes=data['classes'].tolist(), normalisation=data['normalisation'],
                center_loss=stage.center_loss is not None, precision=rt.precision, epoch=record['epoch'],
                metrics=record, best=stage.best, history=stage.history, projection=stage.projection.state())
    trainers = {'net': stage.trainer}
    if stage.center_trainer is not None:
        trainers['centers'] = stage.center_trainer
    checkpoints.save_checkpoint(stage.files.last, stage.net, centers, meta, trainers)
    if improved:
        checkpoints.save_checkpoint(stage.files.best, stage.net, centers, meta)
    write_json(stage.files.metrics, stage.history)


def finish_stage(args, rt, stage):
    """The stage's GIFs and curves, and where its checkpoints are."""
    if rt.kv:  # dist_sync keeps every worker's copy identical: this lets one check it
        print('[%s] worker %d: parameter checksum %.10e'
              % (stage.files.prefix, rt.rank, param_checksum(stage.net, stage.center_loss)))
    if rt.rank != 0:
        return
    files = stage.files
    if args.plotting:
        for split in ('train', 'test'):
            pictures.make_gif(files.gif(split), files.frames(split, args.epochs))
        pictures.plot_curves(files.curves, stage.history, '%s: %s' % (files.prefix, stage.title))
        print('pictures: %s, %s' % (', '.join(files.gif(s) for s in ('train', 'test')), files.curves))
    print('best test accuracy (%s) %.4f; checkpoints: %s, %s' % (stage.metric, stage.best, files.best, files.last))


def train_epoch(args, rt, data, stage, epoch):
    """One pass over the shuffled training set.

    With N workers, each batch is a global batch of N x --batch_size images in
    the order one process would take them, and worker k trains on the k-th
    slice of each (np.array_split: slices differ by at most one image); the
    center loss sees the class counts of the whole global batch. So N workers
    take exactly the steps of one process at N x --batch_size. A last global
    batch of fewer images than workers is skipped (it cannot give each a slice).

    Returns (sums of softmax loss, center loss and correct predictions over this
    worker's images, as numpy), their number, and the training features in the
    dataset's order on the first device (with several workers, from a forward
    pass over the whole training set after the epoch).
    """
    train_x, train_y = data['train_x'], data['train_y']
    n, ctx, workers = train_x.shape[0], rt.ctxs[0], rt.num_workers
    bs = args.batch_size * workers
    # Each epoch's order depends only on (seed, epoch): a resumed run sees the same batches.
    rng = np.random.RandomState([args.seed, epoch])
    order = rng.permutation(n)
    num_batches = n // bs + (n % bs >= workers)  # see above for a last batch too small to slice
    if args.shift:  # one offset per place in the epoch's order, also from (seed, epoch)
        shifts = nd.array(rng.randint(-args.shift, args.shift + 1, size=(n, 2)), ctx=ctx)
    # Running sums and per-batch losses stay on the device: reading them back is a
    # sync point, so it happens every `sync_every` batches, not every batch.
    sums = nd.zeros((3,), ctx=ctx)                   # softmax loss, center loss, correct predictions
    batch_loss = nd.zeros((num_batches,), ctx=ctx)   # to name the batch where a loss went NaN
    feats, mine_all, sync_every = [], [], 50
    bar = tqdm(range(num_batches), desc='%s %d/%d' % (stage.files.prefix, epoch, args.epochs), leave=False,
               disable=None)
    for b in bar:
        places = np.arange(b * bs, min((b + 1) * bs, n))
        if workers > 1:
            places = np.array_split(places, workers)[rt.rank]
        batch, mine = order[b * bs:(b + 1) * bs], order[places]
        idx = nd.array(mine, ctx=ctx, dtype='int32')
        x, y = nd.take(train_x, idx), nd.take(train_y, idx)
        counts = None  # one process: train_step counts its own batch; several: the whole global batch
        if workers > 1:
            counts = nd.one_hot(nd.take(train_y, nd.array(batch, ctx=ctx, dtype='int32')),
                                stage.arch.num_classes).sum(axis=0)
        if args.shift:
            x = utils.random_shift(x, shifts[int(places[0]):int(places[-1]) + 1], data['background'], args.shift)
        for loss, l_s, l_c, scores, features, y_dev in train_step(
                stage.objective, stage.trainer, stage.center_trainer, x, y, rt.ctxs, stage.arch.num_classes,
                stage.reducer, counts=counts, batch_size=len(batch)):
            batch_loss[b] += loss.sum().as_in_context(ctx)
            sums += nd.concat(l_s.sum(), l_c.sum(), (nd.argmax(scores, axis=1) == y_dev).sum(),
                              dim=0).as_in_context(ctx)
            feats.append(features.as_in_context(ctx))
        mine_all.append(mine)
        if (b + 1) % sync_every == 0 or b + 1 == num_batches:
            check_finite(batch_loss, b, epoch, num_batches, stage)
            s, seen = sums.asnumpy(), sum(len(m) for m in mine_all)
            bar.set_postfix(loss='%.4f' % ((s[0] + s[1]) / seen), acc='%.4f' % (s[2] / seen))
    bar.close()
    mine_all = np.concatenate(mine_all)
    return sums.asnumpy(), len(mine_all), training_features(rt, stage, train_x, feats, mine_all)


def training_features(rt, stage, train_x, feats, seen):
    """The features of the whole training set in dataset order: as this epoch's forward passes
    saw them (``feats`` of the images ``seen``, in that order), or, where this worker did not
    see every image, from one more forward pass (rank 0 only: the others need none)."""
    if len(seen) < train_x.shape[0]:
        return evaluation.forward_all(stage.net, train_x)[1] if rt.rank == 0 else None
    return nd.take(nd.concat(*feats, dim=0), nd.array(np.argsort(seen), ctx=rt.ctxs[0], dtype='int32'))


def check_finite(batch_loss, b, epoch, num_batches, stage):
    """Stop the stage at the first batch (up to ``b``) whose loss is NaN or infinite."""
    bad = np.flatnonzero(~np.isfinite(batch_loss[:b + 1].asnumpy()))
    if len(bad):
        raise UserError('the loss became %s in epoch %d at batch %d of %d; the stage stopped and its '
                        'checkpoints of earlier epochs are kept: lower --lr%s'
                        % (batch_loss[int(bad[0])].asscalar(), epoch, bad[0] + 1, num_batches,
                           ' or --lmbd' if stage.center_loss is not None else ''))


def train_step(objective, trainer, center_trainer, x, y, ctxs, num_classes, reducer=None, counts=None,
               batch_size=None):
    """Forward, backward and update on one batch, split across ``ctxs``.

    Gradients are summed over devices (and over workers by ``reducer``, a
    GradientReducer) and divided by ``batch_size``, the images of the whole
    (global) batch, whose class counts are ``counts`` (by default those of
    ``y``), so several devices and workers take the same step as one. Returns
    [(loss, softmax loss, center loss, scores, features, labels)] per device,
    in batch order.
    """
    if counts is None:
        counts = nd.one_hot(y, num_classes).sum(axis=0)  # class counts of the whole batch
    ctxs = ctxs[:x.shape[0]]
    xs = gluon.utils.split_and_load(x, ctxs, even_split=False)
    ys = gluon.utils.split_and_load(y, ctxs, even_split=False)
    with autograd.record():
        if objective.center_loss is None:  # softmax alone: the counts would be an unused input
            outs = [objective(x_dev, y_dev) for x_dev, y_dev in zip(xs, ys)]
        else:
            outs = [objective(x_dev, y_dev, counts.as_in_context(x_dev.context)) for x_dev, y_dev in zip(xs, ys)]
    autograd.backward([out[0] for out in outs])
    batch_size = x.shape[0] if batch_size is None else batch_size
    if reducer is None:
        trainer.step(batch_size)
        if center_trainer is not None:
            center_trainer.step(batch_size)
    else:
        reducer.allreduce_grads()
        trainer.update(batch_size)
        if center_trainer is not None:
            center_trainer.update(batch_size)
    return [tuple(out) + (y_dev,) for out, y_dev in zip(outs, ys)]


# --------------------------------------------------------------------------- test and compare

def test(args, rt, data, ckpt):
    """Accuracy of checkpoint ``ckpt`` by each evaluation method."""
    arch = resolve_arch(args, ckpt)
    net = build_net(arch, rt.ctxs, ckpt)
    test_scores, test_feat = evaluation.forward_all(net, data['test_x'])
    nd.waitall()  # the times below are of the evaluation alone, once the features exist
    test_y, name = data['test_y'], ckpt.meta.get('prefix', os.path.basename(ckpt.path))
    results = {}
    for method in ([args.eval_method] if args.eval_method else EVAL_METHODS):
        tic = time.time()
        if method == 'softmax':
            pred = evaluation.predict_softmax(test_scores)
        elif method == 'center':
            pred = evaluation.predict_center(test_feat, ckpt.centers.as_in_context(rt.ctxs[0]))
        else:  # the gallery: features of the whole training set
            _, train_feat = evaluation.forward_all(net, data['train_x'])
            nd.waitall()
            tic = time.time()
            pred = evaluation.predict_knn(test_feat, train_feat, data['train_y'], args.knn_k, arch.num_classes)
        results[method] = evaluation.accuracy(pred, test_y)
        print('test %s (epoch %d): %s accuracy %.4f  (%.2fs)'
              % (name, ckpt.meta['epoch'], method if method != 'knn' else 'knn (k=%d)' % args.knn_k,
                 results[method], time.time() - tic))
    return results


def compared_runs(args):
    """[(RunFiles, title)]: those of --prefix A,B,C, else the three runs of the original port's figure."""
    if args.prefixes and len(args.prefixes) > 1:
        return [(RunFiles(args.ckpt_dir, args.out_dir, prefix), prefix) for prefix in args.prefixes]
    return [(RunFiles(args.ckpt_dir, args.out_dir, prefix), title) for prefix, title in COMPARED]


def check_dataset(args, ckpt):
    """A checkpoint is continued or evaluated on the dataset it was trained on."""
    trained_on = ckpt.meta.get('dataset', args.dataset)
    if trained_on != args.dataset:
        raise UserError('%s was trained on %s, not %s: pass --dataset %s' % (ckpt.path, trained_on, args.dataset,
                                                                          trained_on))


def data_key(arch, normalisation):
    """What makes two loads of the data the same: the split and the normalisation."""
    return arch.holdout, arch.num_classes, tuple(normalisation or ())


def data_of(args, rt, raw, ckpt, loaded):
    """The data of checkpoint ``ckpt``'s classes and normalisation (``loaded``: a cache of them)."""
    check_dataset(args, ckpt)
    arch = Arch.of(ckpt)
    key = data_key(arch, ckpt.meta.get('normalisation'))
    if key not in loaded:
        loaded[key] = load_data(args, arch, rt, raw, ckpt.meta.get('normalisation'))
    return arch, loaded[key]


def compare(args, rt, raw, loaded, opened=None):
    """The original port's figure from the saved best checkpoints of the three runs, or of
    --prefix A,B,C (``opened``: one of them, already read); held-out classes as crosses."""
    rows, num_classes, class_names = [], 0, None
    for files, title in compared_runs(args):
        if not os.path.isfile(files.best):
            print('compare: skipping %s (%s not found%s)' % (files.prefix, files.best, make_hint(files)))
            continue
        ckpt = opened if opened is not None and opened.path == files.best else open_checkpoint(files.best)
        arch, data = data_of(args, rt, raw, ckpt, loaded)
        num_classes, class_names = max(num_classes, data['num_total']), data['class_names']
        ids = data['classes']
        plot_idx = pictures.plot_sample(data['train_x'].shape[0], args.seed)
        net = build_net(arch, rt.ctxs, ckpt)
        _, train_feat = evaluation.forward_all(net, data['train_x'])
        test_scores, test_feat = evaluation.forward_all(net, data['test_x'])
        train_feat = train_feat.asnumpy()[plot_idx]
        projection = pictures.Projection(**ckpt.meta.get('projection', {})).fit(train_feat)
        acc = evaluation.accuracy(evaluation.predict_softmax(test_scores), data['test_y'])
        held = None
        if data['held_x'] is not None:
            held = (projection(evaluation.forward_all(net, data['held_x'])[1].asnumpy()),
                    data['held_y'].asnumpy().astype(int))
        rows.append(('%s (test acc %.4f%s)' % (title, acc, ', classes %s held out' % flag_value(arch.holdout)
                                                if arch.holdout else ''),
                     {'train': (projection(train_feat), ids[data['train_y'].asnumpy().astype(int)[plot_idx]]),
                      'test': (projection(test_feat.asnumpy()), ids[data['test_y'].asnumpy().astype(int)]),
                      'held': held},
                     projection(ckpt.centers.asnumpy()), ids))
    if not rows:
        raise UserError('--compare found none of %s in %s: train them first'
                        % (', '.join(os.path.basename(f.best) for f, _ in compared_runs(args)), args.ckpt_dir))
    path = comparison_path(args.out_dir, args.dataset)  # run() made --out_dir (writable_folder)
    with saved(path, NO_CHECKPOINT_CHANGED):
        pictures.plot_comparison(path, rows, num_classes, class_names)
    print('comparison figure: %s (%d rows)' % (path, len(rows)))
    return path


def verified_runs(args, files, source):
    """[(RunFiles, checkpoint)] that --verify measures: the run of ``files`` (read: ``source``),
    or each of --prefix A,B,C."""
    if not args.prefixes or len(args.prefixes) == 1:
        return [(files, source)]
    runs = [RunFiles(args.ckpt_dir, args.out_dir, prefix) for prefix in args.prefixes]
    return [(f, source if source.path == f.best else open_checkpoint(f.best, make_hint(f))) for f in runs]


def verify(args, rt, raw, loaded, runs):
    """--verify: the open-set figures (verification.py) of each run's best checkpoint, on the
    test images of the classes it held out (or of every class); a JSON and ROC figure per run,
    and one figure of every curve when there are several runs."""
    curves = []
    for i, (files, ckpt) in enumerate(runs):
        arch, data = data_of(args, rt, raw, ckpt, loaded)
        net = build_net(arch, rt.ctxs, ckpt)
        known = evaluation.forward_all(net, data['test_x'])[1].asnumpy()
        if data['held_x'] is not None:
            features = evaluation.forward_all(net, data['held_x'])[1].asnumpy()
            labels, which = data['held_y'].asnumpy().astype(int), 'held-out classes %s' % flag_value(arch.holdout)
        else:
            features, labels = known, data['classes'][data['test_y'].asnumpy().astype(int)]
            which = 'all %d classes (none held out)' % len(data['classes'])
        if len(np.unique(labels)) < 2:
            raise UserError('--verify needs test images of at least two classes; %s has only class %d'
                            % ('--test_samples %d' % args.test_samples if args.test_samples else 'the test set',
                               labels[0]))
        tic = time.time()
        result = dict(prefix=files.prefix, checkpoint=ckpt.path, epoch=ckpt.meta['epoch'], dataset=args.dataset,
                      feature_size=arch.feature_size, holdout=list(arch.holdout),
                      trained_classes=data['classes'].tolist(), images=len(labels))
        for metric in verification.METRICS:
            try:
                result[metric] = verification.verify(features, labels, metric)
            except ValueError as e:
                raise UserError('--verify: %s' % e)
            if data['held_x'] is not None:
                result[metric]['open_set_auroc'] = verification.open_set_auroc(known, features,
                                                                               ckpt.centers.asnumpy(), metric)
        report_verification(result, which, time.time() - tic)
        with saved(args.out_dir, NO_CHECKPOINT_CHANGED):
            write_json(files.verify_json, result)
            pictures.plot_roc(files.roc, roc_curves(result), '%s (epoch %d): pairs of %d test images of %s'
                              % (files.prefix, result['epoch'], len(labels), which))
        print('verification: %s, %s' % (files.verify_json, files.roc))
        curves += roc_curves(result, files.prefix + ', ', 'C%d' % i)
    if len(runs) > 1:
        path = verify_path(args.out_dir, args.dataset)
        with saved(path, NO_CHECKPOINT_CHANGED):
            pictures.plot_roc(path, curves, '%s: ROC of each run, all pairs of its test images' % args.dataset)
        print('verification figure: %s (%d runs)' % (path, len(runs)))


def roc_curves(result, label='', color=''):
    """A run's curves for pictures.plot_roc: one colour per run, cosine solid, Euclidean dashed."""
    return [('%s%s (AUC %.4f)' % (label, metric, result[metric]['auc']), result[metric]['roc']['far'],
             result[metric]['roc']['tar'], color + style) for metric, style in zip(verification.METRICS, ('-', '--'))]


def report_verification(result, which, seconds):
    print('verify %s (epoch %d): %d test images of %s, %d pairs (%d same-class), %.1fs'
          % (result['prefix'], result['epoch'], result['images'], which, result['cosine']['pairs'],
             result['cosine']['same_class_pairs'], seconds))
    for metric in verification.METRICS:
        r = result[metric]
        lfw = r['lfw_protocol']
        print('  %-9s AUC %.4f  EER %.4f  TAR %s at FAR %s  LFW-style %d pairs %.4f +- %.4f%s'
              % (metric, r['auc'], r['eer'], ' / '.join('%.4f' % r['tar_at_far_%g' % f] for f in verification.FARS),
                 ' / '.join('%g' % f for f in verification.FARS), lfw['pairs'], lfw['accuracy_mean'],
                 lfw['accuracy_std'], '  open-set AUROC %.4f' % r['open_set_auroc'] if 'open_set_auroc' in r else ''))


# --------------------------------------------------------------------------- the command

def run(args):
    """Everything the flags ask for, in order: first stage, second stage, test, compare."""
    devices = get_contexts(args, gpu_cards() if args.use_gpu else [])
    kv, rank, num_workers = workers = setup_workers(args)
    files = RunFiles(args.ckpt_dir, args.out_dir, args.prefix)
    if rank == 0 and (args.train or args.second_train):  # rank 0 alone writes
        writable_folder(args.ckpt_dir, '--ckpt_dir')
        writable_folder(args.out_dir, '--out_dir')
        lock_run(files)
    elif rank == 0 and (args.compare or args.verify):
        writable_folder(args.out_dir, '--out_dir')
    # Read before the rest: it gives the network's shape (and so the number of classes
    # the labels are checked against) and the precision a continued stage keeps.
    source = starting_checkpoint(args, files)
    if source is not None:
        check_dataset(args, source)
    arch = resolve_arch(args, source)
    rt = setup_runtime(args, devices, workers, arch, source)
    print('mxnet %s (%s build), context %s%s, %s, OMP_NUM_THREADS=%s; precision %s'
          % (mx.__version__, 'CUDA' if mx.runtime.Features().is_enabled('CUDA') else 'CPU',
             ', '.join(str(c) for c in rt.ctxs), rt.note, rt.precision, os.environ.get('OMP_NUM_THREADS'), rt.why))
    if rt.kv:
        print('worker %d of %d, kvstore %s' % (rt.rank, rt.num_workers, args.kvstore))
    mx.random.seed(args.seed)
    np.random.seed(args.seed)
    raw = read_data(args)
    data = load_data(args, arch, rt, raw, source.meta.get('normalisation') if source is not None else None)
    n_train = data['train_x'].shape[0]
    if args.test and args.knn_k > n_train and args.eval_method in (None, 'knn'):
        raise UserError('--knn_k %d is larger than the %d training images it votes among' % (args.knn_k, n_train))
    if args.train:
        run_stage(args, rt, data, build_stage(args, rt, files, 'first', source, n_train))
        source = None
    if args.second_train:
        second = files.second()
        if source is None:  # after a first stage in this command: resume only a second stage that started
            resume = args.resume and os.path.isfile(second.last)
            source = open_checkpoint(second.last) if resume else open_checkpoint(files.best, make_hint(files))
        run_stage(args, rt, data, build_stage(args, rt, second, 'second', source, n_train))
        files, source = second, None
    if rt.rank == 0:  # with several workers, the first alone evaluates and draws
        if args.test or args.verify:
            source = source or open_checkpoint(files.best, make_hint(files))
        if args.test:
            test(args, rt, data, source)
        loaded = {data_key(arch, data['normalisation']): data}  # checkpoints of this data need no second load
        if args.verify:
            verify(args, rt, raw, loaded, verified_runs(args, files, source))
        if args.compare:
            compare(args, rt, raw, loaded, source)


def how_to_continue(args, argv):
    """After Ctrl-C or SIGTERM: the command that resumes, or that starts again when no epoch was saved
    (or that runs again, when it only evaluated or drew checkpoints)."""
    again = ' '.join(a for a in argv if a != '--resume')
    files = RunFiles(args.ckpt_dir, args.out_dir, args.prefix)
    if not (args.train or args.second_train):
        return 'nothing was training and no checkpoint changed; run it again with\n  python main.py %s' % again
    if not os.path.isfile((files if args.train else files.second()).last):
        return 'no epoch was completed, nothing was saved; start again with\n  python main.py %s' % again
    return ('the last completed epoch is saved in %s; continue with\n  python main.py %s --resume'
            % (args.ckpt_dir, again))


def on_sigterm(signum, frame):
    raise Terminated()


def main(argv=None):
    args = parse_args(argv)
    before = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        run(args)
    except (UserError, DataError, CheckpointError) as e:
        print('error: %s' % e, file=sys.stderr)
        return EXIT_USAGE
    except SaveError as e:
        print('error: %s' % e, file=sys.stderr)
        return EXIT_IO
    except KeyboardInterrupt as e:
        print('\n%s: %s' % ('terminated' if isinstance(e, Terminated) else 'interrupted',
                             how_to_continue(args, argv if argv is not None else sys.argv[1:])), file=sys.stderr)
        return EXIT_TERM if isinstance(e, Terminated) else EXIT_INT
    finally:
        signal.signal(signal.SIGTERM, before)
    return 0


if __name__ == '__main__':
    sys.exit(main())
