"""Softmax and center loss (Wen et al., ECCV 2016) on MNIST with MXNet Gluon.

    python main.py --train --center_loss   # stage 1: softmax + lmbd * center loss
    python main.py --second_train          # stage 2: center loss alone, centers frozen
    python main.py --test                  # softmax, nearest-center and k-NN accuracy
"""
import argparse
import os
import sys
import time

try:
    import compat  # before mxnet: numpy alias, thread count, CUDA libraries
except ImportError as e:  # a set-up problem, not a bug: say what to install
    print('error: %s' % e, file=sys.stderr)
    sys.exit(2)

import numpy as np
import mxnet as mx
from mxnet import autograd, gluon, nd
from tqdm import tqdm

import utils
from center_loss import CenterLoss, UPDATES
from models import ACTIVATIONS, MODELS, get_model
from utils import UserError

EVAL_METHODS = ('softmax', 'center', 'knn')
KVSTORES = ('device', 'local', 'dist_sync', 'dist_device_sync')
PRECISIONS = ('auto', 'float32', 'bfloat16')
# The rows of --compare: the three runs of the original port's figure.
COMPARED = [('softmax', 'softmax'), ('center-loss', 'softmax + center loss'),
            ('center-loss-second', 'center loss only (second stage)')]
# Flags that fix the network's shape: a later stage takes them from the checkpoint.
ARCH_DEFAULTS = {'model': 'lenet++', 'act': 'leaky', 'feature_size': 2, 'num_classes': 10}


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


def positive(kind):
    def parse(value):
        try:
            v = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError('expected a %s, got %r' % (kind.__name__, value))
        if not v > 0:
            raise argparse.ArgumentTypeError('must be > 0, got %r' % value)
        return v
    return parse


def non_negative(value):
    v = float(value)
    if v < 0:
        raise argparse.ArgumentTypeError('must be >= 0, got %r' % value)
    return v


def non_negative_int(value):
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError('expected a whole number, got %r' % value)
    if number < 0:
        raise argparse.ArgumentTypeError('must be 0 or more, got %r' % value)
    return number


