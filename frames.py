"""What a stage draws, and when: feature-map frames at the end of each epoch and, with few
epochs, within them too, so that each GIF shows the clusters forming in at least --frames
frames; then the GIFs.

A frame shows the same points every time: the training images of ``plot_idx`` (10,000
sampled once per run) and the test images of ``test_idx`` (3,000). A training image is
drawn at the feature its latest training step computed, which costs nothing (the steps
compute them anyway); the test images need a forward pass, the one price of a frame
within an epoch (the epoch's evaluation computes them at its end).
"""
import math

import numpy as np
from mxnet import nd

import evaluation
import pictures

TEST_POINTS = 3000


class Frames(object):
    """The frames of one stage: where they fall, and the latest features of the plotted images."""

    def __init__(self, plot_idx, data, frames, epochs, seed, steps_per_epoch):
        self.plot_idx = plot_idx
        self.per_epoch = max(1, int(math.ceil(frames / float(epochs))))
        # after which step of an epoch (1-based count) a frame is drawn: the last one is the epoch's end
        self.after = {}
        for j in range(self.per_epoch - 1, 0, -1):  # the first j wins where an epoch has fewer steps than frames
            self.after[int(round(j * steps_per_epoch / float(self.per_epoch)))] = j
        self.after.pop(0, None)
        self.after.pop(steps_per_epoch, None)
        self.steps = steps_per_epoch
        n_test = data.test_x.shape[0]
        self.test_idx = np.sort(np.random.RandomState(seed + 1).choice(n_test, min(n_test, TEST_POINTS),
                                                                        replace=False))
        self.test_x = data.test_x.take(self.test_idx)  # held in memory: drawn again and again
        self.row = np.full(data.train_x.shape[0], -1, np.int64)  # training image -> its row among the plotted
        self.row[plot_idx] = np.arange(len(plot_idx))
        self.latest = None  # features of the plotted training images as last computed; NaN: not yet

    def due(self, steps_done):
        """Whether a frame within the epoch falls after ``steps_done`` steps."""
        return steps_done in self.after

    def within(self, stage, data, epoch, steps_done, feats, seen, train_acc):
        """Draw a frame of ``stage`` (train.Stage) ``steps_done`` steps into ``epoch``: ``feats`` (device
        arrays) are the features of the training images ``seen`` so far this epoch, in that order."""
        position = epoch - 1 + self.after[steps_done] / float(self.per_epoch)
        self._remember(np.concatenate([f.asnumpy() for f in feats]), np.concatenate(seen))  # (a few MB at most)
        scores, test_feat = evaluation.forward_all(stage.net, self.test_x)
        scores, test_feat = scores.asnumpy(), test_feat.asnumpy()
        test_y = data.test_y.asnumpy().astype(int)[self.test_idx]
        test_acc = float((scores.argmax(axis=1) == test_y).mean())
        self._draw(stage, data, position, test_feat, train_acc, test_acc, self._centers(stage, data))

    def epoch_end(self, stage, data, record, train_feat, test_feat, centers):
        """The frame of an epoch's end, from the features its evaluation computed."""
        plotted = nd.array(self.plot_idx, ctx=train_feat.context, dtype='int32')
        self.latest = nd.take(train_feat, plotted).asnumpy()
        self._draw(stage, data, record['epoch'], test_feat.asnumpy()[self.test_idx], record['train_acc'],
                   record['test_acc_softmax'], centers.asnumpy())

    def _remember(self, features, seen):
        """The latest features of the plotted images among ``seen`` (an image seen twice: the later)."""
        if self.latest is None:
            self.latest = np.full((len(self.plot_idx), features.shape[1]), np.nan, np.float32)
        images, from_end = np.unique(seen[::-1], return_index=True)  # an image seen twice: the later
        rows, at = self.row[images], len(seen) - 1 - from_end
        self.latest[rows[rows >= 0]] = features[at[rows >= 0]]

    def _centers(self, stage, data):
        if stage.center_loss is not None:
            return stage.center_loss.centers.weight.list_data()[0].asnumpy()
        known = ~np.isnan(self.latest[:, 0])  # softmax alone: the class means of the features drawn
        labels = data.train_y.asnumpy().astype(int)[self.plot_idx][known]
        feats = self.latest[known]
        return np.stack([feats[labels == k].mean(axis=0) if (labels == k).any() else np.zeros(feats.shape[1])
                         for k in range(stage.arch.num_classes)])

    def _draw(self, stage, data, position, test_feat, train_acc, test_acc, centers):
        train_feat = self.latest
        known = ~np.isnan(train_feat[:, 0])  # in a first epoch's frames, the images not yet trained on
        if not known.any():
            return
        stage.projection.fit(train_feat[known])
        ids = data.classes  # labels back to class ids: colours and names stay those of the dataset's classes
        maps = {'train': (train_feat[known], ids[data.train_y.asnumpy().astype(int)[self.plot_idx][known]],
                          train_acc),
                'test': (test_feat, ids[data.test_y.asnumpy().astype(int)[self.test_idx]], test_acc)}
        when = 'epoch %d' % position if position == int(position) else 'epoch %.2f' % position
        for split, (feat, labels, acc) in maps.items():
            pictures.plot_features(stage.files.frame(split, position, 2 if self.per_epoch <= 100 else 3),
                                   stage.projection(feat), labels,
                                   data.num_total, '%s (%s stage), %s set, %s, accuracy %.4f'
                                   % (stage.shown, stage.kind, split, when, acc),
                                   centers=stage.projection(centers), class_names=data.class_names,
                                   center_labels=ids)


def make_gifs(files, epochs):
    """Each split's frames up to ``epochs``, in order, as a GIF."""
    for split in ('train', 'test'):
        pictures.make_gif(files.gif(split), files.frames(split, epochs))
