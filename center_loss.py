"""Center loss (Wen et al., ECCV 2016) as a Gluon loss block.

Drop-in use::

    center_loss = CenterLoss(num_classes=10, feature_size=2, lmbd=1.0)
    center_loss.initialize(ctx=ctx)
    center_trainer = gluon.Trainer(center_loss.collect_params(), 'sgd',
                                   {'learning_rate': alpha})   # alpha of the paper
    with autograd.record():
        scores, features = net(x)
        loss = softmax_ce(scores, y) + center_loss(features, y)
    loss.backward()
    trainer.step(batch_size)
    center_trainer.step(batch_size)
"""
from mxnet import gluon, nd
from mxnet.gluon import nn
from mxnet.gluon.loss import _apply_weighting

__all__ = ['CenterLoss']

UPDATES = ('gradient', 'paper')


class CenterLoss(gluon.loss.Loss):
    r"""Center loss with the class centers kept in an ``nn.Embedding``.

    For a batch of features :math:`x_i` with labels :math:`y_i` (i = 1..m) and
    :math:`n_k`, the number of samples of class k in the batch:

    ``update='gradient'`` (default; the balanced loss of mxnet-center-loss)::

        loss_i = lmbd / 2 * ||x_i - c_{y_i}||^2 / n_{y_i}

    Features and centers both get the ordinary gradient of this loss, so each
    class weighs the same whatever its count in the batch.  The centers are
    trained by whatever Trainer holds ``collect_params()`` of this block
    (conventionally plain SGD at rate ``alpha``).

    ``update='paper'`` (Eq. 2-4 of the paper, exactly)::

        loss_i         = lmbd / 2 * ||x_i - c_{y_i}||^2
        dL/dx_i        = lmbd * (x_i - c_{y_i})                         (Eq. 3)
        delta c_j      = sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)        (Eq. 4)
        c_j           <- c_j - alpha * delta c_j

    The center gradient is built in the graph with stop-gradients, and scaled
    by m so that ``Trainer('sgd', {'learning_rate': alpha}).step(m)`` (which
    divides by m) moves each center by exactly ``-alpha * delta c_j``: the step
    does not depend on the batch size, on lmbd, or on the network's
    learning-rate schedule.  Give the centers a Trainer of their own with no
    momentum and no weight decay for this to hold.

    Class counts n are computed in the graph (``one_hot(y).sum(0)``, then a
    ``take``), so the block hybridizes and never copies to the host.

    Parameters
    ----------
    num_classes : int
        Number of classes, i.e. of centers.
    feature_size : int
        Dimension of the features (and of each center).
    lmbd : float, default 1.0
        lambda of the paper: the weight of the center loss against softmax.
    update : {'gradient', 'paper'}, default 'gradient'
        How the centers learn, see above.
    weight : float or None
        Global scalar weight for the loss (Gluon convention).
    batch_axis : int, default 0
        The axis that represents the mini-batch.

    Inputs
    ------
    - **features**: (m, feature_size) float array.
    - **labels**: (m,) class indices in [0, num_classes), float32 or int.
    - **counts** (optional): (num_classes,) float32 class counts n_k of the *whole*
      batch, for a batch split across devices: with them each slice's loss and
      gradients are its share of the whole batch's, so the sum over devices equals
      the single-device result (and m in Eq. 4 is ``counts.sum()``). By default
      they are the counts of ``labels``. A hybridized block must be called the
      same way each time: always with counts, or never.

    Outputs
    -------
    - **loss**: (m,) per-sample loss.

    The centers are ``self.centers.weight``, shape (num_classes, feature_size).
    """

    def __init__(self, num_classes, feature_size, lmbd=1.0, update='gradient',
                 weight=None, batch_axis=0, **kwargs):
        super(CenterLoss, self).__init__(weight, batch_axis, **kwargs)
        if update not in UPDATES:
            raise ValueError('update must be one of %s, got %r' % (UPDATES, update))
        self._num_classes = int(num_classes)
        self._feature_size = int(feature_size)
        self._lmbd = float(lmbd)
        self._update = update
        with self.name_scope():
            self.centers = nn.Embedding(self._num_classes, self._feature_size)

    @property
    def num_classes(self):
        return self._num_classes

    @property
    def feature_size(self):
        return self._feature_size

    def forward(self, features, labels, counts=None):
        # Imperative calls get their inputs checked: Embedding would silently
        # clip an out-of-range label onto the last center.
        if isinstance(features, nd.NDArray) and not self._active:
            self._check(features, labels)
        if counts is None:
            return super(CenterLoss, self).forward(features, labels)
        return super(CenterLoss, self).forward(features, labels, counts)

    def _check(self, features, labels):
        if features.ndim != 2 or features.shape[1] != self._feature_size:
            raise ValueError('CenterLoss expects features of shape (batch, %d), got %s'
                             % (self._feature_size, features.shape))
        if labels.shape != (features.shape[0],):
            raise ValueError('CenterLoss expects labels of shape (%d,), got %s'
                             % (features.shape[0], labels.shape))
        if labels.size:
            lo, hi = labels.min().asscalar(), labels.max().asscalar()
            if lo < 0 or hi >= self._num_classes or (labels != labels.round()).sum().asscalar():
                raise ValueError('CenterLoss labels must be integers in [0, %d), got values in '
                                 '[%g, %g]' % (self._num_classes, lo, hi))

    def hybrid_forward(self, F, features, labels, counts=None):
        labels = F.cast(labels, 'float32')
        centers_y = self.centers(labels)                                # c_{y_i}, (m, d)
        if counts is None:
            counts = F.sum(F.one_hot(labels, self._num_classes), axis=0)  # n_k, (K,)
        n_y = F.take(counts, labels)                                    # n_{y_i}, (m,)

        if self._update == 'gradient':
            sq = F.sum(F.square(features - centers_y), axis=1)         # ||x_i - c_{y_i}||^2
            loss = self._lmbd * 0.5 * sq / n_y
        else:
            # Eq. 3: the features see the centers as constants.
            sq = F.sum(F.square(features - F.stop_gradient(centers_y)), axis=1)
            loss = self._lmbd * 0.5 * sq
            # Eq. 4: a term that is zero in value, whose gradient w.r.t. c_j is
            # m * sum_{i: y_i=j} (c_j - x_i) / (1 + n_j); m cancels Trainer.step(m).
            m = F.sum(counts)
            pull = F.sum(F.square(F.stop_gradient(features) - centers_y), axis=1)
            pull = F.broadcast_mul(0.5 * pull / (1 + n_y), m)
            loss = loss + pull - F.stop_gradient(pull)

        return _apply_weighting(F, loss, self._weight)