def parse_args(argv=None):
    p = Parser(prog='main.py', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_argument_group('what to do (any combination, run in this order)')
    mode.add_argument('--train', action='store_true', help='first stage: softmax (+ center loss with --center_loss)')
    mode.add_argument('--center_loss', action='store_true', help='add lmbd * center loss to the first stage')
    mode.add_argument('--second_train', action='store_true',
                      help='second stage: center loss alone, centers frozen, from the first stage\'s best checkpoint')
    mode.add_argument('--test', action='store_true', help='evaluate the best checkpoint of the last stage named')
    mode.add_argument('--compare', action='store_true',
                      help='draw output/comparison-<dataset>.png: train and test feature maps of the softmax, '
                           'center-loss and center-loss-second checkpoints, one row each')
    mode.add_argument('--resume', action='store_true',
                      help='continue the stage(s) from their last checkpoint (after Ctrl-C or a crash)')

    files = p.add_argument_group('files')
    files.add_argument('--prefix', default=None,
                       help='name of the first stage (default: center-loss with --center_loss or with '
                            '--second_train/--test alone, else softmax); the second stage is <prefix>-second')
    files.add_argument('--ckpt_dir', default='ckpt')
    files.add_argument('--out_dir', default='output')
    files.add_argument('--dataset', default='mnist', choices=sorted(utils.SHA256))
    files.add_argument('--data_dir', default=None, help='directory with the four IDX files (.gz or raw)')
    files.add_argument('--train_samples', type=positive(int), default=None, help='use the first N training images')
    files.add_argument('--test_samples', type=positive(int), default=None, help='use the first N test images')

    opt = p.add_argument_group('optimisation')
    opt.add_argument('--epochs', type=positive(int), default=20)
    opt.add_argument('--batch_size', type=positive(int), default=128)
    opt.add_argument('--optimizer', choices=('sgd', 'adam'), default='sgd', help='sgd uses --momentum')
    opt.add_argument('--lr', type=positive(float), default=0.01)
    opt.add_argument('--momentum', type=non_negative, default=0.9)
    opt.add_argument('--lr_step', type=positive(int), default=8, help='multiply lr by lr_factor every N epochs')
    opt.add_argument('--lr_factor', type=positive(float), default=0.1)
    opt.add_argument('--wd', type=non_negative, default=5e-4, help='weight decay')
    opt.add_argument('--seed', type=int, default=42)
    opt.add_argument('--shift', type=non_negative_int, default=2,
                     help='augment: translate each training image by up to N pixels each way (0: off)')

    cl = p.add_argument_group('center loss')
    cl.add_argument('--lmbd', type=non_negative, default=1.0, help='lambda: weight of the center loss')
    cl.add_argument('--alpha', type=positive(float), default=0.5, help='alpha: learning rate of the centers')
    cl.add_argument('--center_update', choices=UPDATES, default='gradient',
                    help='gradient: balanced loss, centers by SGD at alpha; paper: Eq. 4 of the paper')

    net = p.add_argument_group('network (later stages take these from the checkpoint)')
    net.add_argument('--model', choices=sorted(MODELS), default=None, help='default lenet++')
    net.add_argument('--act', choices=ACTIVATIONS, default=None, help='default leaky')
    net.add_argument('--feature_size', type=positive(int), default=None, help='default 2')
    net.add_argument('--num_classes', type=positive(int), default=None, help='default 10')

    ev = p.add_argument_group('evaluation and output')
    ev.add_argument('--eval_method', choices=EVAL_METHODS, default=None,
                    help='accuracy that picks the best checkpoint (default: softmax for the first stage, '
                         'center for the second) and that --test prints (default: all three)')
    ev.add_argument('--knn_k', type=positive(int), default=10, help='neighbours for --eval_method knn')
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
                          'auto (default): bfloat16 on a CPU with AVX512-BF16 or AMX, else float32')

    args = p.parse_args(argv)
    if not (args.train or args.second_train or args.test or args.compare):
        p.error('nothing to do: pass --train [--center_loss], --second_train, --test and/or --compare')
    if args.prefix is None:
        args.prefix = 'softmax' if args.train and not args.center_loss else 'center-loss'
    if args.kvstore.startswith('dist') and args.train and args.second_train:
        p.error('with --kvstore %s run one stage per launch' % args.kvstore)
    if not args.prefix or os.sep in args.prefix or '/' in args.prefix or args.prefix.startswith('.'):
        p.error('--prefix %r must be a plain name: no path separator, not starting with "."' % args.prefix)
    return args


def get_contexts(args):
    """The devices to train on: [cpu()], [gpu(0)] or several GPUs for data parallelism."""
    if not args.use_gpu:
        return [mx.cpu()]
    num_gpus = mx.context.num_gpus()
    if args.gpus is None:
        return [mx.gpu(0)] if num_gpus > 0 else [mx.cpu()]
    try:
        ids = [int(i) for i in args.gpus.split(',') if i.strip()]
    except ValueError:
        raise UserError('--gpus %r: expected indices such as 0 or 0,1' % args.gpus)
    bad = [i for i in ids if not 0 <= i < num_gpus]
    if not ids or bad or len(set(ids)) != len(ids):
        raise UserError('--gpus %s: MXNet sees %d GPU(s)%s' % (
            args.gpus, num_gpus, '' if num_gpus else ' (CPU build, or no driver): use --use_gpu False'))
    return [mx.gpu(i) for i in ids]


def setup_precision(args, ctxs):
    """Resolve --precision and, for bfloat16, switch on MXNet's mixed precision.

    Only the convolutions run in bfloat16 (inputs and weights cast on the fly,
    fp32 accumulation in oneDNN); the weights, their updates, the 2-D feature
    and class layers and both losses stay float32. On a CPU with bfloat16
    instructions this nearly doubles the speed of a LeNet++ step, whose fp32
    convolutions already run near the CPU's peak (see bench/speed.py).
    """
    on_cpu = ctxs[0].device_type == 'cpu'
    if args.precision == 'auto':
        args.precision = 'bfloat16' if on_cpu and compat.cpu_has_bf16() else 'float32'
    elif args.precision == 'bfloat16':
        if not on_cpu:
            raise UserError('--precision bfloat16 is for the CPU (oneDNN); on %s use float32' % ctxs[0])
        if not compat.cpu_has_bf16():
            raise UserError('this CPU has no bfloat16 instructions (avx512_bf16 or amx_bf16): '
                            'use --precision float32')
    if args.precision == 'bfloat16':
        from mxnet.contrib import amp
        amp.init(target_dtype='bfloat16', target_precision_ops=['Convolution'])  # before any network exists


