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
from mxnet import gluon, nd

from faults.errors import DataError
from imagesets import decode


def normalise(pixels, mean, std):
    """uint8 pixels (an NDArray) as the network takes them: float32, scaled to [0, 1], less the training
    images' mean, over their standard deviation. Every image a network sees goes through here."""
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


class _Decoded(gluon.data.Dataset):
    """Item i: the uint8 (C, H, W) pixels of image ``items[i]`` of ``split`` (decoded in the worker)."""

    def __init__(self, split, items, channels, size):
        self.split, self.items, self.channels, self.size = split, items, channels, size

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        j = int(self.items[i])
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


class _AsLists(object):
    """The index lists a DataLoader's batch sampler gives, each made a list of ints when the loader asks
    (a whole epoch's at once would take some 40 bytes an image)."""

    def __init__(self, index_lists):
        self.index_lists = index_lists

    def __len__(self):
        return len(self.index_lists)

    def __iter__(self):
        return (list(map(int, indices)) for indices in self.index_lists)


class Streamed(object):
    """Images ``items`` of a split on disk (sources.Split), decoded to ``channels`` and ``size``
    (height, width), normalised with (mean, std) on ``ctx``, by ``workers`` DataLoader processes
    (0: in this process)."""

    def __init__(self, split, items, channels, size, mean, std, ctx, workers):
        self.split, self.items = split, np.asarray(items, np.int64)
        self.channels, self.size, self.mean, self.std = channels, tuple(size), mean, std
        self.ctx, self.workers = ctx, workers

    @property
    def shape(self):
        return (len(self.items), self.channels) + self.size

    @property
    def context(self):
        return self.ctx

    def _loader(self, index_lists):
        dataset = _Decoded(self.split, self.items, self.channels, self.size)
        if self.workers and not _HOOKED:
            os.register_at_fork(after_in_child=_worker_signals)
            _HOOKED.append(True)
        # numpy items: the workers' batches come back through shared memory (DataLoader's default)
        return gluon.data.DataLoader(dataset, batch_sampler=_AsLists(index_lists), num_workers=self.workers)

    def batches(self, index_lists):
        for pixels in self._loader(index_lists):
            yield normalise(pixels.as_in_context(self.ctx), self.mean, self.std)

    def take(self, indices):
        return next(self.batches([indices]))

    def chunks(self, size):
        n = len(self.items)
        return self.batches([range(start, min(start + size, n)) for start in range(0, n, size)])

    def subset(self, indices):
        return Streamed(self.split, self.items[np.asarray(indices, np.int64)], self.channels, self.size, self.mean,
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

