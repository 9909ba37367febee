"""The images a run reads, two ways with one interface: held in memory on the device (MNIST and
Fashion-MNIST: 47 MB as float32), or streamed from disk (your own image folders and RecordIO), decoded
by DataLoader workers while the network trains on the batch before.

Either gives ``shape`` (N, C, H, W); ``batches(index_lists)``, the normalised images of each list of
indices in turn (the training loop's batches, in the order the epoch drew); ``chunks(size)``, the whole
set in order (evaluation); ``take(indices)``, some of them at once; and ``subset(indices)``.
"""
import compat  # noqa: F401  (before mxnet)

import signal
import threading

import numpy as np
from mxnet import gluon, nd

import sources


class InMemory(object):
    """Normalised float32 images (N, C, H, W) held on a device."""

    def __init__(self, x):
        self.x = x

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
        return sources.decode(sources.read_bytes(self.split, j), self.channels, self.size,
                              sources.item_name(self.split, j))


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

    def _normalise(self, pixels):
        x = pixels.as_in_context(self.ctx).astype('float32')
        return (x / 255.0 - self.mean) / self.std  # the same float32 steps as utils.to_nd

    def _loader(self, index_lists):
        dataset = _Decoded(self.split, self.items, self.channels, self.size)
        # numpy items: the workers' batches come back through shared memory (DataLoader's default).
        # The workers are forked as the loader is made: they must not inherit main.py's SIGTERM
        # handler, or the loader's own SIGTERM at its end would raise in them.
        held = threading.current_thread() is threading.main_thread() and self.workers > 0
        before = signal.signal(signal.SIGTERM, signal.SIG_DFL) if held else None
        try:
            return gluon.data.DataLoader(dataset, batch_sampler=[list(map(int, i)) for i in index_lists],
                                         num_workers=self.workers)
        finally:
            if held:
                signal.signal(signal.SIGTERM, before)

    def batches(self, index_lists):
        for pixels in self._loader(index_lists):
            yield self._normalise(pixels)

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