def setup_workers(args):
    """Rank and number of worker processes; a distributed KVStore when asked for."""
    args.kv, args.rank, args.num_workers = None, 0, 1
    if args.kvstore.startswith('dist'):
        if 'DMLC_ROLE' not in os.environ:
            raise UserError('--kvstore %s needs a scheduler and servers: start the workers with '
                            '`python launch.py -n 2 -- python main.py ...`' % args.kvstore)
        args.kv = mx.kv.create(args.kvstore)
        args.rank, args.num_workers = args.kv.rank, args.kv.num_workers


# --------------------------------------------------------------------------- data and model

def load_data(args, ctx):
    """Train and test arrays on ``ctx``; with several workers, this worker's shard of the training set."""
    directory = utils.find_data(args.dataset, args.data_dir)
    train_img, train_lbl = utils.load_split(directory, 'train')
    test_img, test_lbl = utils.load_split(directory, 'test')
    train_img, train_lbl = train_img[:args.train_samples], train_lbl[:args.train_samples]
    test_img, test_lbl = test_img[:args.test_samples], test_lbl[:args.test_samples]
    top = int(max(train_lbl.max(), test_lbl.max()))
    if top >= args.num_classes:
        raise UserError('labels go up to %d but --num_classes is %d' % (top, args.num_classes))
    # Normalise with the training set's own statistics, whatever the dataset.
    mean, std = train_img.mean() / 255.0, train_img.std() / 255.0
    if args.num_workers > 1:
        train_img, train_lbl = train_img[args.rank::args.num_workers], train_lbl[args.rank::args.num_workers]
    train_x, train_y = utils.to_nd(train_img, train_lbl, mean, std, ctx)
    test_x, test_y = utils.to_nd(test_img, test_lbl, mean, std, ctx)
    print('data: %s from %s, %d train / %d test images%s' % (
        args.dataset, directory, len(train_lbl), len(test_lbl),
        ' (shard %d of %d)' % (args.rank, args.num_workers) if args.num_workers > 1 else ''))
    return dict(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                class_names=utils.CLASS_NAMES[args.dataset], background=float(-mean / std))


def resolve_arch(args, meta=None):
    """Fill model/act/feature_size/num_classes from a checkpoint or the defaults;
    a value given on the command line must agree with the checkpoint."""
    for key, default in ARCH_DEFAULTS.items():
        given = getattr(args, key)
        if meta is None:
            setattr(args, key, default if given is None else given)
        elif given is not None and given != meta[key]:
            raise UserError('the checkpoint was made with --%s %s, not %s: drop the flag or retrain'
                            % (key, meta[key], given))
        else:
            setattr(args, key, meta[key])


def build_net(args, ctxs):
    net = get_model(args.model, args.num_classes, args.feature_size, args.act)
    net.initialize(mx.init.Xavier(magnitude=2.24), ctx=ctxs)
    net(nd.zeros((1, 1, 28, 28), ctx=ctxs[0]))  # settle deferred shapes so a checkpoint can be checked
    net.hybridize(static_alloc=True, static_shape=True)
    return net


def ckpt_path(args, prefix, tag):
    return os.path.join(args.ckpt_dir, '%s-%s.params' % (prefix, tag))


def load_stage(args, prefix, ctxs, make_hint):
    arrays, meta = utils.load_checkpoint(ckpt_path(args, prefix, 'best'), make_hint)
    try:
        resolve_arch(args, meta)
    except KeyError:
        raise UserError('%s lacks its description; retrain to make it again' % ckpt_path(args, prefix, 'best'))
    net = build_net(args, ctxs)
    utils.restore_net(net, arrays)
    return net, arrays['centers'].as_in_context(ctxs[0]), meta


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


# --------------------------------------------------------------------------- training

