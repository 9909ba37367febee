"""main.py's command line, and the lists the bench scripts take: the flags, the types of their values
and the shape of their messages (each bad value is one line, exit 2, in one style; --help shows every
default), the combinations refused before anything runs, and which flags a command gave
(runs.records.differences compares them with what a checkpoint recorded)."""
import argparse
import copy
import math
import os

from evaluation.verification import FARS
from runs.records import ACTIVATIONS, DATASETS, EVAL_METHODS, HEADS, MODELS, OPTIMIZERS, SCHEDULES, UPDATES

KVSTORES = ('device', 'local', 'dist_sync', 'dist_device_sync')
PRECISIONS = ('auto', 'float32', 'bfloat16')


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help shows every flag's default (those of no fixed value say in words what they default to)."""

    def _get_help_string(self, action):
        text = action.help or ''
        if 'default' in text or action.default is None or action.default is False or \
                action.default == argparse.SUPPRESS:  # not `in`: 0.0 == False
            return text
        return '%s (default: %%(default)s)' % text


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


def number(kind, above=None, at_least=None, at_most=None):
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
        if at_most is not None and not v <= at_most:
            raise argparse.ArgumentTypeError('must be %g or less, got %r' % (at_most, value))
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


def image_size(value):
    """--image_size: N (square) or HxW, e.g. 112 or 112x96 -> (112, 112), (112, 96)."""
    parts = value.lower().split('x')
    try:
        size = tuple(int(v) for v in parts)
    except ValueError:
        size = ()
    if len(size) not in (1, 2) or min(size) < 8:
        raise argparse.ArgumentTypeError('expected N or HxW of at least 8 pixels, e.g. 112 or 112x96, got %r' % value)
    return size * 2 if len(size) == 1 else size


def set_names(value):
    """--val_sets: names or paths separated by commas, or 'none' -> () ."""
    names = tuple(v.strip() for v in value.split(',') if v.strip())
    if not names:
        raise argparse.ArgumentTypeError('expected names of .bin files, e.g. lfw,cfp_fp, or none, got %r' % value)
    return () if names == ('none',) else names


def listed(item):
    """A list separated by commas (the bench scripts' --sizes 300,1000 or --losses softmax,center): each part
    parsed by ``item``, an argparse type, or one of ``item`` when it is a tuple of choices."""
    def parse(value):
        parts = [v.strip() for v in value.split(',')]
        if isinstance(item, tuple):
            wrong = [v for v in parts if v not in item]
            if wrong:
                raise argparse.ArgumentTypeError('%r is not one of %s' % (wrong[0], ', '.join(item)))
            return parts
        return [item(v) for v in parts]
    return parse


