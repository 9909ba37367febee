"""Margin-based softmax heads, the successors of center loss in face recognition, as Gluon blocks.

Each head holds the class weights W (num_classes, feature_size), compares a feature x with every class
by the cosine of their angle, cos(theta_j) = W_j . x / (|W_j| |x|), and gives the logits to feed
``gluon.loss.SoftmaxCrossEntropyLoss``; the target class's cosine carries a margin that makes the
classes' regions on the sphere tighter than plain softmax's. Copy this file alone into your project
(it needs nothing else from this repository)::

    head = ArcFace(num_classes, feature_size)        # or NormFace, SphereFace, CosFace
    head.initialize(ctx=ctx)
    trainer = gluon.Trainer(net.collect_params() + head.collect_params(), 'sgd', {'learning_rate': 0.01})
    with autograd.record():
        logits = head(net(x), y)                     # the margin on each image's own class
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(logits, y)
    loss.backward()
    trainer.step(batch_size)
    scores = head(net(x))                            # without labels: the plain scaled cosines

A head called both ways must not be hybridized on its own (a hybridized block keeps one signature);
inside a hybridized parent it may be, as the parent traces it.

The target class's logit (the others are the same without the margin), and each paper's defaults:

- NormFace (Wang et al., ACM MM 2017): s cos(theta_y); s is learned in the paper, 20 here.
- SphereFace (Liu et al., CVPR 2017): |x| (l cos(theta_y) + psi(theta_y)) / (1 + l), the others
  |x| cos(theta_j); m = 4, l annealed from 1000 to 5.
- CosFace (Wang et al., CVPR 2018): s (cos(theta_y) - m); s = 64, m = 0.35.
- ArcFace (Deng et al., CVPR 2019): s cos(theta_y + m); s = 64, m = 0.5.
"""
import math

import mxnet as mx
from mxnet import gluon

__all__ = ['NormFace', 'SphereFace', 'CosFace', 'ArcFace', 'HEADS']


class _CosineHead(gluon.HybridBlock):
    """The class weights and the cosines; subclasses give the target class's logit (``_target``)."""

    def __init__(self, num_classes, feature_size, scale, margin, **kwargs):
        super(_CosineHead, self).__init__(**kwargs)
        self._num_classes, self._feature_size = int(num_classes), int(feature_size)
        self._scale = None if scale is None else float(scale)
        self._margin = margin
        with self.name_scope():
            self.weight = self.params.get('weight', shape=(self._num_classes, self._feature_size),
                                          init=mx.init.Xavier())

    @property
    def scale(self):
        return self._scale

    @property
    def margin(self):
        return self._margin

    def forward(self, features, labels=None):
        if labels is None:
            return super(_CosineHead, self).forward(features)
        return super(_CosineHead, self).forward(features, labels)

    def _cosines(self, F, features, weight):
        """(cos(theta) of every class (m, K), the features' norms (m, 1))."""
        norms = F.sqrt(F.sum(F.square(features), axis=1, keepdims=True) + 1e-12)
        w = F.L2Normalization(weight, mode='instance')
        cosines = F.FullyConnected(F.broadcast_div(features, norms), w, no_bias=True, num_hidden=self._num_classes)
        return F.clip(cosines, -1.0, 1.0), norms

    def _scaled(self, F, values, norms):
        return F.broadcast_mul(values, norms) if self._scale is None else values * self._scale

    def hybrid_forward(self, F, features, labels=None, weight=None, **params):
        cosines, norms = self._cosines(F, features, weight)
        if labels is None:
            return self._scaled(F, cosines, norms)
        target = F.pick(cosines, labels, axis=1)
        shifted = self._target(F, target, **params) - target       # the margin, on the target class only
        cosines = cosines + F.broadcast_mul(F.one_hot(labels, self._num_classes), F.expand_dims(shifted, axis=1))
        return self._scaled(F, cosines, norms)

    def _target(self, F, cos, **params):
        return cos


class NormFace(_CosineHead):
    r"""Normalised softmax (Wang et al., NormFace, ACM MM 2017): logits s cos(theta_j), no margin.

    Parameters
    ----------
    num_classes, feature_size : int
    scale : float, default 20
        s. The paper learns it; its analysis shows it must grow with the number of classes. 20 is the
        temperature 0.05 of pytorch-metric-learning's NormalizedSoftmaxLoss.
    margin : None
        NormFace has none (accepted so that every head is built alike).
    """

    def __init__(self, num_classes, feature_size, scale=20.0, margin=None, **kwargs):
        super(NormFace, self).__init__(num_classes, feature_size, scale, None, **kwargs)


class CosFace(_CosineHead):
    r"""Large margin cosine loss (Wang et al., CosFace, CVPR 2018; AM-Softmax): the target's logit is
    s (cos(theta_y) - m).

    Parameters
    ----------
    num_classes, feature_size : int
    scale : float, default 64
        s, as in the CosFace paper's experiments (AM-Softmax used 30).
    margin : float, default 0.35
        m, the paper's.
    """

    def __init__(self, num_classes, feature_size, scale=64.0, margin=0.35, **kwargs):
        super(CosFace, self).__init__(num_classes, feature_size, scale, float(margin), **kwargs)

    def _target(self, F, cos, **params):
        return cos - self._margin


