"""Softmax and center loss (Wen et al., ECCV 2016) on MNIST with MXNet Gluon.

    python main.py --train --center_loss   # stage 1: softmax + lmbd * center loss
    python main.py --second_train          # stage 2: center loss alone, centers frozen
    python main.py --test                  # softmax, nearest-center and k-NN accuracy
    python main.py --verify                # open-set: pairs of unseen classes (with --holdout)
    python main.py --resume                # continue the run interrupted last, exactly as it was
"""
import dataclasses
import os
import sys

if __name__ == '__main__':  # Ctrl-C while mxnet loads (below): one line, not the import's traceback
    __import__('errors').quiet_ctrl_c_while_loading()

try:
    import compat  # noqa: F401  (before mxnet: numpy alias, thread count, CUDA libraries)
except ImportError as e:  # a set-up problem, not a bug: say what to install
    print('error: %s' % e, file=sys.stderr)
    sys.exit(2)

import numpy as np
import mxnet as mx

import argtypes
import commands
import data
import records
from checkpoints import CheckpointError, arch_of, load_checkpoint
from errors import (EXIT_DIVERGED, EXIT_INT, EXIT_IO, EXIT_PIPE, EXIT_TERM, EXIT_USAGE, Diverged,  # noqa: F401
                    SaveError, UserError, stdout_closed, stopped, stops_handled)  # (statuses: main's, for callers)
from models import ARCH_DEFAULTS, check_arch, new_arch
from pairs import read_pairs
from parallel import setup_workers
from runfiles import NOTHING_TO_RESUME, RunFiles, interrupted
from runlock import lock_run, unlock_all, writable_folder
from runtime import get_contexts, gpu_cards, setup_runtime
from sources import SourceError
from train import build_stage, run_stage
from utils import DataError

# Each stage's own defaults for the flags of its schedule, chosen by the search in docs/time-to-accuracy.md
# (every floor at each stage's last epoch in 6 + 2 epochs) and, for the floors in steps that keep them safe
# on a few hundred images, by the set sizes of docs/own-data.md.
STAGE_DEFAULTS = {'first': dict(epochs=6, lr=0.025, lr_schedule='cosine', warmup=0.5, min_warmup_steps=250),
                  'second': dict(epochs=2, lr=0.01, lr_schedule='cosine', warmup=0.0, min_warmup_steps=0)}
STAGE_FLAGS = ('epochs', 'lr', 'lr_schedule', 'warmup', 'min_warmup_steps')
OPTIM = [f.name for f in dataclasses.fields(records.Optim)]
CENTER = [f.name for f in dataclasses.fields(records.Center)]
DATA = [f.name for f in dataclasses.fields(records.Data)]


def build_parser():
    return argtypes.build_parser(__doc__, STAGE_DEFAULTS, data.DATASETS, commands.EVAL_METHODS)


def parse_args(argv):
    """(the parsed flags, the names of those given on the command line) of the list ``argv``."""
    p = build_parser()
    args = p.parse_args(argv)
    # a flag that needs another names it, before the general "nothing to do"
    if args.allow_changes and not args.resume:
        p.error('--allow_changes lets --resume change the run it continues: add --resume')
    if args.export and not (args.test or args.verify):
        p.error('--export writes the features of --test or --verify: add one of them')
    if not (args.train or args.second_train or args.test or args.verify or args.compare or args.resume):
        p.error('nothing to do: pass --train [--center_loss], --second_train, --test, --verify, --compare or --resume')
    args.prefixes = None if args.prefix is None else [v.strip() for v in args.prefix.split(',')]
    if args.prefixes and len(args.prefixes) > 1:
        if args.train or args.second_train or args.test or args.resume:
            p.error('--prefix %s: several prefixes only with --verify and/or --compare alone' % args.prefix)
        if len(set(args.prefixes)) != len(args.prefixes):
            p.error('--prefix %s names a run twice' % args.prefix)
    for prefix in args.prefixes or []:
        if not prefix or os.sep in prefix or '/' in prefix or prefix.startswith('.'):
            p.error('--prefix %r must be a plain name: no path separator, not starting with "."' % prefix)
    head = args.train and args.head not in (None, 'softmax') and args.head  # a head's run is not filed as softmax's
    args.prefix = args.prefixes[0] if args.prefixes else head + ('-center' if args.center_loss else '') if head else \
        'softmax' if args.train and not args.center_loss else 'center-loss'
    if args.kvstore.startswith('dist') and args.train and args.second_train:
        p.error('with --kvstore %s run one stage per launch' % args.kvstore)
    return args, argtypes.given_flags(p, argv)