def shell_words(value):
    """Flags in one value, as a shell splits them (the bench scripts' --variant "--lr 0.01")."""
    import shlex
    try:
        shlex.split(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError('%r: %s' % (value, e))
    return value


POSITIVE_INT, POSITIVE = number(int, above=0), number(float, above=0)
NON_NEGATIVE_INT, NON_NEGATIVE = number(int, at_least=0), number(float, at_least=0)

# Each stage's own defaults for the flags of its schedule, chosen by the search in docs/time-to-accuracy.md
# (every floor at each stage's last epoch in 6 + 2 epochs) and, for the floors in steps that keep them safe
# on a few hundred images, by the set sizes of docs/own-data.md.
STAGE_DEFAULTS = {'first': dict(epochs=6, lr=0.025, lr_schedule='cosine', warmup=0.5, min_warmup_steps=250),
                  'second': dict(epochs=2, lr=0.01, lr_schedule='cosine', warmup=0.0, min_warmup_steps=0)}
STAGE_FLAGS = ('epochs', 'lr', 'lr_schedule', 'warmup', 'min_warmup_steps')


def build_parser(description):
    """main.py's flags, in groups; a flag each stage defaults on its own says both defaults."""
    def stage_default(flag):
        return 'default: %s for the first stage, %s for the second' % (STAGE_DEFAULTS['first'][flag],
                                                                      STAGE_DEFAULTS['second'][flag])
    p = Parser(prog='main.py', description=description, formatter_class=HelpFormatter)
    _what_to_do(p)
    _files(p)
    _optimisation(p, stage_default)
    for group in (_center_loss, _network, _evaluation, _use, _device):
        group(p)
    return p


def _what_to_do(p):
    """What the command does."""
    mode = p.add_argument_group('what to do (any combination, run in this order)')
    mode.add_argument('--train', action='store_true', help='first stage: softmax (+ center loss with --center_loss)')
    mode.add_argument('--center_loss', action='store_true', help='add lmbd * center loss to the first stage')
    mode.add_argument('--second_train', action='store_true',
                      help='second stage: center loss alone, centers frozen, from the first stage\'s best checkpoint '
                           '(or its last, with --checkpoint last)')
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
                      help='continue the stage(s) from their last checkpoint (after Ctrl-C or a crash), exactly as '
                           'it recorded them: alone, the newest stage stopped before its end (one line when every '
                           'stage is complete); a flag that would change the run is refused')
    mode.add_argument('--allow_changes', action='store_true',
                      help='with --resume: let the schedule and center-loss flags given change the recorded run '
                           '(each change is said)')


def _files(p):
    """Where files are read and written, and which images."""
    files = p.add_argument_group('files')
    files.add_argument('--prefix', default=None,
                       help='name of the first stage (default: center-loss with --center_loss or with '
                            '--second_train/--test alone, else softmax; with --train --head H: H, or H-center '
                            'with --center_loss); the second stage is <prefix>-second. '
                            '--verify and --compare alone take several: A,B,C')
    files.add_argument('--ckpt_dir', default='ckpt', help='checkpoints')
    files.add_argument('--save_minutes', type=NON_NEGATIVE, default=30.0,
                       help='save the run within an epoch every N minutes of training, so that a machine taken back '
                            'loses at most that (a stop, Ctrl-C or SIGTERM, saves it at the step it reached in any '
                            'case; 0: at epochs\' ends and stops only)')
    files.add_argument('--out_dir', default='output', help='feature maps, GIFs, curves, metrics, figures')
    files.add_argument('--dataset', default=None, choices=DATASETS,
                       help='images: your own, in --data_dir (docs/own-data.md); default: the checkpoint\'s a '
                            'command starts from, else mnist')
    files.add_argument('--data_dir', default=None,
                       help='the four IDX files (.gz or raw), or your own images: train/ and test/ class folders, '
                            'or train.rec and test.rec with their .idx; default: the checkpoint\'s, else the '
                            'vendored MNIST or Debian\'s Fashion-MNIST')
    files.add_argument('--image_size', type=image_size, default=None,
                       help='bring your own images to N or HxW pixels (default: the most common size of the '
                            'training images)')
    files.add_argument('--decode_workers', type=NON_NEGATIVE_INT, default=len(os.sched_getaffinity(0)),
                       help='processes that decode your own images ahead of the training step, a batch at a time '
                            '(0: in this one; default: the cores this process may use)')
    files.add_argument('--train_samples', type=POSITIVE_INT, default=None,
                       help='use N training images: the first N of IDX files, a seeded sample of your own (default: '
                            'the checkpoint\'s, else all)')
    files.add_argument('--test_samples', type=POSITIVE_INT, default=None,
                       help='use N test images, as --train_samples (default: all)')
    files.add_argument('--test_split', type=number(float, above=0, at_most=0.5), default=None,
                       help='your own images with no test split: the share of each class\'s images held out for '
                            'testing, at least one of a class of two or more, seeded (default: 0.05; recorded, so '
                            'later commands test on the same images)')
    files.add_argument('--val_sets', type=set_names, default=None,
                       help='insightface verification sets measured after each epoch, whose mean 10-fold accuracy '
                            'picks the best checkpoint: names of .bin files beside your images, or paths; none for '
                            'none (default: every .bin beside the images)')


