"""Softmax and center loss (Wen et al., ECCV 2016) on MNIST with MXNet Gluon.

    python main.py --train --center_loss   # stage 1: softmax + lmbd * center loss
    python main.py --second_train          # stage 2: center loss alone, centers frozen
    python main.py --test                  # softmax, nearest-center and k-NN accuracy
    python main.py --verify                # open-set: pairs of unseen classes (with --holdout)
"""
import argparse
import os
import signal
import sys

try:
    import compat  # noqa: F401  (before mxnet: numpy alias, thread count, CUDA libraries)
except ImportError as e:  # a set-up problem, not a bug: say what to install
    print('error: %s' % e, file=sys.stderr)
    sys.exit(2)

import numpy as np
import mxnet as mx

import commands
import data
from argtypes import (NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, HelpFormatter, Parser,
                      class_ids, image_size, number, str2bool)
from center_loss import UPDATES
from checkpoints import CheckpointError, load_checkpoint
from commands import EVAL_METHODS
from errors import EXIT_INT, EXIT_IO, EXIT_TERM, EXIT_USAGE, SaveError, Terminated, UserError, on_sigterm
from models import ACTIVATIONS, MODELS, resolve_arch
from parallel import setup_workers
from runfiles import RunFiles, lock_run, unlock_all, writable_folder
from runtime import get_contexts, gpu_cards, setup_runtime
from schedule import SCHEDULES
from sources import SourceError
from train import build_stage, run_stage
from utils import DataError

KVSTORES = ('device', 'local', 'dist_sync', 'dist_device_sync')
# Each stage's own defaults for the flags of its schedule, chosen by the search in docs/time-to-accuracy.md:
# every floor at each stage's last epoch in 6 + 2 epochs.
STAGE_DEFAULTS = {'first': dict(epochs=6, lr=0.025, lr_schedule='cosine', warmup=0.5),
                  'second': dict(epochs=2, lr=0.01, lr_schedule='cosine', warmup=0.0)}
PRECISIONS = ('auto', 'float32', 'bfloat16')


# --------------------------------------------------------------------------- command line

def stage_default(flag):
    return 'default: %s for the first stage, %s for the second' % (STAGE_DEFAULTS['first'][flag],
                                                                  STAGE_DEFAULTS['second'][flag])


def stage_args(args, kind):
    """``args`` with the schedule flags the user left out set to stage ``kind``'s defaults."""
    filled = argparse.Namespace(**vars(args))
    for flag, value in STAGE_DEFAULTS[kind].items():
        if getattr(filled, flag) is None:
            setattr(filled, flag, value)
    if filled.lr_schedule != 'step' and filled.warmup >= filled.epochs:
        raise UserError('--warmup %g leaves nothing of %d epoch%s of the %s stage for the %s schedule'
                        % (filled.warmup, filled.epochs, '' if filled.epochs == 1 else 's', kind, filled.lr_schedule))
    return filled