# --------------------------------------------------------------------------- the run's records

def interrupted_run(args):
    """--resume with no stage named: (train, second_train, prefix) of the stage whose last checkpoint was
    written last (of --prefix, when given)."""
    files = interrupted(args.ckpt_dir, args.out_dir, args.prefix if args.prefixes else None)
    if files is None:
        raise UserError('--resume: no last checkpoint in %s%s: nothing to resume' % (
            args.ckpt_dir, ' for --prefix %s' % args.prefix if args.prefixes else ''))
    return not files.is_second, files.is_second, files.first().prefix


def stage_records(args, given, kind, source, first=None):
    """(records.Optim, records.Center) of a stage of ``kind``: a resumed stage's are what it recorded,
    and a flag given that would change them is refused (or, with --allow_changes, applied and said);
    a new stage's are the flags', with the stage's defaults for the schedule, and a second stage
    takes the rest from ``first``, the first stage's records."""
    resumed = args.resume and source is not None and source.path.endswith('-last.params')
    optim = records.recorded(source.meta, 'optim', records.Optim) if resumed else None
    center = records.recorded(source.meta, 'center', records.Center) if resumed else None
    flags = {k: getattr(args, k) for k in OPTIM + CENTER if k in given}
    if optim is not None and center is not None:
        changes = records.differences(optim, {k: v for k, v in flags.items() if k in OPTIM}) + \
            records.differences(center, {k: v for k, v in flags.items() if k in CENTER})
        if changes and not args.allow_changes:
            flag, was, now = changes[0]
            raise UserError('%s: %s records %s, and --resume continues exactly that run: drop the flag, or add '
                            '--allow_changes to change it' % (records.flag_text(flag, now), source.path,
                                                              records.flag_text(flag, was)))
        for flag, was, now in changes:
            print('resume: %s instead of the recorded %s' % (records.flag_text(flag, now),
                                                             records.flag_text(flag, was)))
    else:
        if resumed:  # a checkpoint of format 2 or older
            print('resume: %s records no schedule (an earlier version): the flags given and the defaults' % source.path)
        defaults = dict(STAGE_DEFAULTS[kind], min_warmup_steps=0) if 'warmup' in given else STAGE_DEFAULTS[kind]
        values = {k: getattr(args, k) for k in OPTIM + CENTER}
        if first is not None:  # a second stage continues the first stage's run: its seed, batch, optimizer ...
            values.update(records.to_json(first[0]), **records.to_json(first[1]))
            values.update({k: getattr(args, k) for k in OPTIM + CENTER if k in given})
        values.update({k: defaults[k] for k in STAGE_FLAGS if k not in given})
        values['center_loss'] = kind == 'second' or bool(values['center_loss'])
        optim = records.Optim(**{k: values[k] for k in OPTIM})
        center = records.Center(**{k: values[k] for k in CENTER})
    return (dataclasses.replace(optim, **{k: v for k, v in flags.items() if k in OPTIM}),
            dataclasses.replace(center, **{k: v for k, v in flags.items() if k in CENTER}))


