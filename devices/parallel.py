"""Several workers: each process's place among them, and the sums of gradients and the
starting parameters that pass between them through MXNet's KVStore."""
import os

from devices import compat  # noqa: F401  (before mxnet)
import mxnet as mx
from mxnet import nd

from faults.errors import UserError


def setup_workers(kvstore):
    """(KVStore or None, rank, number of workers): a distributed KVStore when ``kvstore`` (--kvstore)
    asks for one."""
    if not kvstore.startswith('dist'):
        return None, 0, 1
    if 'DMLC_ROLE' not in os.environ:
        raise UserError('--kvstore %s needs a scheduler and servers: start the workers with '
                        '`python -m devices.launch -n 2 -- python main.py ...`' % kvstore)
    kv = mx.kv.create(kvstore)
    return kv, kv.rank, kv.num_workers


class GradientReducer(object):
    """Sums the gradients of ``params`` over devices and worker processes through ``kv``
    (a KVStore: 'local' for one process, dist_sync across processes); Trainers
    without a KVStore then update, so every worker takes the same step.

    Every worker starts from rank 0's parameters. Gluon's Trainer would hand
    them over lazily (init, then pull) just before the first gradient push, and
    in MXNet 1.9 that goes wrong: KVStoreDist aliases its send buffer to the
    array it pushes, so ``init`` returns (and passes its barrier) before rank
    0's values have reached the servers. A worker's pull can then reach a
    server first (the server aborts: "init N first"), or a push can overtake
    the pull (a worker that learns nothing, or NaN): docs/devices.md. So the
    values are pushed, rank 0 waits for the servers to
    acknowledge them, all workers meet at a barrier, and only then pull.
    """

    def __init__(self, kv, params):
        self.kv = mx.kv.create(kv) if isinstance(kv, str) else kv
        self.params = list(params)
        # Plain copies: oneDNN may hold a parameter in a layout the KVStore cannot send.
        values = [nd.array(p.list_data()[0].asnumpy()) for p in self.params]
        for p, value in zip(self.params, from_rank0(self.kv, list(range(len(values))), values)):
            p.set_data(value)

    def allreduce_grads(self):
        for key, p in enumerate(self.params):
            self.kv.pushpull(key, p.list_grad(), out=p.list_grad(), priority=-key)


def from_rank0(kv, keys, values):
    """``values`` (plain NDArrays) overwritten with rank 0's, on every worker: the hand-over
    GradientReducer's docstring explains. Returns ``values``."""
    kv.init(keys, values)
    nd.waitall()     # rank 0: its pushes are acknowledged
    kv._barrier()    # nobody pulls before that
    kv.pull(keys, out=values)
    nd.waitall()
    return values


def param_checksum(*blocks):
    return float(sum(p.list_data()[0].abs().sum().asscalar()
                     for block in blocks if block is not None for p in block.collect_params().values()))
