r"""Matched noise injection: give a large-batch gradient the noise of a small batch (a remedy for the large-batch
gap in the spirit of Keskar et al. 2017, section 5; Smith & Le 2018 tie generalization to the size of SGD's noise,
Zhu et al. 2019 show that its anisotropic covariance, not only its size, lets SGD escape sharp minima where
isotropic noise of the same size does not).

A batch of :math:`B` examples has gradient covariance :math:`S^2 (1/B - 1/N)` when drawn without replacement
from N examples (:math:`S^2 = \frac{1}{N-1}\sum_n (g_n - \bar g)(g_n - \bar g)^T`) and :math:`\sigma^2 / B` with
replacement (:math:`\sigma^2 = \frac{N-1}{N} S^2`). Either way the covariance a batch of :math:`b < B` has in
excess of a batch of :math:`B` is the same multiple of the per-example covariance,

.. math:: \Sigma_{b} - \Sigma_{B} = \Bigl(\frac1b - \frac1B\Bigr) C, \qquad C = S^2 \text{ or } \sigma^2,

and the unbiased covariance of the batch's own per-example gradients, :math:`\hat C = \frac{1}{B-1}\sum_{i}
(g_i - g_{\mathcal B})(g_i - g_{\mathcal B})^T`, estimates that :math:`C` in both cases (no without-replacement
factor is needed). The injected noise has conditional covariance :math:`(1/b - 1/B)\hat C` exactly:

.. math::
    \xi = c \sum_{i \in \mathcal B} z_i (g_i - g_{\mathcal B}) = c \sum_i (z_i - \bar z)\, g_i, \qquad
    z \sim \mathcal N(0, I_B), \qquad c = \sqrt{\frac{1/b - 1/B}{B - 1}},

since :math:`\xi = c\,G^T (I - \tfrac1B 11^T) z` and the centering matrix is a projector:
:math:`\operatorname{Cov}(\xi) = c^2 G^T (I - \tfrac1B 11^T) G = (1/b - 1/B)\hat C`. So
:math:`g_{\mathcal B} + \xi` has, over batches and draws, the covariance of a batch of b. The sum is one
:func:`minisgd.core.backprop.weighted_gradient` with weights :math:`c(z_i - \bar z)` (they sum to 0, so the L2 term
drops out): one backward pass, no ``(B, P)`` matrix.
"""
import math

import numpy as np

from ..backend import device_of, namespace

STREAM = 0x9015E  # "noise": keeps the injected noise apart from other uses of the same seed


def matched_noise_scale(batch_size, small_batch):
    r""":math:`c = \sqrt{(1/b - 1/B) / (B - 1)}` for a batch of ``batch_size`` B given the noise of ``small_batch``
    b (0 when :math:`b \ge B`: a batch that is not larger gets no noise)."""
    B, b = int(batch_size), int(small_batch)
    if b < 1 or B < 2:
        raise ValueError(f"matched noise needs small_batch >= 1 and a batch of at least 2, got b={b}, B={B}")
    return math.sqrt((1.0 / b - 1.0 / B) / (B - 1)) if b < B else 0.0


def matched_noise_weights(batch_size, small_batch, seed):
    r"""``(B,)`` NumPy weights :math:`c (z - \bar z)`, :math:`z \sim \mathcal N(0, I_B)` from
    ``numpy.random.default_rng(seed)`` (``seed``: an int or a sequence such as ``[STREAM, seed, step]``)."""
    z = np.random.default_rng(seed).standard_normal(int(batch_size))
    return matched_noise_scale(batch_size, small_batch) * (z - z.mean())


def matched_noise(net, theta, X, y, small_batch, seed):
    r"""``(P,)``: the noise :math:`\xi` that gives the gradient of the batch ``(X, y)`` (B examples) the
    covariance of a batch of ``small_batch`` (module docstring); a pure function of its arguments."""
    xp = namespace(theta)
    w = matched_noise_weights(X.shape[0], small_batch, seed)
    return net.weighted_gradient(theta, X, y, xp.asarray(w, dtype=theta.dtype, device=device_of(theta)))
