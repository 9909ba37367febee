"""Softmax and center loss (Wen et al., ECCV 2016) on MNIST with MXNet Gluon.

    python main.py --train --center_loss   # stage 1: softmax + lmbd * center loss
    python main.py --second_train          # stage 2: center loss alone, centers frozen
    python main.py --test                  # softmax, nearest-center and k-NN accuracy
    python main.py --verify                # open-set: pairs of unseen classes (with --holdout)
    python main.py --resume                # continue the newest stage stopped before its end, exactly as it was
"""
import os
import sys

if __name__ == '__main__':  # Ctrl-C while mxnet loads (below): one line, not the import's traceback
    __import__('faults.signals').signals.quiet_ctrl_c_while_loading()

try:
    from devices import compat  # noqa: F401  (before mxnet: numpy alias, thread count, CUDA libraries)
except ImportError as e:  # a set-up problem, not a bug: say what to install
    print('error: %s' % e, file=sys.stderr)
    sys.exit(2)

import numpy as np
import mxnet as mx

from cli import command as commands_of
from cli import flags, start
from cli.flags import STAGE_DEFAULTS  # noqa: F401  (each stage's defaults, for callers)
from devices.parallel import setup_workers
from devices.runtime import get_contexts, gpu_cards, setup_runtime
from evaluation import commands, embed, export, restore, verify
from faults.errors import EXIT_DIVERGED, EXIT_INT, EXIT_IO, EXIT_PIPE, EXIT_TERM, EXIT_USAGE  # noqa: F401
from faults.errors import Diverged, UserError, stdout_closed  # (the statuses: main's, for callers)
from faults.signals import stopped, stops_handled
from imagesets import dataset
from runs.checkpoints import load_checkpoint
from runs.files import RunFiles
from runs.lock import lock_run, unlock_all, writable_folder
from runs.meta import Run
from training.stage import build_stage, run_stage


def parse_args(argv):
    """(the parsed flags, the names of those given on the command line) of the list ``argv``."""
    return flags.parse(__doc__, argv)


# --------------------------------------------------------------------------- the command

def run(args, given, command):
    """Everything ``command`` (cli.command.Command) asks for, in order: first stage, second stage, test,
    verify, compare; ``args``: the parsed flags, ``given``: the names of those given."""
    devices = get_contexts(args.use_gpu, args.gpus, gpu_cards() if args.use_gpu else [])
    workers = setup_workers(args.kvstore)
    files = RunFiles(args.ckpt_dir, args.out_dir, command.prefix)
    if workers[1] == 0:  # rank 0 alone writes
        prepare_folders(args, command, files)
    if args.export_model or args.embed or args.match:
        return use_network(args, devices, workers, files)
    source = start.starting_checkpoint(args, command, files)
    if command.verify and args.pairs and not (command.training or command.test or command.compare or args.export):
        return verify_pairs(args, command, devices, workers, files, source)  # the pair list holds its own images
    spec = start.data_record(args, given, source)
    raw = dataset.open_data(spec)
    for note in raw.notes:
        print('data: %s' % note)
    arch = start.arch_record(args, raw, source)
    first = start.stage_records(args, given, 'first', source, arch) if command.train else None
    rt = setup_runtime(args.precision, devices, workers, arch, first[0].batch_size if first else args.batch_size,
                       source, command.resume, command.training, args.kvstore)
    print('mxnet %s (%s build), context %s%s, precision %s (%s), OMP_NUM_THREADS=%s'
          % (mx.__version__, 'CUDA' if mx.runtime.Features().is_enabled('CUDA') else 'CPU',
             ', '.join(str(c) for c in rt.ctxs), rt.note, rt.precision, rt.why, os.environ.get('OMP_NUM_THREADS')))
    if rt.kv:
        print('worker %d of %d, kvstore %s' % (rt.rank, rt.num_workers, args.kvstore))
    seed = first[0].seed if first else args.seed
    mx.random.seed(seed)
    np.random.seed(seed)
    loaded = dataset.load(raw, arch, rt, args.decode_workers, source.meta.normalisation if source else None)
    if command.test and args.knn_k > loaded.train_x.shape[0] and args.eval_method in (None, 'knn'):
        raise UserError('--knn_k %d is larger than the %d training images it votes among'
                        % (args.knn_k, loaded.train_x.shape[0]))
    if command.train:
        stage = build_stage('first', Run(arch, spec, raw.facts, *first), rt, loaded, files_for(files, first[2]), source)
        run_stage(stage, rt, loaded, spec.dataset)
        source = None
    if command.second_train:
        files, source = train_second(args, given, command, files, source, Run(arch, spec, raw.facts), rt, loaded)
    if rt.rank == 0:  # with several workers, the first alone evaluates and draws
        evaluate(args, command, rt, files, source, spec, raw, arch, loaded)


