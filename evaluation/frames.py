"""What a stage draws, and when: feature-map frames at the end of each epoch and, with few
epochs, within them too, so that each GIF shows the clusters forming in at least --frames
frames; then the GIFs.

A frame shows the same points every time: the training images of ``plot_idx`` (10,000
sampled once per run) and the test images of ``test_idx`` (3,000). A training image is
drawn at the feature its latest training step computed, which costs nothing (the steps
compute them anyway); the test images need a forward pass, the one price of a frame
within an epoch (the epoch's evaluation computes them at its end). The stage hands each
frame what it draws; this module knows where frames fall and how they are named and drawn.
"""
import math

import numpy as np

from evaluation import pictures

TEST_POINTS = 3000


def test_sample(n_test, seed):
    """The test images every frame of a run draws: at most TEST_POINTS, seeded."""
    return np.sort(np.random.RandomState(seed + 1).choice(n_test, min(n_test, TEST_POINTS), replace=False))


class Frames(object):
    """Where the frames of a stage fall, and how each is drawn.

    ``files``: the stage's RunFiles; ``frames``, ``epochs``, ``steps_per_epoch``: at least ``frames``
    frames over ``epochs`` epochs of that many steps; ``title``: what the pictures call the stage;
    ``classes``: the dataset's ids of the labels (colours and names stay those of the dataset's
    classes), ``num_total`` and ``class_names`` of the dataset; ``projection``: the plane every frame
    is drawn in (pictures.Projection, fitted on the first frame's features)."""

    def __init__(self, files, frames, epochs, steps_per_epoch, title, classes, num_total, class_names, projection):
        self.files, self.title, self.projection = files, title, projection
        self.classes, self.num_total, self.class_names = np.asarray(classes), num_total, class_names
        self.per_epoch = max(1, int(math.ceil(frames / float(epochs))))
        # after which step of an epoch (1-based count) a frame is drawn: the last one is the epoch's end
        self.after = {}
        for j in range(self.per_epoch - 1, 0, -1):  # the first j wins where an epoch has fewer steps than frames
            self.after[int(round(j * steps_per_epoch / float(self.per_epoch)))] = j
        self.after.pop(0, None)
        self.after.pop(steps_per_epoch, None)
        self.steps = steps_per_epoch

    def due(self, steps_done):
        """Whether a frame within the epoch falls after ``steps_done`` steps."""
        return steps_done in self.after

    def position(self, epoch, steps_done=None):
        """Where in the stage a frame ``steps_done`` steps into ``epoch`` falls, in epochs (None: its end)."""
        return epoch if steps_done is None else epoch - 1 + self.after[steps_done] / float(self.per_epoch)

    def draw(self, position, train, test, centers, held=None):
        """The two maps of a frame at ``position``: ``train`` and ``test`` are (features, labels 0..K-1,
        accuracy) of the images drawn (numpy; a training image not yet trained on this stage has NaN
        features and is left out), ``centers`` (K, d) those of the classes trained on; ``held``: (features,
        dataset class ids) of the held-out classes' test images, drawn as crosses on the test map."""
        known = ~np.isnan(train[0][:, 0])
        if not known.any():
            return
        self.projection.fit(train[0][known])
        when = 'epoch %d' % position if position == int(position) else 'epoch %.2f' % position
        for split, (feat, labels, acc) in (('train', (train[0][known], train[1][known], train[2])), ('test', test)):
            pictures.plot_features(self.files.frame(split, position, 2 if self.per_epoch <= 100 else 3),
                                   self.projection(feat), self.classes[labels], self.num_total,
                                   '%s, %s set, %s, accuracy %.4f' % (self.title, split, when, acc),
                                   centers=self.projection(centers), class_names=self.class_names,
                                   center_labels=self.classes,
                                   held=(self.projection(held[0]), held[1]) if held is not None and split == 'test'
                                   else None)


def make_gifs(files, epochs):
    """Each split's frames up to ``epochs``, in order, as a GIF."""
    for split in ('train', 'test'):
        pictures.make_gif(files.gif(split), files.frames(split, epochs))
