"""What a command starts from: the checkpoint it reads, and the records of its run, built from the
flags for a new run or read back from the checkpoint it continues, where a flag given that would
change a recorded value is refused (or, for what may change, applied with --allow_changes and said).

The records (runs/records.py): ``Data`` (which images), ``Arch`` (the network), ``Optim`` and
``Center`` (a stage's schedule and center loss), ``Output`` (what it draws and measures)."""
import dataclasses
import os

from cli.flags import STAGE_DEFAULTS, STAGE_FLAGS
from evaluation.commands import COMPARED
from faults.errors import DataError, UserError
from imagesets import dataset
from imagesets.pairs import read_pairs
from models import ARCH_FLAGS, FACE_SIZE, check_arch, is_face, new_arch
from runs import records
from runs.checkpoints import load_checkpoint
from runs.files import NOTHING_TO_RESUME, RunFiles

OPTIM = [f.name for f in dataclasses.fields(records.Optim)]
CENTER = [f.name for f in dataclasses.fields(records.Center)]
OUTPUT = [f.name for f in dataclasses.fields(records.Output)]
DATA = [f.name for f in dataclasses.fields(records.Data)]
# What --allow_changes cannot change either: the batches a resumed run sees, the optimizer whose state
# it continues, the steps of its epochs, and whether and how its centers learn.
FIXED = ('batch_size', 'seed', 'optimizer', 'min_epoch_steps', 'shift', 'mirror', 'center_loss', 'center_update')
# What a resumed run takes from its checkpoint unless given, and may change without --allow_changes: where
# its pictures go and whether it draws them (a GIF then holds the frames drawn there and then), and how often
# it saves within an epoch.
FREE = ('out_dir', 'plotting', 'save_minutes')


def starting_checkpoint(args, command, files):
    """The checkpoint this command starts from, or None for a new first stage. It is read once: its
    records give the data and the network before the data is read."""
    if command.train:
        return load_checkpoint(files.last, NOTHING_TO_RESUME, within=True) if command.resume else None
    if command.second_train:
        return load_checkpoint(*files.second_start(args.checkpoint, command.resume), within=command.resume)
    if command.test or command.verify:
        return load_checkpoint(files.checkpoint(args.checkpoint), files.hint())
    found = [path for path in (f.checkpoint(args.checkpoint) for f, _ in compared_runs(args, command))
             if os.path.isfile(path)]
    return load_checkpoint(found[0]) if found else None


def compared_runs(args, command):
    """[(RunFiles, title)] of --compare: those of --prefix A,B,C, else the three of the original port's figure."""
    if command.several:
        return [(RunFiles(args.ckpt_dir, args.out_dir, prefix), prefix) for prefix in command.prefixes]
    return [(RunFiles(args.ckpt_dir, args.out_dir, prefix), title) for prefix, title in COMPARED]


def verified_runs(args, command, files, source):
    """[(RunFiles, checkpoint)] that --verify measures: the run of ``files`` or each of --prefix A,B,C."""
    if not command.several:
        return [(files, source)]
    runs = [RunFiles(args.ckpt_dir, args.out_dir, prefix) for prefix in command.prefixes]
    return [(f, source if source.path == f.checkpoint(args.checkpoint) else
             load_checkpoint(f.checkpoint(args.checkpoint), f.hint())) for f in runs]


def resumed_records(args, given, source, kinds):
    """The records ``kinds`` ({name: (record class, its fields)}) a resumed stage's checkpoint holds,
    with the flags given that change them: refused, or with --allow_changes applied and each said; None
    for a checkpoint of an earlier version that holds none."""
    recorded = {name: getattr(source.meta.run, name) for name in kinds}
    if any(r is None for r in recorded.values()):
        return None
    changes = [(name, change) for name, (_, fields) in kinds.items()
               for change in records.differences(recorded[name], {k: getattr(args, k) for k in fields if k in given})]
    for name, (flag, was, now) in changes:
        if flag in FIXED or not (args.allow_changes or flag in FREE):
            raise UserError('%s: %s records %s, %s' % (
                records.flag_text(flag, now), source.path, records.flag_text(flag, was),
                'which a resumed run cannot change (it fixes the batches, the optimizer\'s state or the '
                'centers\' learning): drop the flag, or start a new run' if flag in FIXED else
                'and --resume continues exactly that run: drop the flag, or add --allow_changes to change it'))
    for name, (flag, was, now) in changes:
        print('resume: %s instead of the recorded %s' % (records.flag_text(flag, now), records.flag_text(flag, was)))
    return {name: dataclasses.replace(recorded[name], **{flag: now for n, (flag, _, now) in changes if n == name})
            for name in kinds}


# The defaults that depend on the network: (for the face networks, for the others). Faces: insightface's
# augmentation (a mirror, no shift) and the paper's lambda for faces (Wen et al. 2016, Sec. 4: 0.003 with
# 512-D features, whose squared distances to their centers are hundreds, where LeNet++'s 2-D are units).
BY_NETWORK = {'shift': (0, 2), 'mirror': (True, False), 'lmbd': (0.003, 1.0)}