def data_record(args, given, source):
    """The records.Data of this command: a checkpoint's own when it starts from one (a --dataset or
    --data_dir that names other data is refused; --train_samples and --test_samples may differ, but
    not on --resume), else the flags'."""
    flags = {k: getattr(args, k) for k in DATA if k in given}
    if source is None:
        return data.settle(records.Data(**flags))
    spec = records.recorded(source.meta, 'data', records.Data) or records.Data(
        source.meta.get('dataset', 'mnist'), source.meta.get('data_dir'), source.meta.get('train_samples'))
    if spec.data_dir and not os.path.exists(spec.data_dir) and 'data_dir' not in flags:
        raise UserError('%s was made on the data in %s, which is not there any more: if it moved, give its new '
                        'place with --data_dir' % (source.path, spec.data_dir))
    for flag, was, now in records.differences(spec, flags):
        if flag in ('train_samples', 'test_samples') and not args.resume:
            continue
        if flag == 'data_dir' and (data.settle(records.Data(data_dir=now)).dataset == data.OWN) == \
                (spec.dataset == data.OWN):
            continue  # the same path, or data of the same kind elsewhere: the fingerprint decides (data.check_same)
        raise UserError('%s: %s was made with %s; %s' % (
            records.flag_text(flag, now), source.path, records.flag_text(flag, was),
            'drop the flag' if flag != 'dataset' or 'dataset' in given else 'name runs of one dataset'))
    return data.settle(dataclasses.replace(spec, **flags))


def starting_checkpoint(args, files):
    """The checkpoint this command starts from, or None for a new first stage. It is read once: its
    records give the data and the network before the data is read."""
    if args.train:
        return load_checkpoint(files.last, NOTHING_TO_RESUME) if args.resume else None
    if args.second_train:
        return load_checkpoint(*files.second_start(args.checkpoint, args.resume))
    if args.test or args.verify:
        return load_checkpoint(files.checkpoint(args.checkpoint), files.hint())
    found = [path for path in (f.checkpoint(args.checkpoint) for f, _ in compared_runs(args)) if os.path.isfile(path)]
    return load_checkpoint(found[0]) if found else None


def compared_runs(args):
    """[(RunFiles, title)] of --compare: those of --prefix A,B,C, else the three of the original port's figure."""
    if args.prefixes and len(args.prefixes) > 1:
        return [(RunFiles(args.ckpt_dir, args.out_dir, prefix), prefix) for prefix in args.prefixes]
    return [(RunFiles(args.ckpt_dir, args.out_dir, prefix), title) for prefix, title in commands.COMPARED]


def verified_runs(args, files, source):
    """[(RunFiles, checkpoint)] that --verify measures: the run of ``files`` or each of --prefix A,B,C."""
    if not args.prefixes or len(args.prefixes) == 1:
        return [(files, source)]
    runs = [RunFiles(args.ckpt_dir, args.out_dir, prefix) for prefix in args.prefixes]
    return [(f, source if source.path == f.checkpoint(args.checkpoint) else
             load_checkpoint(f.checkpoint(args.checkpoint), f.hint())) for f in runs]


# --------------------------------------------------------------------------- the command

