r"""Hutchinson's estimators of the trace (Hutchinson 1989) and of the diagonal (Bekas, Kokiopoulou & Saad 2007).

For random probes with :math:`E[v v^T] = I`,

.. math::
    \mathrm{tr} A = E[v^T A v], \qquad \mathrm{diag} A = E[v \odot A v] \;\; (\text{Rademacher}: v \odot v = 1),

averaged over ``num_matvecs`` probes. The **stated error** is the standard error of that mean, from the samples'
spread: :math:`\mathrm{sd}(v^T A v)/\sqrt m`. For Rademacher probes the variance is known in closed form,
:math:`\mathrm{Var}(v^T A v) = 2 (\lVert A \rVert_F^2 - \sum_i A_{ii}^2)` (only the off-diagonal part is noise),
and per entry :math:`\mathrm{Var}((v \odot A v)_i) = \sum_{j \ne i} A_{ij}^2`. The error falls as
:math:`m^{-1/2}`; Hutch++ and XTrace do better on matrices whose spectrum decays.
"""
import numpy as np

from ._probes import DiagonalEstimate, Estimate, apply, dimension, mean_and_stderr, probes


def hutchinson_trace(A, num_matvecs, distribution="rademacher", seed=0, batch=None):
    r"""Hutchinson's estimate of :math:`\mathrm{tr} A` with ``num_matvecs`` probes, ``batch`` per product call
    (default: all in one); returns an :class:`Estimate` (``samples``: the ``num_matvecs`` values :math:`v^T A v`)."""
    P = dimension(A, num_matvecs)
    rng = np.random.default_rng(seed)
    batch = num_matvecs if batch is None else batch
    samples = []
    for start in range(0, num_matvecs, batch):
        V = probes(P, min(batch, num_matvecs - start), distribution, rng)
        samples.append(np.sum(V * apply(A, V), axis=0))
    samples = np.concatenate(samples)
    mean, stderr = mean_and_stderr(samples)
    return Estimate(float(mean), float(stderr), samples)


def hutchinson_diagonal(A, num_matvecs, distribution="rademacher", seed=0):
    r"""Hutchinson's estimate of :math:`\mathrm{diag} A`, ``(P,)``, with ``num_matvecs`` probes:
    :math:`\sum_s v_s \odot A v_s / \sum_s v_s \odot v_s` (the plain mean for Rademacher probes), and each entry's
    standard error from the spread of :math:`v \odot A v / v \odot v` (a :class:`DiagonalEstimate`)."""
    P = dimension(A, num_matvecs)
    V = probes(P, num_matvecs, distribution, np.random.default_rng(seed))
    terms = V * apply(A, V)  # (P, m)
    if distribution == "rademacher":
        values, stderr = mean_and_stderr(terms, axis=1)
    else:
        values = terms.sum(axis=1) / np.sum(V * V, axis=1)
        _, stderr = mean_and_stderr(terms / (V * V), axis=1)
    return DiagonalEstimate(values, stderr)