def stage_records(args, given, kind, source, arch, first=None):
    """(records.Optim, records.Center, records.Output) of a stage of ``kind``: a resumed stage's are what
    it recorded, with the flags given that change them (resumed_records); a new stage's are the flags',
    with the stage's defaults for the schedule and those of ``arch``'s network (BY_NETWORK), and
    a second stage takes the rest from ``first``, the first stage's Optim and Center."""
    if args.resume and source is not None and source.path.endswith('-last.params'):
        kinds = {'optim': (records.Optim, OPTIM), 'center': (records.Center, CENTER)}
        if source.meta.run.output is not None:  # (recorded since the records of a run had one)
            kinds['output'] = (records.Output, OUTPUT)
        found = resumed_records(args, given, source, kinds)
        if found is not None:
            return found['optim'], found['center'], found.get('output') or output_record(args)
        print('resume: %s records no schedule (an earlier version): the flags given and the defaults' % source.path)
    defaults = dict(STAGE_DEFAULTS[kind], min_warmup_steps=0) if 'warmup' in given else STAGE_DEFAULTS[kind]
    values = {k: getattr(args, k) for k in OPTIM + CENTER}
    if first is not None:  # a second stage continues the first stage's run: its seed, batch, optimizer ...
        values.update(records.to_json(first[0]), **records.to_json(first[1]))
        values.update({k: getattr(args, k) for k in OPTIM + CENTER if k in given})
    values.update({k: defaults[k] for k in STAGE_FLAGS if k not in given})
    values.update({k: BY_NETWORK[k][0 if is_face(arch.model) else 1] for k in BY_NETWORK if values[k] is None})
    values['center_loss'] = kind == 'second' or bool(values['center_loss'])
    return (records.Optim(**{k: values[k] for k in OPTIM}), records.Center(**{k: values[k] for k in CENTER}),
            output_record(args))


def output_record(args):
    """The records.Output of the flags."""
    return records.Output(**{k: getattr(args, k) for k in OUTPUT})


def data_record(args, given, source):
    """The records.Data of this command: a checkpoint's own when it starts from one (a --dataset or
    --data_dir that names other data is refused; --train_samples and --test_samples may differ, but
    not on --resume), else the flags'."""
    flags = {k: getattr(args, k) for k in DATA if k in given}
    if source is None:
        return dataset.settle(records.Data(**flags))
    spec = source.meta.run.data or records.Data()
    if spec.data_dir and not os.path.exists(spec.data_dir) and 'data_dir' not in flags:
        raise UserError('%s was made on the data in %s, which is not there any more: if it moved, give its new '
                        'place with --data_dir' % (source.path, spec.data_dir))
    for flag, was, now in records.differences(spec, flags):
        if flag in ('train_samples', 'test_samples') and not args.resume:
            continue
        if flag == 'data_dir' and (dataset.settle(records.Data(data_dir=now)).dataset == dataset.OWN) == \
                (spec.dataset == dataset.OWN):
            continue  # the same path, or data of the same kind elsewhere: the fingerprint decides (check_same)
        raise UserError('%s: %s was made with %s; %s' % (
            records.flag_text(flag, now), source.path, records.flag_text(flag, was),
            'drop the flag' if flag != 'dataset' or 'dataset' in given else 'name runs of one dataset'))
    return dataset.settle(dataclasses.replace(spec, **flags))


def arch_record(args, raw, source):
    """The records.Arch of this command: a new first stage's from the flags and the data, else the
    checkpoint's, which the network flags given must agree with."""
    if source is None:
        given = {k: getattr(args, k) for k in ARCH_FLAGS if k not in ('channels', 'image_size')}
        given['holdout'] = dataset.dense_holdout(raw, args.holdout)
        shape = dataset.image_shape(raw)
        if is_face(args.model) and raw.own is not None and raw.spec.image_size is None and shape[1] != FACE_SIZE:
            print('data: the images (%dx%d) brought to %dx%d, the face networks\' size (--image_size for another)'
                  % (shape[1] + FACE_SIZE))
            shape = (shape[0], FACE_SIZE)
        return new_arch(given, len(raw.class_names), shape)
    dataset.check_same(raw, source.meta.run.facts, source.path)
    arch = check_arch(source.meta.run.arch, {k: getattr(args, k, None) for k in ARCH_FLAGS if k != 'holdout'},
                      source.path)
    if args.holdout is not None and dataset.dense_holdout(raw, args.holdout) != arch.holdout:
        raise UserError('%s was made with --holdout %s, not %s: drop the flag or retrain' % (
            source.path, ','.join(str(raw.facts.ids[c]) for c in arch.holdout) or 'none',
            ','.join(map(str, args.holdout))))
    return arch


def pairs_of(args, spec):
    """The pair list of --pairs: a .bin holds its images; a pairs.txt names them in --pairs_dir (by
    default the test/ folder of the data the run was trained on)."""
    folder = args.pairs_dir or (os.path.join(spec.data_dir, 'test') if spec and spec.data_dir else None)
    try:
        return read_pairs(args.pairs, folder)
    except DataError as e:
        raise DataError('--pairs: %s' % e)
