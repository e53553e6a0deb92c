r"""Gradient noise: what a minibatch gradient is as an estimate, in closed form.

Let :math:`g_n = \nabla \ell_n(\theta)` be the per-example gradients of the N training examples and
:math:`g = \frac1N \sum_n g_n` their mean (the full-batch gradient). Their covariance, with the 1/N of a finite
population (not 1/(N-1)),

.. math::
    \Sigma = \frac1N \sum_n (g_n - g)(g_n - g)^\top, \qquad
    \operatorname{tr}\Sigma = \frac1N \sum_n \lVert g_n \rVert^2 - \lVert g \rVert^2 .

A minibatch gradient :math:`g_B = \frac1m \sum_{i=1}^m g_{n_i}` is unbiased, :math:`E g_B = g`, and its
covariance :math:`C_m = \operatorname{Cov} g_B` is, for m indices drawn

* with replacement (i.i.d. uniform): :math:`C_m = \Sigma / m`;
* without replacement (a uniformly random m-subset): :math:`C_m = \frac{\Sigma}{m} \frac{N - m}{N - 1}`, the
  finite-population correction of survey sampling (Cochran, *Sampling Techniques*, 1977, Thm 2.2), which makes
  the noise vanish at m = N.

So the noise's standard deviation :math:`\sqrt{\operatorname{tr} C_m}` falls as :math:`m^{-1/2}` while a step costs
O(m) (Goodfellow et al., *Deep Learning*, 2016, Sec. 8.1.3). The ratio :math:`B_{simple} =
\operatorname{tr}\Sigma / \lVert g\rVert^2` is McCandlish et al.'s (2018, "An empirical model of large-batch
training") simple noise scale: around it, larger batches stop buying proportionally faster progress.

One SGD step :math:`\theta' = \theta - \eta g_B` changes the loss, to second order and in expectation over the
batch (:math:`E[g_B^\top H g_B] = g^\top H g + \operatorname{tr}(H C_m)`),

.. math::
    E\,L(\theta - \eta g_B) = L - \eta \lVert g\rVert^2 + \frac{\eta^2}{2}\left(g^\top H g
    + \operatorname{tr}(H C_m)\right) + O(\eta^3),

the noise term :math:`\operatorname{tr}(H C_m)` being the price of a small batch: the largest safe step shrinks
with it. :func:`enumerate_batches` lists every batch with its probability, so each statement above can be checked
exactly on a small problem (the tests and the ``noise-scaling`` scenario do).

Shapes: N examples, P parameters, m batch size. ``G: (N, P)`` per-example gradients.
"""
import itertools
import math
from dataclasses import dataclass

import numpy as np

from ..backend import namespace


def _check_batch_size(m, N):
    if int(m) != m or not 1 <= m:
        raise ValueError(f"the batch size m must be a positive integer, got {m!r}")
    if N is not None and m > N:
        raise ValueError(f"a batch of m = {m} drawn without replacement needs m <= N = {N}")


def finite_population_factor(m, N, replacement):
    r"""The factor of :math:`\Sigma/m` in the minibatch covariance: 1 with replacement, :math:`(N-m)/(N-1)`
    without (0 at m = N: the full batch has no noise; 1 for N = 1 is moot: then Sigma = 0)."""
    if replacement:
        _check_batch_size(m, None)
        return 1.0
    _check_batch_size(m, N)
    return (N - m) / (N - 1) if N > 1 else 0.0


def gradient_covariance(G):
    r"""Covariance of the per-example gradients, :math:`\Sigma = \frac1N (G - \bar g)^\top (G - \bar g)`.

    G: (N, P) per-example gradients. Returns (P, P). Dense: for large P use :func:`gradient_noise` for its trace.
    """
    xp = namespace(G)
    if G.ndim != 2:
        raise ValueError(f"G must be (N, P) per-example gradients, got shape {tuple(G.shape)}")
    D = G - xp.mean(G, axis=0)  # (N, P) centered
    return D.T @ D / G.shape[0]


def minibatch_covariance(Sigma, m, N=None, replacement=True):
    r""":math:`C_m = \frac{\Sigma}{m}` (with replacement) or :math:`\frac{\Sigma}{m}\frac{N-m}{N-1}` (without).

    Sigma: (P, P) from :func:`gradient_covariance`, or its trace (a float) for :math:`\operatorname{tr} C_m =
    E\lVert g_B - g\rVert^2`. N: the number of examples (needed without replacement).
    """
    if not replacement and N is None:
        raise ValueError("sampling without replacement needs N, the number of examples")
    return Sigma * (finite_population_factor(m, N, replacement) / m)


@dataclass(frozen=True)
class NoiseStatistics:
    r"""The gradient noise at one point: :math:`\operatorname{tr}\Sigma`, :math:`\lVert g\rVert^2`, N.

    ``noise_scale`` is :math:`B_{simple} = \operatorname{tr}\Sigma / \lVert g \rVert^2`; ``minibatch_std(m)`` is
    :math:`\sqrt{\operatorname{tr} C_m}`, the root-mean-square distance of a batch-m gradient from g.
    """

    trace: float  # tr Sigma
    grad_norm_sq: float  # |g|^2
    num_examples: int  # N

    @property
    def noise_scale(self):
        return self.trace / self.grad_norm_sq if self.grad_norm_sq > 0 else math.inf

    def minibatch_variance(self, m, replacement=False):
        """:math:`\\operatorname{tr} C_m = E \\lVert g_B - g \\rVert^2` for batches of m."""
        return float(minibatch_covariance(self.trace, m, self.num_examples, replacement))

    def minibatch_std(self, m, replacement=False):
        return math.sqrt(self.minibatch_variance(m, replacement))


