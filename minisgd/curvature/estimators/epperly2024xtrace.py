r"""XTrace and XDiag: Hutch++'s sketch and Hutchinson's probes made from the same vectors, each left out in turn
(Epperly, Tropp & Webber 2024, *XTrace: making the most of every sample in stochastic trace estimation*, SIMAX).

With ``m = 2 s`` products: s probes :math:`\Omega` give :math:`Y = A\Omega = QR` and :math:`AQ`. For each i,
the basis :math:`Q_{(i)}` of all columns of Y but the i-th is :math:`Q (I - s_i s_i^T)`, with :math:`s_i` the
normalized i-th column of :math:`R^{-T}`, so leaving a probe out costs no product; the i-th probe then runs
Hutchinson on the remainder:

.. math::
    t_i = \mathrm{tr}(Q_{(i)}^T A Q_{(i)}) + \omega_i^T (I - Q_{(i)}Q_{(i)}^T) A (I - Q_{(i)}Q_{(i)}^T) \omega_i,
    \qquad \widehat{\mathrm{tr}} = \frac1s \sum_i t_i,

and likewise per entry for the diagonal (XDiag): :math:`d_i = \mathrm{diag}(Q_{(i)} Q_{(i)}^T A) + \omega_i \odot
(I - Q_{(i)}Q_{(i)}^T) A \omega_i` (Rademacher :math:`\omega`, so :math:`\omega \odot \omega = 1`). Unbiased,
exact when the rank of A is below s, and better than Hutch++ for the same products. The **stated error** is the
paper's: the standard error :math:`\mathrm{sd}(t_i)/\sqrt s` of the s exchangeable estimates (per entry for
XDiag). A must be symmetric (:math:`Q^T A = (AQ)^T` saves s products).
"""
import numpy as np

from ._probes import DiagonalEstimate, Estimate, apply, dimension, mean_and_stderr, probes


def _sketch(A, num_matvecs, distribution, seed):
    """``(Omega, Y, Q, AQ, S)`` of the module docstring: probes ``(P, s)``, ``Y = A Omega``, ``Y = QR``, ``A Q`` and
    the leave-one-out vectors ``S: (s, s)`` (column i is :math:`s_i`)."""
    P = dimension(A, num_matvecs, divisor=2)
    s = num_matvecs // 2
    Omega = probes(P, s, distribution, np.random.default_rng(seed))
    Y = apply(A, Omega)
    Q, R = np.linalg.qr(Y)
    S = np.linalg.inv(R.T)  # (s, s); a rank-deficient Y (rank of A below s) makes R singular
    S = S / np.linalg.norm(S, axis=0, keepdims=True)
    return Omega, Y, Q, apply(A, Q), S


def xtrace(A, num_matvecs, distribution="rademacher", seed=0):
    """XTrace's estimate of :math:`\\mathrm{tr} A` with ``num_matvecs`` (even) products, in two calls; returns an
    :class:`Estimate` whose ``samples`` are the s exchangeable estimates :math:`t_i`."""
    Omega, Y, Q, AQ, S = _sketch(A, num_matvecs, distribution, seed)
    QtAQ = Q.T @ AQ  # (s, s)
    # tr(Q_(i)^T A Q_(i)) = tr(Q^T A Q) - s_i^T (Q^T A Q) s_i, with Q_(i) Q_(i)^T = Q (I - s_i s_i^T) Q^T
    traces = np.trace(QtAQ) - np.einsum("ji,jk,ki->i", S, QtAQ, S)
    for i in range(Omega.shape[1]):
        w, s = Omega[:, i], S[:, i]
        c = Q.T @ w
        c = c - (s @ c) * s  # Q_(i)^T w in Q's coordinates
        AP_w = Y[:, i] - AQ @ c  # A (I - Q_(i) Q_(i)^T) w
        d = Q.T @ AP_w
        traces[i] += w @ (AP_w - Q @ (d - (s @ d) * s))
    mean, stderr = mean_and_stderr(traces)
    return Estimate(float(mean), float(stderr), traces)


def xdiag(A, num_matvecs, seed=0):
    """XDiag's estimate of :math:`\\mathrm{diag} A`, ``(P,)``, with ``num_matvecs`` (even) products and Rademacher
    probes; each entry's standard error from the s exchangeable estimates (a :class:`DiagonalEstimate`)."""
    Omega, Y, Q, AQ, S = _sketch(A, num_matvecs, "rademacher", seed)
    base = np.sum(Q * AQ, axis=1)  # diag(Q Q^T A) = diag(Q (A Q)^T): (P,)
    QS, AQS = Q @ S, AQ @ S  # (P, s)
    total = np.zeros(Q.shape[0])
    square = np.zeros(Q.shape[0])
    for i in range(Omega.shape[1]):
        w, s = Omega[:, i], S[:, i]
        c = Q.T @ Y[:, i]
        c = c - (s @ c) * s  # Q_(i)^T A w in Q's coordinates
        d_i = base - QS[:, i] * AQS[:, i] + w * (Y[:, i] - Q @ c)  # diag(Q_(i) Q_(i)^T A) + w (I - Q_(i)Q_(i)^T) A w
        total += d_i
        square += d_i * d_i
    s_count = Omega.shape[1]
    values = total / s_count
    variance = np.maximum(square - s_count * values ** 2, 0.0) / max(s_count - 1, 1)
    return DiagonalEstimate(values, np.sqrt(variance / s_count) if s_count > 1 else np.full_like(values, np.inf))