def _optimisation(p, stage_default):
    """The schedule and the optimizer."""
    opt = p.add_argument_group('optimisation')
    opt.add_argument('--epochs', type=POSITIVE_INT, default=None,
                     help='epochs of each stage (%s)' % stage_default('epochs'))
    opt.add_argument('--batch_size', type=POSITIVE_INT, default=64, help='images per step')
    opt.add_argument('--optimizer', choices=OPTIMIZERS, default='sgd', help='sgd uses --momentum')
    opt.add_argument('--lr', type=POSITIVE, default=None,
                     help='the network\'s peak learning rate (%s)' % stage_default('lr'))
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
    opt.add_argument('--min_warmup_steps', type=NON_NEGATIVE_INT, default=None,
                     help='the fewest steps of the default warm-up, however short the epoch (a --warmup given is '
                          'taken as it is) (%s)' % stage_default('min_warmup_steps'))
    opt.add_argument('--min_epoch_steps', type=NON_NEGATIVE_INT, default=200,
                     help='the fewest steps of an epoch: a smaller training set is passed over several times an '
                          'epoch (0: one pass)')
    opt.add_argument('--lr_final', type=NON_NEGATIVE, default=0.0,
                     help='the last rate of cosine, linear and onecycle, as a fraction of --lr')
    opt.add_argument('--lr_step', type=POSITIVE_INT, default=8, help='step: multiply lr by lr_factor every N epochs')
    opt.add_argument('--lr_factor', type=POSITIVE, default=0.1, help='see --lr_step')
    opt.add_argument('--wd', type=NON_NEGATIVE, default=5e-4, help='weight decay')
    opt.add_argument('--seed', type=NON_NEGATIVE_INT, default=42, help='initial weights, batch order, shifts')
    opt.add_argument('--shift', type=NON_NEGATIVE_INT, default=None,
                     help='augment: translate each training image by up to N pixels each way (0: off; default: '
                          '2, and 0 for the face networks, as insightface trains)')
    opt.add_argument('--mirror', type=str2bool, default=None,
                     help='augment: mirror a random half of the training images left to right (default: True for '
                          'the face networks, iresnet* and mobilefacenet, as insightface trains; False for the '
                          'others: a mirrored digit or letter is another character); recorded')


def _center_loss(p):
    """The center loss's lambda, alpha and update."""
    cl = p.add_argument_group('center loss')
    cl.add_argument('--lmbd', type=NON_NEGATIVE, default=None,
                    help='lambda: weight of the center loss (default: 1.0; 0.003 for the face networks, the '
                         'paper\'s for faces)')
    cl.add_argument('--lmbd_warmup', type=NON_NEGATIVE, default=0.0,
                    help='epochs over which the pull of the center loss on the features grows from 0 to lmbd '
                         '(the centers learn at alpha from the start)')
    cl.add_argument('--alpha', type=POSITIVE, default=0.5, help='alpha: learning rate of the centers')
    cl.add_argument('--center_update', choices=UPDATES, default='gradient',
                    help='gradient: balanced loss, centers by SGD at alpha; paper: Eq. 4 of the paper')


