"""Pictures: 2-D feature maps (PCA for wider features), their GIFs, training curves, the comparison figure."""
import io

import numpy as np

from faults.atomic import atomic_write


PLOTTED = 10000  # the training images a feature map draws


def plot_sample(n, seed, size=PLOTTED):
    """Indices of the images drawn (sorted): the same in every frame and in the comparison figure; all of
    them up to ``size``. The first ``size`` of one seeded permutation, so that a smaller sample of a seed
    lies within a larger one (numpy's legacy choice without replacement cuts a permutation)."""
    return np.sort(np.random.RandomState(seed).choice(n, min(n, size), replace=False))


class Projection(object):
    """Identity for 2-D features; otherwise PCA to 2-D, fitted once per run so
    that every frame of a GIF is drawn in the same plane."""

    def __init__(self, mean=None, components=None):
        self.mean = None if mean is None else np.asarray(mean)
        self.components = None if components is None else np.asarray(components)

    def state(self):
        """JSON-able, to carry the same plane over a resumed run."""
        if self.components is None:
            return {}
        return {'mean': self.mean.tolist(), 'components': self.components.tolist()}

    def fit(self, features):
        if features.shape[1] > 2 and self.components is None:
            self.mean = features.mean(axis=0)
            _, _, vt = np.linalg.svd(features - self.mean, full_matrices=False)
            self.components = vt[:2].T
        return self

    def __call__(self, features):
        if features.shape[1] <= 2:
            return features
        return (features - self.mean) @ self.components


def class_colors(num_classes):
    """A fixed colour per class, the same in every frame and run: tab10 or tab20 for up to 20 classes,
    beyond that the hue wheel, class k at hue k / num_classes (an (num_classes, 4) array)."""
    import matplotlib
    if num_classes <= 20:
        cmap = matplotlib.colormaps['tab10' if num_classes <= 10 else 'tab20']
        return np.array([cmap(i) for i in range(num_classes)])
    return matplotlib.colormaps['hsv'](np.arange(num_classes) / float(num_classes))


def _save(plt, fig, path):
    """The figure as a PNG, written whole (a failed save leaves no half-written picture)."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format='png')
    finally:
        plt.close(fig)
    atomic_write(path, buf.getvalue())


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')  # no display needed
    import matplotlib.pyplot as plt
    return plt


def draw_features(ax, features, labels, num_classes, title, centers=None, class_names=None, center_labels=None,
                  held=None):
    """Scatter 2-D features coloured by class on ``ax``, centers as black-edged stars (of the
    classes ``center_labels``, by default 0, 1, ...) and ``held`` (features, labels), the
    classes kept out of training, as crosses. Up to 20 classes each is drawn apart with its name in
    the legend; beyond, all in one scatter (a legend would cover the map), and only the centers of
    the classes drawn."""
    colors = class_colors(num_classes)
    names = class_names if class_names and len(class_names) >= num_classes else [str(i) for i in
                                                                                 range(num_classes)]
    labels = np.asarray(labels, np.int64)
    few = num_classes <= 20
    for k in (range(num_classes) if few else [None]):
        pts, c = (features[labels == k], colors[k]) if few else (features, colors[labels])
        if len(pts):  # a class with no point here (held out, or not in the slice) gets no legend entry
            ax.scatter(pts[:, 0], pts[:, 1], s=2, color=c, alpha=0.6, linewidths=0,
                       label=names[k] if few else None, rasterized=True)
    if held is not None:
        held_labels = np.asarray(held[1], np.int64)
        for k in (np.unique(held_labels) if few else [None]):
            pts, c = (held[0][held_labels == k], colors[k]) if few else (held[0], colors[held_labels])
            ax.scatter(pts[:, 0], pts[:, 1], s=6, marker='x', color=c, alpha=0.5, linewidths=0.6,
                       label='%s (held out)' % names[k] if few else None, rasterized=True)
    if centers is not None:
        ids = np.arange(len(centers)) if center_labels is None else np.asarray(center_labels)
        shown = np.ones(len(ids), bool) if few else np.isin(ids, labels)
        ax.scatter(centers[shown, 0], centers[shown, 1], s=90 if few else 30, marker='*', c=colors[ids[shown]],
                   edgecolors='black', linewidths=0.8 if few else 0.3, zorder=3)
    if few:
        ax.legend(loc='upper right', markerscale=5, fontsize=7, framealpha=0.8, ncol=2 if num_classes > 10 else 1)
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=7)


def plot_features(path, features, labels, num_classes, title, centers=None, class_names=None, center_labels=None,
                  held=None):
    """One feature map, as a PNG; ``held``: (features, class ids) drawn as crosses (draw_features)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=90)
    draw_features(ax, features, labels, num_classes, title, centers, class_names, center_labels, held)
    fig.tight_layout()
    _save(plt, fig, path)