def prepare_folders(args, command, files):
    """The folders a command writes in, checked and made before anything runs, and the lock of its run."""
    if command.training:
        writable_folder(args.ckpt_dir, '--ckpt_dir')
        writable_folder(args.out_dir, '--out_dir')
        lock_run(files)
    elif command.compare or command.verify:
        writable_folder(args.out_dir, '--out_dir')
    if args.export:
        writable_folder(args.export, '--export')
    if args.export_model:
        writable_folder(args.export_model, '--export_model')
    if args.embed:
        writable_folder(args.out_dir, '--out_dir')


def files_for(files, output):
    """The stage's RunFiles, in the --out_dir its records name (a resumed stage's, which may differ)."""
    if output.out_dir != files.out_dir:
        writable_folder(output.out_dir, '--out_dir')
    return RunFiles(files.ckpt_dir, output.out_dir, files.prefix)


def train_second(args, given, command, files, source, run, rt, loaded):
    """The second stage: from ``source`` (None after a first stage in this command: the first stage's
    checkpoint, or with --resume the second stage's own last one if it started). Returns its RunFiles."""
    second = files.second()
    if source is None:
        own = command.resume and os.path.isfile(second.last)  # its own last checkpoint, maybe within an epoch
        source = load_checkpoint(*files.second_start(args.checkpoint, own), within=own)
    recorded = source.meta.run.optim, source.meta.run.center
    optim, center, output = start.stage_records(args, given, 'second', source, run.arch,
                                                recorded if None not in recorded else None)
    stage = build_stage('second', Run(run.arch, run.data, run.facts, optim, center, output), rt, loaded,
                        files_for(second, output), source)
    run_stage(stage, rt, loaded, run.data.dataset)
    return stage.files, None


def evaluate(args, command, rt, files, source, spec, raw, arch, loaded):
    """--test, --verify and --compare, each on the data of the checkpoints it reads."""
    cache = {(arch.holdout, arch.num_classes, tuple(loaded.normalisation)): loaded}

    def data_for(ckpt):
        theirs = ckpt.meta.run.data
        if theirs is not None and theirs.dataset != spec.dataset:
            raise UserError('%s was trained on %s, not %s: name runs of one dataset'
                            % (ckpt.path, theirs.dataset, spec.dataset))
        dataset.check_same(raw, ckpt.meta.run.facts, ckpt.path)
        their_arch = ckpt.meta.run.arch
        key = (their_arch.holdout, their_arch.num_classes, tuple(ckpt.meta.normalisation))
        if key not in cache:
            cache[key] = dataset.load(raw, their_arch, rt, args.decode_workers, ckpt.meta.normalisation)
        return cache[key]
    if command.test or command.verify:
        source = source or load_checkpoint(files.checkpoint(args.checkpoint), files.hint())
    if command.test:
        commands.test(source, rt, data_for(source), args.eval_method, args.knn_k)
    runs = start.verified_runs(args, command, files, source) if command.verify else [(files, source)]
    if command.verify and args.pairs:
        verify.verify_pairs(runs, rt, start.pairs_of(args, spec), args.out_dir, spec.dataset)
    elif command.verify and raw.pair_sets:  # the data's verification sets, as insightface measures a run
        for name, pair_list in data_for(source).pair_lists:
            verify.verify_pairs(runs, rt, pair_list, args.out_dir, spec.dataset, name)
    elif command.verify:
        verify.verify(runs, rt, data_for, args.out_dir, spec.dataset)
    if args.export:
        commands.export(runs, rt, data_for, args.export)
    if command.compare:
        compare(args, command, rt, source, data_for, spec)