def build_parser():
    p = Parser(prog='main.py', description=__doc__, formatter_class=HelpFormatter)
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
    files.add_argument('--ckpt_dir', default='ckpt', help='checkpoints')
    files.add_argument('--out_dir', default='output', help='feature maps, GIFs, curves, metrics, figures')
    files.add_argument('--dataset', default=None, choices=data.DATASETS,
                       help='images: your own, in --data_dir (docs/own-data.md); default: the checkpoint\'s a '
                            'command starts from, else mnist')
    files.add_argument('--data_dir', default=None,
                       help='the four IDX files (.gz or raw), or your own images: train/ and test/ class folders, '
                            'or train.rec and test.rec with their .idx; default: the checkpoint\'s, else the '
                            'vendored MNIST or Debian\'s Fashion-MNIST')
    files.add_argument('--image_size', type=image_size, default=None,
                       help='bring your own images to N or HxW pixels (default: the first training image\'s)')
    files.add_argument('--decode_workers', type=NON_NEGATIVE_INT, default=1,
                       help='processes that decode your own images ahead of the training step (0: in this one)')
    files.add_argument('--train_samples', type=POSITIVE_INT, default=None,
                       help='use N training images: the first N of IDX files, a seeded sample of your own (default: '
                            'the checkpoint\'s, else all)')
    files.add_argument('--test_samples', type=POSITIVE_INT, default=None,
                       help='use N test images, as --train_samples (default: all)')

    opt = p.add_argument_group('optimisation')
    opt.add_argument('--epochs', type=POSITIVE_INT, default=None, help='epochs of each stage (%s)' % stage_default('epochs'))
    opt.add_argument('--batch_size', type=POSITIVE_INT, default=64, help='images per step')
    opt.add_argument('--optimizer', choices=('sgd', 'adam'), default='sgd', help='sgd uses --momentum')
    opt.add_argument('--lr', type=POSITIVE, default=None, help='the network\'s peak learning rate (%s)' % stage_default('lr'))
    opt.add_argument('--momentum', type=NON_NEGATIVE, default=0.9, help='SGD momentum')
    opt.add_argument('--momentum_low', type=NON_NEGATIVE, default=0.85,
                     help='onecycle: the momentum at the peak rate')
    opt.add_argument('--lr_schedule', choices=SCHEDULES, default=None,
                     help='how the rate changes step by step (schedule.py): step (x lr_factor every lr_step '
                          'epochs), cosine or linear to lr * lr_final, onecycle (cosine, momentum moved against it) '
                          '(%s)' % stage_default('lr_schedule'))
    opt.add_argument('--warmup', type=NON_NEGATIVE, default=None,
                     help='epochs (fractions allowed) over which the rate climbs linearly from 0 to --lr (%s)'
                          % stage_default('warmup'))
    opt.add_argument('--lr_final', type=NON_NEGATIVE, default=0.0,
                     help='the last rate of cosine, linear and onecycle, as a fraction of --lr')
    opt.add_argument('--lr_step', type=POSITIVE_INT, default=8, help='step: multiply lr by lr_factor every N epochs')
    opt.add_argument('--lr_factor', type=POSITIVE, default=0.1, help='see --lr_step')
    opt.add_argument('--wd', type=NON_NEGATIVE, default=5e-4, help='weight decay')
    opt.add_argument('--seed', type=NON_NEGATIVE_INT, default=42, help='initial weights, batch order, shifts')
    opt.add_argument('--shift', type=NON_NEGATIVE_INT, default=2,
                     help='augment: translate each training image by up to N pixels each way (0: off)')

    cl = p.add_argument_group('center loss')
    cl.add_argument('--lmbd', type=NON_NEGATIVE, default=1.0, help='lambda: weight of the center loss')
    cl.add_argument('--lmbd_warmup', type=NON_NEGATIVE, default=0.0,
                    help='epochs over which the pull of the center loss on the features grows from 0 to lmbd '
                         '(the centers learn at alpha from the start)')
    cl.add_argument('--alpha', type=POSITIVE, default=0.5, help='alpha: learning rate of the centers')
    cl.add_argument('--center_update', choices=UPDATES, default='gradient',
                    help='gradient: balanced loss, centers by SGD at alpha; paper: Eq. 4 of the paper')

    net = p.add_argument_group('network and classes (later stages take these from the checkpoint)')
    net.add_argument('--model', choices=sorted(MODELS), default=None,
                     help='the paper\'s LeNet++, the original port\'s LeNet, or a model-zoo ResNet (default: lenet++)')
    net.add_argument('--act', choices=ACTIVATIONS, default=None, help='LeNet\'s activation (default: leaky)')
    net.add_argument('--feature_size', type=POSITIVE_INT, default=None,
                     help='the features center loss acts on (default: 2, to draw them as the paper does)')
    net.add_argument('--num_classes', type=POSITIVE_INT, default=None,
                     help='default 10, or the number of classes trained on with --holdout')
    net.add_argument('--holdout', type=class_ids, default=None,
                     help='class ids kept out of training, e.g. 5,6,7,8,9: both stages train on the other classes '
                          '(at least two), whose test images give the accuracy; --verify measures on the held-out '
                          'ones (default: none; with your own images, the test classes with no training images)')

    ev = p.add_argument_group('evaluation and output')
    ev.add_argument('--eval_method', choices=EVAL_METHODS, default=None,
                    help='accuracy that picks the best checkpoint (default: softmax for the first stage, '
                         'center for the second) and that --test prints (default: all three)')
    ev.add_argument('--knn_k', type=POSITIVE_INT, default=10, help='neighbours for --eval_method knn')
    ev.add_argument('--pairs', default=None,
                    help='--verify on this pair list instead: LFW\'s pairs.txt format, or an insightface .bin '
                         '(default: all pairs of the test images)')
    ev.add_argument('--pairs_dir', default=None,
                    help='the folder of class folders a pairs.txt names (default: the test/ folder of --data_dir)')
    ev.add_argument('--plotting', dest='plotting', action='store_true', default=True,
                    help='feature-map PNG per epoch and GIFs (on by default)')
    ev.add_argument('--no_plotting', dest='plotting', action='store_false', help='no pictures')
    ev.add_argument('--frames', type=number(int, above=0, at_most=1000), default=20,
                    help='at least this many frames in each GIF: with fewer epochs, frames are drawn within them')

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

    return p