def run(args, given):
    """Everything the flags ask for, in order: first stage, second stage, test, verify, compare."""
    if args.resume and not (args.train or args.second_train):
        args.train, args.second_train, args.prefix = interrupted_run(args)
    output = records.Output(args.plotting, args.frames, args.eval_method, args.knn_k)
    devices = get_contexts(args.use_gpu, args.gpus, gpu_cards() if args.use_gpu else [])
    workers = setup_workers(args.kvstore)
    files = RunFiles(args.ckpt_dir, args.out_dir, args.prefix)
    training = args.train or args.second_train
    if workers[1] == 0 and training:  # rank 0 alone writes
        writable_folder(args.ckpt_dir, '--ckpt_dir')
        writable_folder(args.out_dir, '--out_dir')
        lock_run(files)
    elif workers[1] == 0 and (args.compare or args.verify):
        writable_folder(args.out_dir, '--out_dir')
    if workers[1] == 0 and args.export:
        writable_folder(args.export, '--export')
    source = starting_checkpoint(args, files)
    if args.verify and args.pairs and not (training or args.test or args.compare or args.export):
        return verify_pairs(args, devices, workers, files, source)  # the pair list holds its own images
    spec = data_record(args, given, source)
    raw = data.open_data(spec)
    for note in raw.notes:
        print('data: %s' % note)
    if source is None:
        shape = data.image_shape(raw)
        arch = new_arch(dict({k: getattr(args, k) for k in ARCH_DEFAULTS if k not in ('channels', 'image_size')},
                             holdout=data.dense_holdout(raw, args.holdout)), len(raw.class_names), shape, spec.dataset)
    else:
        data.check_same(raw, records.recorded(source.meta, 'facts', records.Facts), source.path)
        arch = check_arch(arch_of(source), {k: getattr(args, k, None) for k in ARCH_DEFAULTS if k != 'holdout'},
                          source.path)
        if args.holdout is not None and data.dense_holdout(raw, args.holdout) != arch.holdout:
            raise UserError('%s was made with --holdout %s, not %s: drop the flag or retrain' % (
                source.path, ','.join(str(raw.facts.ids[c]) for c in arch.holdout) or 'none',
                ','.join(map(str, args.holdout))))
    first = stage_records(args, given, 'first', source) if args.train else None
    seed = first[0].seed if first else args.seed
    rt = setup_runtime(args.precision, devices, workers, arch, args.batch_size if not first else first[0].batch_size,
                       source, args.resume, training, args.kvstore)
    print('mxnet %s (%s build), context %s%s, precision %s (%s), OMP_NUM_THREADS=%s'
          % (mx.__version__, 'CUDA' if mx.runtime.Features().is_enabled('CUDA') else 'CPU',
             ', '.join(str(c) for c in rt.ctxs), rt.note, rt.precision, rt.why, os.environ.get('OMP_NUM_THREADS')))
    if rt.kv:
        print('worker %d of %d, kvstore %s' % (rt.rank, rt.num_workers, args.kvstore))
    mx.random.seed(seed)
    np.random.seed(seed)
    loaded = data.load(raw, arch, rt, args.decode_workers, source.meta.get('normalisation') if source else None)
    n_train = loaded.train_x.shape[0]
    if args.test and args.knn_k > n_train and args.eval_method in (None, 'knn'):
        raise UserError('--knn_k %d is larger than the %d training images it votes among' % (args.knn_k, n_train))

    def described(optim, center):
        return dict(records.describe(data=spec, facts=raw.facts, optim=optim, center=center), arch=arch.to_json())
    if args.train:
        stage = build_stage('first', arch, first[0], first[1], output, described(*first), rt, loaded, files, source)
        run_stage(stage, rt, loaded, output, spec.dataset)
        source = None
    if args.second_train:
        second = files.second()
        if source is None:  # after a first stage in this command: resume only a second stage that started
            source = load_checkpoint(*files.second_start(args.checkpoint, args.resume and os.path.isfile(second.last)))
        recorded = records.recorded(source.meta, 'optim', records.Optim), \
            records.recorded(source.meta, 'center', records.Center)
        optim, center = stage_records(args, given, 'second', source, recorded if None not in recorded else None)
        stage = build_stage('second', arch, optim, center, output, described(optim, center), rt, loaded, second,
                            source)
        run_stage(stage, rt, loaded, output, spec.dataset)
        files, source = second, None
    if rt.rank == 0:  # with several workers, the first alone evaluates and draws
        evaluate(args, rt, files, source, spec, raw, arch, loaded)