def compare(args, command, rt, source, data_for, spec):
    """--compare: the original port's figure, and with several runs named the margin papers' one."""
    def once(path):  # each checkpoint read once, the one starting_checkpoint read included
        return source if source and source.path == path else load_checkpoint(path) if os.path.isfile(path) else None
    read = {tag: [(f, title, once(f.checkpoint(tag))) for f, title in start.compared_runs(args, command)]
            for tag in {args.checkpoint, 'last'}}
    commands.compare(read[args.checkpoint], rt, data_for, args.out_dir, spec.dataset, args.seed, args.checkpoint)
    if command.several:
        commands.side_by_side(read['last'], rt, data_for, args.out_dir, spec.dataset, args.seed)


def use_network(args, devices, workers, files):
    """--export_model, --embed and --match: a checkpoint's network alone, no training data, in float32
    (what an exported network computes)."""
    source = load_checkpoint(files.checkpoint(args.checkpoint), files.hint())
    rt = setup_runtime('float32', devices, workers, source.meta.run.arch, args.batch_size, source, False, False)
    _, net, _ = restore.network(source, rt.ctxs)
    if args.export_model:
        export.export_model(source, files, net, args.export_model)
    if args.embed:
        embed.embed(source, files, net, args.embed, rt.ctxs[0])
    if args.match:
        embed.match(source, files, net, args.match, args.far, args.threshold, rt.ctxs[0])


def verify_pairs(args, command, devices, workers, files, source):
    """--verify --pairs alone: the checkpoints and the pair list, no training data."""
    spec = source.meta.run.data
    pair_list = start.pairs_of(args, spec)
    rt = setup_runtime(args.precision, devices, workers, source.meta.run.arch, args.batch_size, source, False, False)
    verify.verify_pairs(start.verified_runs(args, command, files, source), rt, pair_list, args.out_dir,
                        spec.dataset if spec else 'mnist')


def how_to_continue(args, command, argv):
    """After a stop (Ctrl-C, SIGTERM, stdout closed): the command that resumes, starts again or runs again."""
    again = ' '.join(a for a in argv if a != '--resume')
    files = RunFiles(args.ckpt_dir, args.out_dir, command.prefix)
    if not command.training:
        return 'nothing was training and no checkpoint changed; run it again with\n  python main.py %s' % again
    last = (files if command.train else files.second()).last
    if not os.path.isfile(last):
        return 'no step was completed, nothing was saved; start again with\n  python main.py %s' % again
    within = load_checkpoint(last, within=True).meta.within
    if within is not None:
        return ('the run is saved as it stood, within epoch %d at step %d, in %s; continue with\n  python main.py %s '
                '--resume' % (within.epoch, within.step, last, again))
    return ('the last completed epoch is saved in %s; continue with\n  python main.py %s --resume'
            % (args.ckpt_dir, again))


def with_flags(argv, flags):
    """``argv`` with the flags and values of ``flags`` set (replaced where given, added where not); a new
    run, so without --resume and --allow_changes."""
    out, given = [], dict(zip(flags[::2], flags[1::2]))
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in given:
            skip = True
        elif a not in ('--resume', '--allow_changes'):
            out.append(a)
    return out + flags


def main(argv=None):
    sys.stdout.reconfigure(errors='backslashreplace')  # a file name in no encoding is printed, not a traceback
    argv = sys.argv[1:] if argv is None else list(argv)
    args, given = parse_args(argv)
    command = commands_of.of(args)
    with stops_handled():  # the first Ctrl-C or SIGTERM stops; the handling below is not broken into
        try:
            if command.resume and not command.training:  # the newest stage stopped: a command of its own
                command = commands_of.resumed(command, args.ckpt_dir, args.out_dir)
            run(args, given, command)
        except UserError as e:  # each kind with its status: bad input 2, a NaN loss 3, a failed write 74
            retry = ': try  python main.py %s' % ' '.join(with_flags(argv, e.retry)) if isinstance(e, Diverged) else ''
            print('error: %s%s' % (e, retry), file=sys.stderr)
            return e.status
        except BrokenPipeError:
            stdout_closed('\nstopped: standard output was closed; %s' % how_to_continue(args, command, argv))
            return EXIT_PIPE
        except KeyboardInterrupt as e:
            word, status = stopped(e)
            print('\n%s: %s' % (word, how_to_continue(args, command, argv)), file=sys.stderr)
            return status
        finally:
            unlock_all()
    return 0


if __name__ == '__main__':
    sys.exit(main())