def _network(p):
    """The network and the classes it trains on."""
    net = p.add_argument_group('network and classes (later stages take these from the checkpoint)')
    net.add_argument('--model', choices=sorted(MODELS), default=None,
                     help='the paper\'s LeNet++, the original port\'s LeNet, or a model-zoo ResNet (default: lenet++)')
    net.add_argument('--act', choices=ACTIVATIONS, default=None, help='LeNet\'s activation (default: leaky)')
    net.add_argument('--feature_size', type=POSITIVE_INT, default=None,
                     help='the features center loss acts on (default: 2, to draw them as the paper does)')
    net.add_argument('--head', choices=HEADS, default=None,
                     help='the class layer: softmax (a dense layer), or a margin head of margins.py, whose '
                          'scale and margin default to its paper\'s (default: softmax)')
    net.add_argument('--scale', type=POSITIVE, default=None,
                     help='a margin head\'s scale s (default: its paper\'s; SphereFace: the features\' norm)')
    net.add_argument('--margin', type=NON_NEGATIVE, default=None,
                     help='a margin head\'s margin m (default: its paper\'s: CosFace 0.35, ArcFace 0.5, '
                          'SphereFace 4)')
    net.add_argument('--num_classes', type=POSITIVE_INT, default=None,
                     help='outputs of the class layer (default: the data\'s classes, less those of --holdout)')
    net.add_argument('--holdout', type=class_ids, default=None,
                     help='class ids kept out of training, e.g. 5,6,7,8,9: both stages train on the other classes '
                          '(at least two), whose test images give the accuracy; --verify measures on the held-out '
                          'ones (default: none; with your own images, the test classes with no training images)')


def _evaluation(p):
    """What is measured and drawn."""
    ev = p.add_argument_group('evaluation and output')
    ev.add_argument('--eval_method', choices=EVAL_METHODS, default=None,
                    help='accuracy that picks the best checkpoint (default: softmax for the first stage, '
                         'center for the second) and that --test prints (default: all three)')
    ev.add_argument('--checkpoint', choices=('best', 'last'), default='best',
                    help='the checkpoint --second_train starts from and --test, --verify, --export and --compare '
                         'read: best (by --eval_method on the test set) or last (the stage\'s end: no choice made on '
                         'test images)')
    ev.add_argument('--knn_k', type=POSITIVE_INT, default=10, help='neighbours for --eval_method knn')
    ev.add_argument('--pairs', default=None,
                    help='--verify on this pair list instead: LFW\'s pairs.txt format, or an insightface .bin '
                         '(default: all pairs of the test images)')
    ev.add_argument('--pairs_dir', default=None,
                    help='the folder of class folders a pairs.txt names (default: the test/ folder of the '
                         'data the checkpoint was trained on)')
    ev.add_argument('--export', default=None, metavar='DIR',
                    help='with --test or --verify: write each run\'s test features, labels and class names to '
                         'DIR/<prefix>/ as embeddings.npz and TensorBoard projector files (tensors.tsv, metadata.tsv) '
                         '(default: none written)')
    ev.add_argument('--plotting', dest='plotting', action='store_true', default=True,
                    help='feature-map PNG per epoch and GIFs (on by default)')
    ev.add_argument('--no_plotting', dest='plotting', action='store_false', help='no pictures')
    ev.add_argument('--frames', type=number(int, above=0, at_most=1000), default=20,
                    help='at least this many frames in each GIF: with fewer epochs, frames are drawn within them')


def _use(p):
    """A trained network used on other images, or exported."""
    use = p.add_argument_group('a trained network out of the trainer (alone; the checkpoint of --prefix and '
                               '--checkpoint)')
    use.add_argument('--export_model', default=None, metavar='DIR',
                     help='write the embedding network (no class layer) to DIR as <prefix>-symbol.json and '
                          '<prefix>-0000.params (gluon.SymbolBlock.imports), <prefix>.onnx and <prefix>.json (what '
                          'it takes and gives): it takes pixels 0..255 and normalises them itself; each file is '
                          'checked against the trainer on a batch (default: none written)')
    use.add_argument('--embed', nargs='+', default=None, metavar='PATH',
                     help='the features of these images and folders (walked; a class: the folder\'s name) in '
                          '<out_dir>/<prefix>-embeddings/: embeddings.npz, tensors.tsv, metadata.tsv (default: none)')
    use.add_argument('--match', nargs=2, default=None, metavar='IMAGE',
                     help='compare two images: their cosine similarity and "same" or "different" at the '
                          'threshold --verify recorded for this checkpoint at --far, one line (default: none)')
    use.add_argument('--far', type=float, choices=FARS, default=1e-3, help='--match: the FAR whose threshold decides')
    use.add_argument('--threshold', type=number(float), default=None,
                     help='--match: decide at this cosine similarity instead (default: the one --verify recorded)')


