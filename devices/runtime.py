"""Where and how a run computes: its devices (CPU, one GPU or several, on the cards this
MXNet build runs on), its precision (float32, or bfloat16 convolutions where measured
faster: precision.py), and its place among the workers of a distributed run (parallel.py)."""
import collections
import dataclasses

from devices import compat  # noqa: F401  (before mxnet)
import mxnet as mx
from mxnet import nd

from devices import precision
from faults.errors import UserError
from devices.parallel import from_rank0


class Runtime(collections.namedtuple('Runtime', 'ctxs precision kv rank num_workers note why cached kvstore')):
    """Where and how this process computes: devices, precision, its place among workers, and
    for the first line, a note on the choice of device and why this precision (``cached``: the
    precision.Choice read from the cache, which the first epoch's rate is checked against; else None),
    and how gradients are summed over its devices (``kvstore``: --kvstore)."""


def gpu_cards():
    """[(device number, name, compute capability)] of the GPUs this MXNet build could use; [] for the CPU build."""
    if not mx.runtime.Features().is_enabled('CUDA'):
        return []
    cards = compat.gpu_cards()
    if not cards:  # the runtime could not be asked: MXNet's count, capability unknown
        cards = [(i, 'GPU %d' % i, None) for i in range(mx.context.num_gpus())]
    return cards


def runs_here(card):
    return card[2] is None or compat.runs_cuda_build(card[2])


def describe(card):
    return 'GPU %d (%s) has compute capability %d.%d' % ((card[0], card[1]) + tuple(card[2]))


def get_contexts(use_gpu, gpus, cards):
    """(devices to train on, a note for the first line): [cpu()], [gpu(k)] or several GPUs for data
    parallelism (``gpus``: --gpus, e.g. '0,1', or None), among ``cards`` (see gpu_cards), only on
    cards whose architecture the build runs on."""
    if not use_gpu:
        return [mx.cpu()], ''
    if gpus is None:
        usable = [card for card in cards if runs_here(card)]
        if usable:
            return [mx.gpu(usable[0][0])], ''
        if cards:
            return [mx.cpu()], (' (%s, newer than the CUDA build\'s kernels, %s: the CPU instead)'
                                % (describe(cards[0]), compat.CUDA_ARCHS_TEXT))
        return [mx.cpu()], ''
    try:
        ids = [int(i) for i in gpus.split(',') if i.strip()]
    except ValueError:
        raise UserError('--gpus %r: expected indices such as 0 or 0,1' % gpus)
    bad = [i for i in ids if not 0 <= i < len(cards)]
    if not ids or bad or len(set(ids)) != len(ids):
        raise UserError('--gpus %s: MXNet sees %d GPU(s)%s' % (
            gpus, len(cards), '' if cards else ' (CPU build, or no driver): use --use_gpu False'))
    for card in (cards[i] for i in ids):
        if not runs_here(card):
            raise UserError('--gpus %s: %s, and the CUDA build of mxnet 1.9.1 carries kernels for %s only: use '
                            'the CPU build (`make setup GPU=0`, or --use_gpu False), or MXNet built from source '
                            'with CUDA 11.8 or later for sm_%d%d' % (gpus, describe(card), compat.CUDA_ARCHS_TEXT,
                                                                      card[2][0], card[2][1]))
    return [mx.gpu(i) for i in ids], ''


def choose_precision(asked, ctxs, arch, batch_size, source=None, resume=False, training=True, may_measure=True):
    """(precision, why, cached choice or None): 'float32' or 'bfloat16' for this run, and a few words
    on the choice.

    bfloat16 runs only the convolutions in bfloat16 (inputs and weights cast on the fly, fp32
    accumulation in oneDNN); the weights, their updates, the feature and class layers and both
    losses stay float32. ``asked`` is --precision. A stage that continues from a checkpoint
    (--resume, --second_train, --test: ``source``) takes the precision it records, so a resumed run
    ends where an uninterrupted one would; otherwise 'auto' measures which is faster here
    (precision.py). ``may_measure`` False (workers but the first) returns (None, '', None) where a
    measurement would be needed: rank 0's choice is used.
    """
    on_cpu, has_bf16 = ctxs[0].device_type == 'cpu', compat.cpu_has_bf16()
    recorded = source.meta.precision if source is not None else None
    if resume and recorded and asked not in ('auto', recorded):
        raise UserError('%s was trained in %s: resume it without --precision %s' % (source.path, recorded, asked))
    if asked == 'bfloat16' or (asked == 'auto' and recorded == 'bfloat16'):
        if asked == 'auto' and not training and not (on_cpu and has_bf16):  # measuring: the weights are float32
            return 'float32', '%s records bfloat16, which %s' % (
                source.path, 'this CPU has no instructions for' if on_cpu else 'runs on the CPU only'), None
        if not on_cpu:
            raise UserError('--precision bfloat16 is for the CPU (oneDNN); on %s use float32' % ctxs[0])
        if not has_bf16:
            raise UserError('this CPU has no bfloat16 instructions (avx512_bf16 or amx_bf16)%s: use --precision '
                            'float32' % (', and %s was trained in bfloat16' % source.path if recorded else ''))
        return 'bfloat16', 'asked for' if asked == 'bfloat16' else 'as %s records' % source.path, None
    if asked == 'float32':
        return 'float32', 'asked for', None
    if recorded:
        return recorded, 'as %s records' % source.path, None
    if not on_cpu or not has_bf16:
        return 'float32', 'on a GPU' if not on_cpu else 'this CPU has no bfloat16 instructions', None
    if not may_measure:
        return None, '', None
    try:
        choice = precision.choose(dict(dataclasses.asdict(arch), batch_size=batch_size))
    except (RuntimeError, OSError, ValueError) as e:  # a candidate could not be timed: the one that always runs
        return 'float32', 'the measurement of --precision auto failed (%s)' % e, None
    return choice.precision, precision.describe(choice), choice if choice.how == 'cached' else None


def share_precision(kv, choice):
    """Every worker of a distributed run takes rank 0's precision (its value in ``choice``)."""
    key = 1 << 20  # far from the GradientReducer's keys, which count from 0
    value, = from_rank0(kv, [key], [nd.array([1.0 if choice == 'bfloat16' else 0.0])])
    return 'bfloat16' if value.asscalar() > 0.5 else 'float32'


def setup_runtime(asked, devices, workers, arch, batch_size, source=None, resume=False, training=True,
                  kvstore='device'):
    """The Runtime of this process on ``devices`` (from get_contexts) among ``workers`` (from
    setup_workers); ``source`` is the checkpoint it continues from, if any; the rest as
    choose_precision takes them."""
    (ctxs, note), (kv, rank, num_workers) = devices, workers
    chosen, why, cached = choose_precision(asked, ctxs, arch, batch_size, source, resume, training,
                                           may_measure=rank == 0)
    if kv is not None:
        shared = share_precision(kv, chosen)
        why = why if shared == chosen else "worker 0's choice"
        chosen = shared
    if chosen == 'bfloat16':
        precision.enable_bfloat16()
    return Runtime(ctxs, chosen, kv, rank, num_workers, note, why, cached, kvstore)
