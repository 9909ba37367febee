"""What a command does and on which run, as a value of its own: the parsed flags are read, never
written, so what ``--resume`` finds (the newest stage stopped before its end) is a new Command, not flags
changed."""
import dataclasses
from typing import Tuple

from cli.flags import named_prefixes
from faults.errors import UserError
from runs.checkpoints import load_checkpoint
from runs.files import RunFiles, last_checkpoints


@dataclasses.dataclass(frozen=True)
class Command:
    """The stages a command trains and what it measures, in the order they run: ``train`` (a first
    stage), ``second_train``, ``test``, ``verify``, ``compare``; ``resume``: the stages continue from their
    last checkpoints; ``prefix``: the run (its first stage's name); ``prefixes``: the runs --prefix named
    (several for --verify and --compare alone)."""
    train: bool
    second_train: bool
    test: bool
    verify: bool
    compare: bool
    resume: bool
    prefix: str
    prefixes: Tuple[str, ...]

    @property
    def training(self):
        return self.train or self.second_train

    @property
    def several(self):
        """Whether --prefix named several runs."""
        return len(self.prefixes) > 1


def of(args):
    """The Command the flags give. The run's name: the one --prefix names, else a margin head's (with
    --train --head H: H, or H-center with --center_loss; a head's run is not filed as softmax's), else
    softmax for --train alone, else center-loss."""
    prefixes = tuple(named_prefixes(args.prefix))
    head = args.train and args.head not in (None, 'softmax') and args.head
    if prefixes:
        prefix = prefixes[0]
    elif head:
        prefix = head + ('-center' if args.center_loss else '')
    else:
        prefix = 'softmax' if args.train and not args.center_loss else 'center-loss'
    return Command(args.train, args.second_train, args.test, args.verify, args.compare, args.resume, prefix, prefixes)


def resumed(command, ckpt_dir, out_dir):
    """--resume with no stage named: the command that continues the newest stage (of --prefix, when given)
    that stopped before its end, or whose end's GIFs and curves are missing (a full disk); UserError naming
    the newest when every stage is complete."""
    named = command.prefix if command.prefixes else None
    found = last_checkpoints(ckpt_dir, out_dir, named)
    where = '%s%s' % (ckpt_dir, ' for --prefix %s' % named if named else '')
    if not found:
        raise UserError('--resume: no last checkpoint in %s: nothing to resume' % where)
    metas = []
    for files in found:
        meta = load_checkpoint(files.last, within=True).meta
        metas.append(meta)
        run = meta.run
        if run.optim is None or len(meta.history) < run.optim.epochs or (
                run.output is not None and run.output.plotting and
                not RunFiles(ckpt_dir, run.output.out_dir, files.prefix).pictures_made()):
            return dataclasses.replace(command, train=not files.is_second, second_train=files.is_second,
                                       prefix=files.first().prefix)
    newest = metas[0]
    raise UserError('--resume: every stage in %s is complete (the newest, %s: %d of %d epochs): nothing to '
                    'resume; --train or --second_train starts a stage' % (
                        where, found[0].prefix, len(newest.history), newest.run.optim.epochs))


def files_of(command, ckpt_dir, out_dir):
    """The RunFiles of the command's run."""
    return RunFiles(ckpt_dir, out_dir, command.prefix)