def gradient_noise(net, theta, X, y):
    r"""The :class:`NoiseStatistics` of the N examples ``(X, y)`` at ``theta``, without forming G.

    :math:`\operatorname{tr}\Sigma = \frac1N\sum_n\lVert g_n\rVert^2 - \lVert g\rVert^2` from the per-example
    gradient norms (which factorize per layer, :mod:`minisgd.core.backprop`): one forward-backward pass. The sums are
    taken in float64, since the difference of two nearly equal sums loses digits in float32. The net's L2 term
    shifts every :math:`g_n` by the same vector and cancels in :math:`\Sigma`.
    """
    xp = namespace(theta)
    norms = xp.astype(net.per_example_grad_norms(theta, X, y), xp.float64)  # (N,)
    g = xp.astype(net.loss_and_grad(theta, X, y)[1], xp.float64)  # (P,)
    grad_sq = float(xp.sum(g * g))
    return NoiseStatistics(trace=float(xp.mean(norms * norms)) - grad_sq, grad_norm_sq=grad_sq,
                         num_examples=int(X.shape[0]))


def expected_loss_change(g, H, C, eta):
    r"""Second-order prediction of :math:`E\,L(\theta - \eta g_B) - L(\theta)`:
    :math:`-\eta\lVert g\rVert^2 + \frac{\eta^2}{2}(g^\top H g + \operatorname{tr}(H C))`.

    g: (P,) full gradient; H: (P, P) Hessian of the same loss; C: (P, P) minibatch covariance
    (:func:`minibatch_covariance`); eta: a float or an array of step sizes (the result has its shape).
    """
    xp = namespace(g, H, C)
    descent = float(xp.sum(g * g))
    curvature = float(g @ (H @ g)) + float(xp.sum(H * C))  # tr(H C) = sum_ij H_ij C_ji, both symmetric
    eta = np.asarray(eta, dtype=float)
    return -eta * descent + 0.5 * eta ** 2 * curvature


# ---- exact enumeration ------------------------------------------------------------------------------------

def enumerate_batches(N, m, replacement):
    r"""Every distinct batch of m of N examples with its probability: yields ``(indices, probability)``.

    Without replacement: each of the :math:`\binom Nm` subsets, probability :math:`1/\binom Nm`. With
    replacement the batch gradient depends only on the multiset of indices, so each of the
    :math:`\binom{N+m-1}{m}` multisets is yielded once (indices repeated by their counts :math:`c_n`) with its
    multinomial probability :math:`\frac{m!}{\prod_n c_n!} N^{-m}`; this equals counting all :math:`N^m` ordered
    tuples, in far fewer terms. The probabilities sum to 1.
    """
    _check_batch_size(m, None if replacement else N)
    if not replacement:
        p = 1.0 / math.comb(N, m)
        for subset in itertools.combinations(range(N), m):
            yield np.asarray(subset), p
        return
    log_norm = math.lgamma(m + 1) - m * math.log(N)
    for multiset in itertools.combinations_with_replacement(range(N), m):
        counts = [len(list(run)) for _, run in itertools.groupby(multiset)]
        yield np.asarray(multiset), math.exp(log_norm - sum(math.lgamma(c + 1) for c in counts))


def minibatch_moments(G, m, replacement):
    r"""Exact mean (P,) and covariance (P, P) of :math:`g_B` over every batch of m rows of G (enumerated).

    The independent check of :func:`minibatch_covariance`; feasible for small N (e.g. N = 12: 924 subsets of 6,
    12,376 multisets of 6).
    """
    G = np.asarray(G, dtype=np.float64)
    mean = np.zeros(G.shape[1])
    second = np.zeros((G.shape[1], G.shape[1]))
    for idx, p in enumerate_batches(G.shape[0], m, replacement):
        gb = G[idx].mean(axis=0)
        mean += p * gb
        second += p * np.outer(gb, gb)
    return mean, second - np.outer(mean, mean)


def expected_loss_after_step(net, theta, X, y, m, eta, replacement):
    r""":math:`E\,L(\theta - \eta g_B)` exactly, by enumerating every batch of m (see :func:`enumerate_batches`).

    L is the mean training loss on ``(X, y)`` (with the net's L2 term); eta: a float or a 1-D array of step
    sizes (one enumeration serves them all). Cost: one gradient and ``len(eta)`` loss evaluations per batch.
    """
    etas = np.atleast_1d(np.asarray(eta, dtype=float))
    total = np.zeros(etas.shape)
    for idx, p in enumerate_batches(X.shape[0], m, replacement):
        _, gb = net.loss_and_grad(theta, X[idx], y[idx])
        total += p * np.array([net.loss(theta - e * gb, X, y) for e in etas])
    return total if np.ndim(eta) else float(total[0])