def _device(p):
    """Devices, workers and precision."""
    dev = p.add_argument_group('device')
    dev.add_argument('--use_gpu', type=str2bool, default=True, help='False forces the CPU')
    dev.add_argument('--gpus', default=None,
                     help='GPU indices, e.g. 0 or 0,1 for data-parallel training (default: gpu 0 if MXNet sees one)')
    dev.add_argument('--kvstore', default='device', choices=KVSTORES,
                     help='how gradients are summed over devices (local, device) or over worker processes '
                          '(dist_sync, dist_device_sync: start those with python -m devices.launch)')
    dev.add_argument('--precision', default='auto', choices=PRECISIONS,
                     help='bfloat16: convolutions in bfloat16 (oneDNN, fp32 weights, updates and features); '
                          'auto (default): whichever trains faster here, measured once and cached (devices/precision.py); '
                          'a continued stage keeps its checkpoint\'s')


def given_flags(parser, argv):
    """The destinations of the flags ``argv`` gives, whatever their values (a default given again counts)."""
    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(argv)))


def parse(description, argv):
    """(the parsed flags, the names of those given on the command line) of the list ``argv``, after the
    checks no single flag can make; the flags are read, never written, from then on."""
    p = build_parser(description)
    args = p.parse_args(argv)
    # a flag that needs another names it, before the general "nothing to do"
    if args.allow_changes and not args.resume:
        p.error('--allow_changes lets --resume change the run it continues: add --resume')
    if args.export and not (args.test or args.verify):
        p.error('--export writes the features of --test or --verify: add one of them')
    use = [flag for flag in ('export_model', 'embed', 'match') if getattr(args, flag) is not None]
    others = [flag for flag in ('train', 'second_train', 'test', 'verify', 'compare', 'resume') if getattr(args, flag)]
    if use and others:
        p.error('--%s uses a trained checkpoint alone: run it after --%s, not with it' % (use[0], others[0]))
    if (args.threshold is not None or '--far' in argv) and not args.match:
        p.error('--%s is for --match' % ('threshold' if args.threshold is not None else 'far'))
    if not (use or others):
        p.error('nothing to do: pass --train [--center_loss], --second_train, --test, --verify, --compare, --resume, '
                '--export_model, --embed or --match')
    prefixes = named_prefixes(args.prefix)
    if len(prefixes) > 1:
        if args.train or args.second_train or args.test or args.resume or use:
            p.error('--prefix %s: several prefixes only with --verify and/or --compare alone' % args.prefix)
        if len(set(prefixes)) != len(prefixes):
            p.error('--prefix %s names a run twice' % args.prefix)
    if len(prefixes) == 1 and args.compare and not (args.train or args.second_train or args.test or args.verify
                                                    or args.resume):
        p.error('--compare --prefix %s: name two runs or more (A,B) to draw them side by side, or none for the '
                'three of the original port\'s figure' % args.prefix)
    for prefix in prefixes:
        if not prefix or os.sep in prefix or '/' in prefix or prefix.startswith('.'):
            p.error('--prefix %r must be a plain name: no path separator, not starting with "."' % prefix)
    if args.kvstore.startswith('dist') and args.train and args.second_train:
        p.error('with --kvstore %s run one stage per launch' % args.kvstore)
    return args, given_flags(p, argv)


def named_prefixes(value):
    """The runs --prefix names: [] for none, one, or several separated by commas."""
    return [] if value is None else [v.strip() for v in value.split(',')]