class ArcFace(_CosineHead):
    r"""Additive angular margin (Deng et al., ArcFace, CVPR 2019): the target's logit is s cos(theta_y + m).

    cos(theta + m) = cos(theta) cos(m) - sin(theta) sin(m). Where theta + m would pass pi (cos(theta) <=
    cos(pi - m)) that logit would rise again as theta grows, so there, as insightface does, the target
    takes s (cos(theta) - m sin(m)) instead: a CosFace-like margin, below cos(theta + m) at the switch,
    so that the logit keeps falling with theta.

    Parameters
    ----------
    num_classes, feature_size : int
    scale : float, default 64
        s, the paper's.
    margin : float, default 0.5
        m in radians, the paper's.
    """

    def __init__(self, num_classes, feature_size, scale=64.0, margin=0.5, **kwargs):
        super(ArcFace, self).__init__(num_classes, feature_size, scale, float(margin), **kwargs)

    def _target(self, F, cos, **params):
        m = self._margin
        sin = F.sqrt(F.clip(1.0 - cos * cos, 1e-12, 1.0))  # a bounded gradient where cos(theta) = +-1
        arc = cos * math.cos(m) - sin * math.sin(m)
        return F.where(cos > math.cos(math.pi - m), arc, cos - m * math.sin(m))


class SphereFace(_CosineHead):
    r"""Angular softmax, A-Softmax (Liu et al., SphereFace, CVPR 2017): a multiplicative angular margin.

    The weights are normalised, the features are not: the logits are ‖x‖ cos(theta_j), and the
    target's is ‖x‖ psi(theta_y), with, for theta in [k pi / m, (k + 1) pi / m], k = 0 .. m - 1,

        psi(theta) = (-1)^k cos(m theta) - 2k,

    monotone decreasing on [0, pi] (cos(m theta) is the Chebyshev polynomial T_m of cos(theta)). As in
    the paper, psi is brought in gradually: the target's logit is ‖x‖ (lambda cos(theta_y) +
    psi(theta_y)) / (1 + lambda), lambda = max(lambda_min, base (1 + gamma t)^-power) at iteration t
    (the paper's code: base 1000, gamma 0.12, power 1, lambda_min 5, over 28,000 iterations; lambda
    reaches its floor at iteration 1,659, 6% of them). The trainer (or your loop) calls
    ``anneal(t, T)`` before each step, T the run's iterations: t is counted on the paper's scale,
    t * 28,000 / T, so that lambda reaches its floor at the same 6% of any run's length (``anneal(t)``:
    the paper's schedule by iteration, whose floor comes late in a short run and never in one under
    1,659 steps). lambda is a parameter of the block that takes no gradient, so a hybridized graph sees
    each new value.

    Parameters
    ----------
    num_classes, feature_size : int
    scale : float or None, default None
        None: the features' own norm ‖x‖, the paper's; a number s normalises the features too.
    margin : int, default 4
        m, the paper's.
    """

    def __init__(self, num_classes, feature_size, scale=None, margin=4, base=1000.0, gamma=0.12, power=1.0,
                 lambda_min=5.0, **kwargs):
        if int(margin) != margin or margin < 1:
            raise ValueError('SphereFace takes a whole margin m >= 1, got %r' % margin)
        super(SphereFace, self).__init__(num_classes, feature_size, scale, int(margin), **kwargs)
        self._anneal = (float(base), float(gamma), float(power), float(lambda_min))
        with self.name_scope():
            self.lmbd = self.params.get('lmbd', shape=(1,), init=mx.init.Constant(self.lambda_at(0)),
                                        grad_req='null', differentiable=False)

    ITERATIONS = 28000  # the paper's code's run (sphereface_solver.prototxt's max_iter)

    def lambda_at(self, iteration, iterations=None):
        base, gamma, power, lambda_min = self._anneal
        if iterations:  # the paper's schedule stretched (or shrunk) to a run of ``iterations``
            iteration = iteration * self.ITERATIONS / float(iterations)
        return max(lambda_min, base * (1.0 + gamma * iteration) ** -power)

    def anneal(self, iteration, iterations=None):
        """Set lambda for iteration ``iteration`` (0 for the first step) of a run of ``iterations``
        (None: the paper's schedule by iteration)."""
        value = mx.nd.array([self.lambda_at(iteration, iterations)])
        for data in self.lmbd.list_data():
            data[:] = value.as_in_context(data.context)

    def hybrid_forward(self, F, features, labels=None, weight=None, lmbd=None):
        scores = super(SphereFace, self).hybrid_forward(F, features, labels, weight=weight, lmbd=lmbd)
        if labels is None:
            # The plain scores need no lambda; adding 0 * lambda keeps it in the graph, so that a
            # hybridized parent neither warns that it is unused nor fails to infer its shape.
            scores = F.broadcast_add(scores, 0 * lmbd)
        return scores

    def _target(self, F, cos, lmbd=None):
        m = self._margin
        previous, chebyshev = F.ones_like(cos), cos        # T_0, T_1; T_{n+1} = 2 c T_n - T_{n-1}
        for _ in range(m - 1):
            previous, chebyshev = chebyshev, 2 * cos * chebyshev - previous
        # k = floor(m theta / pi): which of the m pieces theta lies in (no gradient flows through it)
        k = F.floor(F.stop_gradient(F.arccos(cos)) * (m / math.pi))
        k = F.clip(k, 0, m - 1)
        sign = 1 - 2 * (k - 2 * F.floor(k / 2))            # (-1)^k
        psi = sign * chebyshev - 2 * k
        return F.broadcast_div(F.broadcast_add(F.broadcast_mul(cos, lmbd), psi), 1 + lmbd)


HEADS = {'normface': NormFace, 'sphereface': SphereFace, 'cosface': CosFace, 'arcface': ArcFace}