def plot_comparison(path, rows, num_classes, class_names=None):
    """The original port's figure: one row per run, training and test maps side by side.

    rows: [(run title, {'train': (features, labels), 'test': (...), 'held': (...) or None},
    centers, their classes (None: 0, 1, ...))]: labels are class ids (0..num_classes-1); 'held', the test images
    of classes kept out of training, is drawn as crosses on the test map.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 4.8 * len(rows)), dpi=80, squeeze=False)
    for (title, splits, centers, center_labels), row in zip(rows, axes):
        for ax, split in zip(row, ('train', 'test')):
            features, labels = splits[split]
            draw_features(ax, features, labels, num_classes, '%s\n%s set' % (title, split), centers, class_names,
                          center_labels, held=splits.get('held') if split == 'test' else None)
    fig.tight_layout()
    _save(plt, fig, path)


def plot_side_by_side(path, columns, num_classes, class_names=None):
    """One column per run, as the margin papers draw theirs: its training features above, the features of
    the classes it never trained on below (crosses; a blank panel when it held none out).

    columns: [(title, (features, labels) of training images, (features, labels) of held-out classes or
    None, centers, their classes)]."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(columns), figsize=(4.2 * len(columns), 8.4), dpi=80, squeeze=False)
    for k, (title, train, held, centers, center_labels) in enumerate(columns):
        draw_features(axes[0][k], train[0], train[1], num_classes, '%s\ntraining images' % title, centers,
                      class_names, center_labels)
        if held is None:
            axes[1][k].set_axis_off()
            axes[1][k].set_title('%s\nno class held out' % title, fontsize=10)
        else:
            draw_features(axes[1][k], held[0][:0], held[1][:0], num_classes,
                          '%s\nclasses never trained on' % title, held=held)
    fig.tight_layout()
    _save(plt, fig, path)


def plot_roc(path, curves, title):
    """ROC curves, TAR against FAR on a log scale. curves: [(label, far list, tar list, line style)]."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5), dpi=90)
    for label, far, tar, style in curves:
        ax.plot(far, tar, style, label=label, linewidth=1.4)
    ax.set_xscale('log')
    ax.set_xlim(1e-6, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel('false accept rate (different-class pairs accepted)')
    ax.set_ylabel('true accept rate (same-class pairs accepted)')
    ax.grid(alpha=0.3, which='both')
    ax.legend(loc='lower right', fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(plt, fig, path)


def make_gif(path, frames, frame_ms=400, last_ms=2000):
    """Looping GIF of the PNG ``frames``; the last one is held longer."""
    import imageio.v2 as imageio
    images = [imageio.imread(f)[..., :3] for f in frames]
    durations = [frame_ms] * (len(images) - 1) + [last_ms]
    # Pillow takes a list only for several frames.
    buf = io.BytesIO()
    imageio.mimsave(buf, images, format='GIF', duration=durations if len(images) > 1 else last_ms, loop=0)
    atomic_write(path, buf.getvalue())


def plot_curves(path, history, title):
    """Loss and accuracy per epoch of a stage's history (runs.meta.Epoch records)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    epochs = [h.epoch for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), dpi=90)
    for key, label in (('loss_softmax', 'softmax loss'), ('loss_center', 'center loss')):
        if any(getattr(h, key) is not None for h in history):
            ax1.plot(epochs, [getattr(h, key) for h in history], marker='.', label=label)
    ax1.set_xlabel('epoch')
    ax1.set_ylabel('training loss (mean per sample)')
    ax1.set_yscale('log')
    ax1.legend()
    for key, label in (('train_acc', 'train (softmax)'), ('test_acc_softmax', 'test (softmax)'),
                       ('test_acc_center', 'test (nearest center)')):
        ax2.plot(epochs, [getattr(h, key) for h in history], marker='.', label=label)
    ax2.set_xlabel('epoch')
    ax2.set_ylabel('accuracy')
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.legend(loc='lower right')
    ax2.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    _save(plt, fig, path)
