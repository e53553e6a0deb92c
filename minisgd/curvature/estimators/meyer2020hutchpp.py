r"""Hutch++: the trace from a low-rank sketch plus Hutchinson on the rest (Meyer, Musco, Musco & Woodruff 2021,
*Hutch++: optimal stochastic trace estimation*, SOSA; arXiv 2020).

With ``m = 3 s`` products: ``s`` on random probes :math:`S` give an orthonormal basis :math:`Q` of :math:`A S`
(the top of the spectrum, where the variance of Hutchinson's estimator comes from), ``s`` give the exact trace in
that subspace, and the last ``s`` run Hutchinson on the projected remainder:

.. math::
    \widehat{\mathrm{tr}} = \mathrm{tr}(Q^T A Q) + \frac1s \sum_{i=1}^s g_i^T (I - QQ^T) A (I - QQ^T) g_i .

Unbiased; for a positive semi-definite A the relative error is :math:`O(1/m)` instead of Hutchinson's
:math:`O(1/\sqrt m)`, and it is exact when the rank of A is at most s. The **stated error** is the standard error
of the Hutchinson part given Q (the first term has none); ``samples`` are that part's s values.
"""
import numpy as np

from ._probes import Estimate, apply, dimension, mean_and_stderr, probes


def hutchpp_trace(A, num_matvecs, distribution="rademacher", seed=0):
    """Hutch++'s estimate of :math:`\\mathrm{tr} A` with ``num_matvecs`` (a multiple of 3) products, in three
    calls of ``num_matvecs / 3`` directions each; returns an :class:`Estimate`."""
    P = dimension(A, num_matvecs, divisor=3)
    s = num_matvecs // 3
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(apply(A, probes(P, s, distribution, rng)))  # (P, s)
    exact_part = float(np.sum(Q * apply(A, Q)))
    G = probes(P, s, distribution, rng)
    G = G - Q @ (Q.T @ G)  # (I - QQ^T) g
    AG = apply(A, G)
    samples = np.sum(G * (AG - Q @ (Q.T @ AG)), axis=0)  # g^T (I - QQ^T) A (I - QQ^T) g
    mean, stderr = mean_and_stderr(samples)
    return Estimate(exact_part + float(mean), float(stderr), samples + exact_part)