def parse_args(argv=None):
    p = build_parser()
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
    if args.kvstore.startswith('dist') and args.train and args.second_train:
        p.error('with --kvstore %s run one stage per launch' % args.kvstore)
    for prefix in args.prefixes or [args.prefix]:
        if not prefix or os.sep in prefix or '/' in prefix or prefix.startswith('.'):
            p.error('--prefix %r must be a plain name: no path separator, not starting with "."' % prefix)
    return args


# --------------------------------------------------------------------------- the command

NOTHING_TO_RESUME = ': nothing to resume; drop --resume to start the stage'


def starting_checkpoint(args, files):
    """The checkpoint this command starts from, or None for a new first stage.

    It is read once: its description gives the dataset and the network's shape
    before the data is loaded, and the stage, --test or --compare that starts
    from it takes it.
    """
    if args.train:
        return load_checkpoint(files.last, NOTHING_TO_RESUME) if args.resume else None
    if args.second_train:
        if args.resume:
            return load_checkpoint(files.second().last, NOTHING_TO_RESUME)
        return load_checkpoint(files.best, files.hint())
    if args.test or args.verify:
        return load_checkpoint(files.best, files.hint())
    found = [f.best for f, _ in commands.compared_runs(args) if os.path.isfile(f.best)]
    return load_checkpoint(found[0]) if found else None


def run(args):
    """Everything the flags ask for, in order: first stage, second stage, test, verify, compare."""
    devices = get_contexts(args, gpu_cards() if args.use_gpu else [])
    kv, rank, num_workers = workers = setup_workers(args)
    files = RunFiles(args.ckpt_dir, args.out_dir, args.prefix)
    if rank == 0 and (args.train or args.second_train):  # rank 0 alone writes
        writable_folder(args.ckpt_dir, '--ckpt_dir')
        writable_folder(args.out_dir, '--out_dir')
        lock_run(files)
    elif rank == 0 and (args.compare or args.verify):
        writable_folder(args.out_dir, '--out_dir')
    # Read before the rest: it gives the dataset, the network's shape (and so the number of
    # classes the labels are checked against) and the precision a continued stage keeps.
    source = starting_checkpoint(args, files)
    data.inherit_data_flags(args, source)
    raw = data.read_data(args)
    if source is None:
        data.untrained_classes(args, raw)
    arch = resolve_arch(args, len(raw.class_names), source, data.image_shape(args, raw))
    rt = setup_runtime(args, devices, workers, arch, source)
    print('mxnet %s (%s build), context %s%s, precision %s (%s), OMP_NUM_THREADS=%s'
          % (mx.__version__, 'CUDA' if mx.runtime.Features().is_enabled('CUDA') else 'CPU',
             ', '.join(str(c) for c in rt.ctxs), rt.note, rt.precision, rt.why, os.environ.get('OMP_NUM_THREADS')))
    if rt.kv:
        print('worker %d of %d, kvstore %s' % (rt.rank, rt.num_workers, args.kvstore))
    mx.random.seed(args.seed)
    np.random.seed(args.seed)
    loaded = data.load_data(args, arch, rt, raw, source.meta.get('normalisation') if source is not None else None)
    n_train = loaded['train_x'].shape[0]
    if args.test and args.knn_k > n_train and args.eval_method in (None, 'knn'):
        raise UserError('--knn_k %d is larger than the %d training images it votes among' % (args.knn_k, n_train))
    if args.train:
        first = stage_args(args, 'first')
        run_stage(first, rt, loaded, build_stage(first, rt, loaded, files, 'first', source))
        source = None
    if args.second_train:
        second = files.second()
        if source is None:  # after a first stage in this command: resume only a second stage that started
            resume = args.resume and os.path.isfile(second.last)
            source = load_checkpoint(second.last) if resume else load_checkpoint(files.best, files.hint())
        later = stage_args(args, 'second')
        run_stage(later, rt, loaded, build_stage(later, rt, loaded, second, 'second', source))
        files, source = second, None
    if rt.rank == 0:  # with several workers, the first alone evaluates and draws
        if args.test or args.verify:
            source = source or load_checkpoint(files.best, files.hint())
        if args.test:
            commands.test(args, rt, loaded, source)
        cache = {commands.data_key(arch, loaded['normalisation']): loaded}  # checkpoints of this data: no reload
        if args.verify and args.pairs:
            commands.verify_pairs(args, rt, commands.verified_runs(args, files, source))
        elif args.verify:
            commands.verify(args, rt, raw, cache, commands.verified_runs(args, files, source))
        if args.compare:
            commands.compare(args, rt, raw, cache, source)


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


def main(argv=None):
    args = parse_args(argv)
    before = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        run(args)
    except (UserError, DataError, CheckpointError, SourceError) as e:
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
        unlock_all()
    return 0


if __name__ == '__main__':
    sys.exit(main())