def arch_source(args):
    """The checkpoint this command continues from, or None for a fresh first stage."""
    if args.train:
        last = ckpt_path(args, args.prefix, 'last')
        return last if args.resume and os.path.isfile(last) else None
    if args.compare and not (args.second_train or args.test):
        found = [p for p in (ckpt_path(args, r, 'best') for r, _ in COMPARED) if os.path.isfile(p)]
        return found[0] if found else None
    second_last = ckpt_path(args, args.prefix + '-second', 'last')
    if args.second_train and args.resume and os.path.isfile(second_last):
        return second_last
    return ckpt_path(args, args.prefix, 'best')


def first_stage_hint(args, prefix=None):
    """': run `...` first', the command that makes checkpoint ``prefix``."""
    prefix = prefix or args.prefix
    if prefix.endswith('-second'):
        base = prefix[:-len('-second')]
        cmd = '--second_train' + ('' if base == 'center-loss' else ' --prefix ' + base)
    elif prefix == 'softmax':
        cmd = '--train'
    else:
        cmd = '--train --center_loss' + ('' if prefix == 'center-loss' else ' --prefix ' + prefix)
    return ': run `python main.py %s` first' % cmd


def train_stage(args, data, ctxs, stage, may_resume):
    """Train one stage; returns the prefix its checkpoints were saved under.

    With ``may_resume`` the stage continues from ``<prefix>-last.params``
    (network, centers, optimizer states, history) at the next epoch.
    """
    second = stage == 'second'
    prefix = args.prefix + '-second' if second else args.prefix
    last_path, best_path = ckpt_path(args, prefix, 'last'), ckpt_path(args, prefix, 'best')
    state = None
    if may_resume:
        arrays, state = utils.load_checkpoint(last_path, ': nothing to resume; drop --resume to start the stage')
        resolve_arch(args, state)
        net = build_net(args, ctxs)
        utils.restore_net(net, arrays)
        centers = arrays['centers'].as_in_context(ctxs[0])
        if state['epoch'] >= args.epochs:
            print('%s is complete (%d epochs); nothing to resume' % (prefix, state['epoch']))
            return prefix
        print('resuming %s after epoch %d from %s' % (prefix, state['epoch'], last_path))
    elif second:
        net, centers, first_meta = load_stage(args, args.prefix, ctxs, first_stage_hint(args))
        print('second stage from %s (epoch %d), centers frozen'
              % (ckpt_path(args, args.prefix, 'best'), first_meta['epoch']))
    else:
        net = build_net(args, ctxs)
    metric = args.eval_method or ('center' if second else 'softmax')

    use_center = second or args.center_loss
    center_loss, center_trainer = None, None
    if use_center:
        center_loss = CenterLoss(args.num_classes, args.feature_size, args.lmbd, update=args.center_update)
        center_loss.initialize(mx.init.Normal(0.01), ctx=ctxs)
        if second or state is not None:
            center_loss.centers.weight.set_data(centers)
        if second:
            center_loss.collect_params().setattr('grad_req', 'null')
        else:  # the centers' own plain SGD at rate alpha, whatever the network's schedule
            center_trainer = gluon.Trainer(center_loss.collect_params(), 'sgd',
                                           {'learning_rate': args.alpha, 'momentum': 0.0, 'wd': 0.0},
                                           kvstore=None if args.kv else args.kvstore)
    if second:
        # Only the center loss drives this stage: the class layer keeps the first
        # stage's weights (no weight decay on it either), so softmax accuracy
        # still reads off the moved features.
        net.output.collect_params().setattr('grad_req', 'null')
    params = {k: v for k, v in net.collect_params().items() if v.grad_req != 'null'}
    opt_params = {'learning_rate': args.lr, 'wd': args.wd}
    if args.optimizer == 'sgd':
        opt_params['momentum'] = args.momentum
    trainer = gluon.Trainer(params, args.optimizer, opt_params, kvstore=None if args.kv else args.kvstore)
    reducer = None
    if args.kv:
        # Across workers one Trainer sums every gradient, the network's and the
        # centers', over devices and workers through the distributed KVStore
        # (Trainers number their KVStore keys from 0, so two would collide); it
        # never updates (update_on_kvstore=False): the two Trainers above update
        # locally, so the learning-rate schedule and the centers' alpha stay ours.
        reducer = gradient_reducer(args.kv, params, center_loss.collect_params() if center_trainer else {})
    if state is not None:
        utils.restore_trainer(trainer, arrays, 'net')
        if center_trainer is not None:
            utils.restore_trainer(center_trainer, arrays, 'centers')
    objective = Objective(net, center_loss, softmax=not second)
    objective.hybridize(static_alloc=True, static_shape=True)

    os.makedirs(args.ckpt_dir, exist_ok=True)
    os.makedirs(args.out_dir, exist_ok=True)
    if state is None and args.rank == 0:
        utils.remove_outputs(args.out_dir, prefix)
    n = data['train_x'].shape[0]
    plot_idx = plot_sample(n, args.seed)
    projection = utils.Projection(**(state or {}).get('projection', {}))
    history = state['history'] if state else []
    best = state['best'] if state else -1.0
    title = {'first': 'softmax + center loss' if use_center else 'softmax', 'second': 'center loss only'}[stage]
    print('%s stage "%s": %s, %d epochs, lr %g (x%g every %d), batch %d, shifts up to %d px%s'
          % (stage, prefix, title, args.epochs, args.lr, args.lr_factor, args.lr_step, args.batch_size, args.shift,
             ', lmbd %g, alpha %g, %s update' % (args.lmbd, args.alpha, args.center_update) if use_center else ''))

    for epoch in range(len(history) + 1, args.epochs + 1):
        lr = args.lr * args.lr_factor ** ((epoch - 1) // args.lr_step)
        trainer.set_learning_rate(lr)
        tic = time.time()
        sums, train_feat = train_epoch(args, data, ctxs, objective, trainer, center_trainer, epoch, prefix,
                                       reducer)
        train_time = time.time() - tic
        if args.rank != 0:  # the other workers train on their shards; the first evaluates, saves and draws
            print('[%s] worker %d: epoch %2d/%d  train acc %.4f on its shard  %.1fs'
                  % (prefix, args.rank, epoch, args.epochs, sums[2] / n, train_time))
            continue

        if use_center:
            centers = center_loss.centers.weight.data(ctxs[0])
        else:  # softmax alone has no centers: use the class means for nearest-center
            centers = utils.class_means(train_feat, data['train_y'], args.num_classes)
        test_scores, test_feat = utils.forward_all(net, data['test_x'])
        test_y = data['test_y']
        record = dict(epoch=epoch, lr=lr, loss_softmax=None if second else float(sums[0] / n),
                      loss_center=float(sums[1] / n) if use_center else None, train_acc=float(sums[2] / n),
                      test_acc_softmax=utils.accuracy(utils.predict_softmax(test_scores), test_y),
                      test_acc_center=utils.accuracy(utils.predict_center(test_feat, centers), test_y))
        if metric == 'knn':
            record['test_acc_knn'] = utils.accuracy(utils.predict_knn(
                test_feat, train_feat, data['train_y'], args.knn_k, args.num_classes), test_y)
        record.update(time=time.time() - tic, train_time=train_time)
        history.append(record)
        print('[%s] epoch %2d/%d  lr %.4g  loss: softmax %s center %s  train acc %.4f  test acc: softmax %.4f '
              'center %.4f%s  %.1fs (%d img/s)'
              % (prefix, epoch, args.epochs, lr,
                 '-' if record['loss_softmax'] is None else '%.4f' % record['loss_softmax'],
                 '-' if record['loss_center'] is None else '%.4f' % record['loss_center'],
                 record['train_acc'], record['test_acc_softmax'], record['test_acc_center'],
                 '  knn %.4f' % record['test_acc_knn'] if metric == 'knn' else '', record['time'],
                 n / train_time))

        if args.plotting:
            projection.fit(train_feat.asnumpy()[plot_idx])
            plot_epoch(args, data, prefix, title, stage, epoch, record, projection, plot_idx,
                       train_feat, test_feat, centers)
        improved = record['test_acc_' + metric] > best
        best = max(best, record['test_acc_' + metric])
        meta = dict(model=args.model, act=args.act, feature_size=args.feature_size,
                    num_classes=args.num_classes, dataset=args.dataset, stage=stage, prefix=prefix,
                    center_loss=use_center, precision=args.precision, epoch=epoch, metrics=record,
                    best=best, history=history, projection=projection.state())
        trainers = {'net': trainer}
        if center_trainer is not None:
            trainers['centers'] = center_trainer
        utils.save_checkpoint(last_path, net, centers, meta, trainers)
        if improved:
            utils.save_checkpoint(best_path, net, centers, meta)
        utils.write_json(os.path.join(args.out_dir, '%s-metrics.json' % prefix), history)

    if args.kv:  # dist_sync keeps every worker's copy identical: this lets one check it
        print('[%s] worker %d: parameter checksum %.10e' % (prefix, args.rank, param_checksum(net, center_loss)))
    if args.rank != 0:
        return prefix
    if args.plotting:
        for split in ('train', 'test'):
            frames = [frame_path(args, prefix, split, e) for e in range(1, args.epochs + 1)]
            utils.make_gif(os.path.join(args.out_dir, '%s-%s.gif' % (prefix, split)),
                           [f for f in frames if os.path.isfile(f)])
        utils.plot_curves(os.path.join(args.out_dir, '%s-curves.png' % prefix), history, '%s: %s' % (prefix, title))
        print('pictures: %s/%s-{train,test}.gif, %s-curves.png' % (args.out_dir, prefix, prefix))
    print('best test accuracy (%s) %.4f; checkpoints: %s, %s' % (metric, best, best_path, last_path))
    return prefix


def gradient_reducer(kvstore, *param_dicts):
    """A Trainer that only sums the gradients of all ``param_dicts`` through
    ``kvstore`` (``allreduce_grads``); Trainers without a KVStore then update."""
    reduced = {}
    for params in param_dicts:
        reduced.update(params)
    reducer = gluon.Trainer(reduced, 'sgd', {'learning_rate': 0.0}, kvstore=kvstore, update_on_kvstore=False)
    if not isinstance(kvstore, str) and kvstore.type.startswith('dist'):
        # The Trainer hands every worker rank 0's parameters (init, then pull)
        # lazily, just before its first gradient push on the same keys. In MXNet
        # 1.9 that push can overtake the pull (KVStoreDist aliases its send
        # buffer to the gradient), and a parameter then receives the summed
        # gradient instead: a worker that learns nothing, different parameters
        # on each worker, or NaN (5 runs of 31 of the two-worker test). So:
        # hand the parameters over now and wait until they have landed.
        reducer._init_kvstore()
        reducer._init_params()
        nd.waitall()
    return reducer


def param_checksum(*blocks):
    return float(sum(p.list_data()[0].abs().sum().asscalar()
                     for block in blocks if block is not None for p in block.collect_params().values()))


def train_epoch(args, data, ctxs, objective, trainer, center_trainer, epoch, prefix, reducer=None):
    """One pass over the shuffled training set.

    Returns (sums of softmax loss, center loss and correct predictions, as
    numpy) and the training features in the dataset's order, on ``ctx``.
    """
    train_x, train_y = data['train_x'], data['train_y']
    n, bs, ctx = train_x.shape[0], args.batch_size, ctxs[0]
    # Each epoch's order depends only on (seed, epoch): a resumed run sees the same batches.
    rng = np.random.RandomState([args.seed, epoch])
    order = rng.permutation(n)
    num_batches = (n + bs - 1) // bs
    if args.shift:  # one offset per sample and epoch, also from (seed, epoch)
        shifts = nd.array(rng.randint(-args.shift, args.shift + 1, size=(n, 2)), ctx=ctx)
    # Running sums and per-batch losses stay on the device: reading them back is a
    # sync point, so it happens every `sync_every` batches, not every batch.
    sums = nd.zeros((3,), ctx=ctx)                   # softmax loss, center loss, correct predictions
    batch_loss = nd.zeros((num_batches,), ctx=ctx)   # to name the batch where a loss went NaN
    feats, sync_every = [], 50
    bar = tqdm(range(num_batches), desc='%s %d/%d' % (prefix, epoch, args.epochs), leave=False, disable=None)
    for b in bar:
        idx = nd.array(order[b * bs:(b + 1) * bs], ctx=ctx, dtype='int32')
        x, y = nd.take(train_x, idx), nd.take(train_y, idx)
        if args.shift:
            x = utils.random_shift(x, shifts[b * bs:(b + 1) * bs], data['background'], args.shift)
        for loss, l_s, l_c, scores, features, y_dev in train_step(
                objective, trainer, center_trainer, x, y, ctxs, args.num_classes, reducer, args.num_workers):
            batch_loss[b] += loss.sum().as_in_context(ctx)
            sums += nd.concat(l_s.sum(), l_c.sum(), (nd.argmax(scores, axis=1) == y_dev).sum(),
                              dim=0).as_in_context(ctx)
            feats.append(features.as_in_context(ctx))
        if (b + 1) % sync_every == 0 or b + 1 == num_batches:
            bad = np.flatnonzero(~np.isfinite(batch_loss[:b + 1].asnumpy()))
            if len(bad):
                raise UserError('the loss became %s in epoch %d at batch %d of %d; the stage stopped and its '
                                'checkpoints of earlier epochs are kept: lower --lr%s'
                                % (batch_loss[int(bad[0])].asscalar(), epoch, bad[0] + 1, num_batches,
                                   ' or --lmbd' if objective.center_loss is not None else ''))
            s, seen = sums.asnumpy(), min((b + 1) * bs, n)
            bar.set_postfix(loss='%.4f' % ((s[0] + s[1]) / seen), acc='%.4f' % (s[2] / seen))
    bar.close()
    # Features of the training set as this epoch's forward passes saw them, in dataset order.
    train_feat = nd.take(nd.concat(*feats, dim=0), nd.array(np.argsort(order), ctx=ctx, dtype='int32'))
    return sums.asnumpy(), train_feat


def train_step(objective, trainer, center_trainer, x, y, ctxs, num_classes, reducer=None, num_workers=1):
    """Forward, backward and update on one batch, split across ``ctxs``.

    Gradients are summed over devices (and over workers by ``reducer``, a
    Trainer on the distributed KVStore) and divided by the whole batch size,
    so several devices take the same step as one. Returns [(loss, softmax
    loss, center loss, scores, features, labels)] per device, in batch order.
    """
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
    batch = x.shape[0] * num_workers
    if reducer is None:
        trainer.step(batch)
        if center_trainer is not None:
            center_trainer.step(batch)
    else:
        reducer.allreduce_grads()
        trainer.update(batch)
        if center_trainer is not None:
            center_trainer.update(batch)
    return [tuple(out) + (y_dev,) for out, y_dev in zip(outs, ys)]


def plot_sample(n, seed, size=10000):
    """Indices of the training points drawn: the same in every frame and in --compare."""
    return np.sort(np.random.RandomState(seed).choice(n, min(n, size), replace=False))


def frame_path(args, prefix, split, epoch):
    return utils.frame_path(args.out_dir, prefix, split, epoch)


def plot_epoch(args, data, prefix, title, stage, epoch, record, projection, plot_idx,
               train_feat, test_feat, centers):
    labels = {'train': data['train_y'].asnumpy().astype(int)[plot_idx],
              'test': data['test_y'].asnumpy().astype(int)}
    feats = {'train': train_feat.asnumpy()[plot_idx], 'test': test_feat.asnumpy()}
    accs = {'train': record['train_acc'], 'test': record['test_acc_softmax']}
    for split in ('train', 'test'):
        utils.plot_features(frame_path(args, prefix, split, epoch), projection(feats[split]), labels[split],
                            args.num_classes, '%s (%s stage), %s set, epoch %d, accuracy %.4f'
                            % (title, stage, split, epoch, accs[split]),
                            centers=projection(centers.asnumpy()), class_names=data['class_names'])


# --------------------------------------------------------------------------- test

def test(args, data, ctxs, prefix):
    """Accuracy of the best checkpoint of ``prefix`` by each evaluation method."""
    net, centers, meta = load_stage(args, prefix, ctxs, first_stage_hint(args, prefix))
    test_scores, test_feat = utils.forward_all(net, data['test_x'])
    nd.waitall()  # the times below are of the evaluation alone, once the features exist
    test_y = data['test_y']
    results = {}
    for method in ([args.eval_method] if args.eval_method else EVAL_METHODS):
        tic = time.time()
        if method == 'softmax':
            pred = utils.predict_softmax(test_scores)
        elif method == 'center':
            pred = utils.predict_center(test_feat, centers)
        else:  # the gallery: features of the whole training set
            _, train_feat = utils.forward_all(net, data['train_x'])
            nd.waitall()
            tic = time.time()
            pred = utils.predict_knn(test_feat, train_feat, data['train_y'], args.knn_k, args.num_classes)
        results[method] = utils.accuracy(pred, test_y)
        print('test %s (epoch %d): %s accuracy %.4f  (%.2fs)'
              % (prefix, meta['epoch'], method if method != 'knn' else 'knn (k=%d)' % args.knn_k,
                 results[method], time.time() - tic))
    return results


def compare(args, data, ctxs):
    """The original port's figure from the saved best checkpoints of the three runs."""
    rows = []
    n = data['train_x'].shape[0]
    plot_idx = plot_sample(n, args.seed)
    for prefix, title in COMPARED:
        path = ckpt_path(args, prefix, 'best')
        if not os.path.isfile(path):
            print('compare: skipping %s (%s not found%s)' % (prefix, path, first_stage_hint(args, prefix)))
            continue
        run_args = argparse.Namespace(**dict(vars(args), **{k: None for k in ARCH_DEFAULTS}))
        net, centers, meta = load_stage(run_args, prefix, ctxs, '')
        _, train_feat = utils.forward_all(net, data['train_x'])
        test_scores, test_feat = utils.forward_all(net, data['test_x'])
        projection = utils.Projection(**meta.get('projection', {})).fit(train_feat.asnumpy()[plot_idx])
        acc = utils.accuracy(utils.predict_softmax(test_scores), data['test_y'])
        rows.append(('%s (test acc %.4f)' % (title, acc),
                     {'train': (projection(train_feat.asnumpy()[plot_idx]),
                                data['train_y'].asnumpy().astype(int)[plot_idx]),
                      'test': (projection(test_feat.asnumpy()), data['test_y'].asnumpy().astype(int))},
                     projection(centers.asnumpy())))
    if not rows:
        raise UserError('--compare found none of %s in %s: train them first'
                        % (', '.join(p + '-best.params' for p, _ in COMPARED), args.ckpt_dir))
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, 'comparison-%s.png' % args.dataset)
    utils.plot_comparison(path, rows, args.num_classes, data['class_names'])
    print('comparison figure: %s (%d rows)' % (path, len(rows)))
    return path