def evaluate(args, rt, files, source, spec, raw, arch, loaded):
    """--test, --verify and --compare, each on the data of the checkpoints it reads."""
    cache = {(arch.holdout, arch.num_classes, tuple(loaded.normalisation)): loaded}

    def data_for(ckpt):
        theirs = records.recorded(ckpt.meta, 'data', records.Data)
        if theirs is not None and theirs.dataset != spec.dataset:
            raise UserError('%s was trained on %s, not %s: name runs of one dataset'
                            % (ckpt.path, theirs.dataset, spec.dataset))
        data.check_same(raw, records.recorded(ckpt.meta, 'facts', records.Facts), ckpt.path)
        their_arch = arch_of(ckpt)
        key = (their_arch.holdout, their_arch.num_classes, tuple(ckpt.meta.get('normalisation') or ()))
        if key not in cache:
            cache[key] = data.load(raw, their_arch, rt, args.decode_workers, ckpt.meta.get('normalisation'))
        return cache[key]
    if args.test or args.verify:
        source = source or load_checkpoint(files.checkpoint(args.checkpoint), files.hint())
    if args.test:
        commands.test(source, rt, data_for(source), args.eval_method, args.knn_k)
    if args.verify and args.pairs:
        commands.verify_pairs(verified_runs(args, files, source), rt, pairs_of(args, spec), args.out_dir, spec.dataset)
    elif args.verify:
        commands.verify(verified_runs(args, files, source), rt, data_for, args.out_dir, spec.dataset)
    if args.export:
        commands.export(verified_runs(args, files, source) if args.verify else [(files, source)], rt, data_for,
                        args.export)
    if args.compare:
        def once(path):  # each checkpoint read once, the one starting_checkpoint read included
            return source if source and source.path == path else load_checkpoint(path) if os.path.isfile(path) else None
        read = {tag: [(f, title, once(f.checkpoint(tag))) for f, title in compared_runs(args)]
                for tag in {args.checkpoint, 'last'}}
        commands.compare(read[args.checkpoint], rt, data_for, args.out_dir, spec.dataset, args.seed, args.checkpoint)
        if args.prefixes and len(args.prefixes) > 1:
            commands.side_by_side(read['last'], rt, data_for, args.out_dir, spec.dataset, args.seed)


def pairs_of(args, spec):
    """The pair list of --pairs: a .bin holds its images; a pairs.txt names them in --pairs_dir (by
    default the test/ folder of the data the run was trained on)."""
    folder = args.pairs_dir or (os.path.join(spec.data_dir, 'test') if spec and spec.data_dir else None)
    try:
        return read_pairs(args.pairs, folder)
    except SourceError as e:
        raise UserError('--pairs: %s' % e)


def verify_pairs(args, devices, workers, files, source):
    """--verify --pairs alone: the checkpoints and the pair list, no training data."""
    spec = records.recorded(source.meta, 'data', records.Data) or records.Data(source.meta.get('dataset', 'mnist'))
    pair_list = pairs_of(args, spec)
    rt = setup_runtime(args.precision, devices, workers, arch_of(source), args.batch_size, source, False, False)
    commands.verify_pairs(verified_runs(args, files, source), rt, pair_list, args.out_dir, spec.dataset)


def how_to_continue(args, argv):
    """After a stop (Ctrl-C, SIGTERM, stdout closed): the command that resumes, starts again or runs again."""
    again = ' '.join(a for a in argv if a != '--resume')
    files = RunFiles(args.ckpt_dir, args.out_dir, args.prefix)
    if not (args.train or args.second_train):
        return 'nothing was training and no checkpoint changed; run it again with\n  python main.py %s' % again
    if not os.path.isfile((files if args.train else files.second()).last):
        return 'no epoch was completed, nothing was saved; start again with\n  python main.py %s' % again
    return ('the last completed epoch is saved in %s; continue with\n  python main.py %s --resume'
            % (args.ckpt_dir, again))


def main(argv=None):
    sys.stdout.reconfigure(errors='backslashreplace')  # a file name in no encoding is printed, not a traceback
    argv = sys.argv[1:] if argv is None else list(argv)
    args, given = parse_args(argv)
    with stops_handled():  # the first Ctrl-C or SIGTERM stops; the handling below is not broken into
        try:
            run(args, given)
        except (UserError, CheckpointError, SourceError, DataError, Diverged, SaveError) as e:
            print('error: %s' % e, file=sys.stderr)
            return EXIT_DIVERGED if isinstance(e, Diverged) else EXIT_IO if isinstance(e, SaveError) else EXIT_USAGE
        except BrokenPipeError:
            stdout_closed('\nstopped: standard output was closed; %s' % how_to_continue(args, argv))
            return EXIT_PIPE
        except KeyboardInterrupt as e:
            word, status = stopped(e)
            print('\n%s: %s' % (word, how_to_continue(args, argv)), file=sys.stderr)
            return status
        finally:
            unlock_all()
    return 0


if __name__ == '__main__':
    sys.exit(main())
