"""The images a run reads, two ways with one interface: held in memory on the device (MNIST and
Fashion-MNIST: 47 MB as float32), or streamed from disk (your own image folders and RecordIO), decoded
by DataLoader workers while the network trains on the batch before.

Either gives ``shape`` (N, C, H, W); ``batches(index_lists)``, the normalised images of each list of
indices in turn (the training loop's batches, in the order the epoch drew); ``chunks(size)``, the whole
set in order (evaluation); ``take(indices)``, some of them at once; and ``subset(indices)``.
"""
from devices import compat  # noqa: F401  (before mxnet)

import os
import signal

import numpy as np
import mxnet as mx
from mxnet import gluon, nd

from faults.errors import DataError
from imagesets import decode


def normalise(pixels, mean, std):
    """uint8 pixels (an NDArray, or a numpy array in a decoding worker: the same float32 arithmetic) as the
    network takes them: float32, scaled to [0, 1], less the training images' mean, over their standard
    deviation. Every image a network sees goes through here."""
    return (pixels.astype('float32') / 255.0 - mean) / std


class InMemory(object):
    """Normalised float32 images (N, C, H, W) held on a device."""

    def __init__(self, x):
        self.x = x

    @classmethod
    def of(cls, pixels, mean, std, ctx):
        """Images from uint8 pixels (N, H, W) or (N, C, H, W) (numpy), normalised, on ``ctx``."""
        pixels = pixels[:, None] if pixels.ndim == 3 else pixels
        return cls(normalise(nd.array(pixels, ctx=ctx, dtype='uint8'), mean, std))

    @property
    def shape(self):
        return self.x.shape

    @property
    def context(self):
        return self.x.context

    def take(self, indices):
        return nd.take(self.x, nd.array(indices, ctx=self.x.context, dtype='int32'))

    def batches(self, index_lists):
        for indices in index_lists:
            yield self.take(indices)

    def chunks(self, size):
        for start in range(0, self.x.shape[0], size):
            yield self.x[start:start + size]

    def subset(self, indices):
        return InMemory(self.take(indices))


class _Batches(gluon.data.Dataset):
    """Item k: the images of ``index_lists[k]`` (positions among ``items`` of ``split``) decoded together in
    the worker into one uint8 (n, C, H, W) array: a batch crosses to the training process in one piece, as
    bytes (a quarter of its float32 size), and is normalised there, on the device."""

    def __init__(self, split, items, channels, size, index_lists):
        self.split, self.items, self.channels, self.size = split, items, channels, size
        self.index_lists = index_lists

    def __len__(self):
        return len(self.index_lists)

    def __getitem__(self, k):
        positions = self.index_lists[k]
        pixels = np.empty((len(positions), self.channels) + self.size, np.uint8)
        for row, i in enumerate(positions):
            pixels[row] = self._one(int(self.items[int(i)]))
        return pixels

    def _one(self, j):
        name = decode.item_name(self.split, j)
        try:
            return decode.decode(decode.read_bytes(self.split, j), self.channels, self.size, name)
        except DataError:
            raise
        except Exception as e:  # anything else a broken image causes comes back as one line, too
            raise DataError('%s cannot be decoded as an image (%s)' % (name, decode.decode_reason(str(e))))


def _worker_signals():
    """In a decoding worker, a fork of the training process: SIGTERM ends it (the loader stops its
    workers that way) and Ctrl-C is the training process's to handle. Set in the child itself, so the
    training process keeps its own handlers all along and a signal never finds it without them."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not Python's main thread: nothing to change
        pass


_HOOKED = []


def _shared(items):
    """A worker's batch (the one item) as an NDArray in shared memory, for the training process to map."""
    return nd.array(items[0], dtype=items[0].dtype, ctx=mx.Context('cpu_shared', 0))


def _local(items):
    return nd.array(items[0], dtype=items[0].dtype)


class _Each(object):
    """The batch sampler of a loader whose every item is a batch: [0], [1], ... made as the loader asks."""

    def __init__(self, count):
        self.count = count

    def __len__(self):
        return self.count

    def __iter__(self):
        return ([k] for k in range(self.count))


class Streamed(object):
    """Images ``items`` of a split on disk (sources.Split), decoded to ``channels`` and ``size``
    (height, width), normalised with (mean, std) on ``ctx``, by ``workers`` DataLoader processes
    (0: in this process)."""

    def __init__(self, split, items, channels, size, mean, std, ctx, workers):
        self.split, self.items = split, np.asarray(items)  # (int32 positions: 4 bytes an image)
        self.channels, self.size, self.mean, self.std = channels, tuple(size), mean, std
        self.ctx, self.workers = ctx, workers

    @property
    def shape(self):
        return (len(self.items), self.channels) + self.size

    @property
    def context(self):
        return self.ctx

    def _loader(self, index_lists):
        """Each list's images, a batch at a time, as uint8 pixels."""
        dataset = _Batches(self.split, self.items, self.channels, self.size, index_lists)
        if self.workers and not _HOOKED:
            os.register_at_fork(after_in_child=_worker_signals)
            _HOOKED.append(True)
        # each item is a whole batch: the loader's batching only puts it in an NDArray, in shared memory when
        # it comes from a worker (one copy, not the default's two)
        loader = gluon.data.DataLoader(dataset, batch_sampler=_Each(len(index_lists)), num_workers=self.workers,
                                       batchify_fn=_shared if self.workers else _local)
        return iter(loader)

    def batches(self, index_lists):
        # normalise() of the 256 pixel values, looked up: the same numbers, bit for bit, in one pass (a
        # third of the time of its four passes: at 128 images of 112x112 the difference is 30 ms a batch)
        table = nd.array(normalise(np.arange(256, dtype=np.uint8), self.mean, self.std), ctx=self.ctx)
        for pixels in self._loader(index_lists):
            yield nd.take(table, pixels.as_in_context(self.ctx))

    def take(self, indices):
        return next(self.batches([indices]))

    def chunks(self, size):
        n = len(self.items)
        return self.batches([range(start, min(start + size, n)) for start in range(0, n, size)])

    def subset(self, indices):
        return Streamed(self.split, self.items[np.asarray(indices)], self.channels, self.size, self.mean,
                        self.std, self.ctx, self.workers)

    def statistics(self, limit=60000, seed=0, chunk=500):
        """(mean, std) of the pixels, scaled to [0, 1], of every image (or of a seeded sample of
        ``limit`` of them when there are more): one decoding pass."""
        n = len(self.items)
        pick = np.arange(n) if n <= limit else np.sort(np.random.RandomState(seed).choice(n, limit, replace=False))
        total, squares, count = 0.0, 0.0, 0
        lists = [pick[s:s + chunk] for s in range(0, len(pick), chunk)]
        for pixels in self._loader(lists):
            v = pixels.asnumpy().astype(np.float64)
            total, squares, count = total + v.sum(), squares + (v * v).sum(), count + v.size
        mean = total / count
        return float(mean / 255.0), float(np.sqrt(max(squares / count - mean * mean, 0.0)) / 255.0)