def main(argv=None):
    args = parse_args(argv)
    try:
        ctxs = get_contexts(args)
        setup_precision(args, ctxs)
        setup_workers(args)
        print('mxnet %s (%s build), context %s, %s, OMP_NUM_THREADS=%s'
              % (mx.__version__, 'CUDA' if mx.runtime.Features().is_enabled('CUDA') else 'CPU',
                 ', '.join(str(c) for c in ctxs), args.precision, os.environ.get('OMP_NUM_THREADS')))
        if args.kv:
            print('worker %d of %d, kvstore %s' % (args.rank, args.num_workers, args.kvstore))
        mx.random.seed(args.seed)
        np.random.seed(args.seed)
        # A later stage takes the network's shape from its checkpoint: read it
        # before the data so that --num_classes is known when labels are checked.
        source = arch_source(args)
        resolve_arch(args, utils.load_checkpoint(source, first_stage_hint(args))[1] if source else None)
        data = load_data(args, ctxs[0])
        if args.test and args.knn_k > data['train_x'].shape[0] and args.eval_method in (None, 'knn'):
            raise UserError('--knn_k %d is larger than the %d training images it votes among'
                            % (args.knn_k, data['train_x'].shape[0]))
        prefix = args.prefix
        if args.train:
            prefix = train_stage(args, data, ctxs, 'first', args.resume)
        if args.second_train:
            # With --train --second_train --resume, a second stage that never started starts fresh.
            resume = args.resume and (not args.train or os.path.isfile(ckpt_path(args, prefix + '-second', 'last')))
            prefix = train_stage(args, data, ctxs, 'second', resume)
        if args.rank == 0:  # with several workers, the first alone evaluates and draws
            if args.test:
                test(args, data, ctxs, prefix)
            if args.compare:
                compare(args, data, ctxs)
    except UserError as e:
        print('error: %s' % e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = ' '.join(a for a in (argv if argv is not None else sys.argv[1:]) if a != '--resume')
        print('\ninterrupted: the last completed epoch is saved in %s; continue with\n'
              '  python main.py %s --resume' % (args.ckpt_dir, again), file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
