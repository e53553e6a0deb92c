r"""What the estimators share: their results, the random probes, and the checks of their arguments.

Every estimator takes a square, symmetric ``A`` with ``A.shape`` and ``A @ V`` for ``V: (P, k)`` (a SciPy
``LinearOperator``, a :mod:`minisgd.curvature.operators` operator, a dense NumPy array) and a budget of
``num_matvecs`` products, applied in as few calls as the algorithm allows (one call per block of probes). The
probes are drawn on the host from ``numpy.random.default_rng(seed)`` and the small linear algebra (QR, ``(P, k)``
arrays) runs in NumPy; the products run wherever ``A`` lives (an operator on the GPU takes NumPy and gives NumPy).
"""
from dataclasses import dataclass

import numpy as np

from ...backend import to_numpy
from ...errors import ShapeError

DISTRIBUTIONS = ("rademacher", "normal")


@dataclass
class Estimate:
    """A Monte-Carlo or over-subsets estimate: ``mean``, its standard error or spread, and the samples."""

    mean: float
    stderr: float
    samples: np.ndarray


@dataclass
class DiagonalEstimate:
    """An estimate of a diagonal: ``values: (P,)`` and each entry's standard error ``stderr: (P,)``."""

    values: np.ndarray
    stderr: np.ndarray


def dimension(A, num_matvecs, divisor=1):
    """``P`` after checking that ``A`` is square and ``num_matvecs`` a positive multiple of ``divisor``."""
    shape = tuple(A.shape)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ShapeError(f"the estimators take a square (P, P) operator, got shape {shape}")
    if not (isinstance(num_matvecs, (int, np.integer)) and num_matvecs >= divisor and num_matvecs % divisor == 0):
        raise ValueError(f"num_matvecs must be a positive multiple of {divisor}, got {num_matvecs!r}")
    return shape[0]


def probes(P, k, distribution, rng):
    """``(P, k)`` random vectors with :math:`E[v v^T] = I`: Rademacher (+-1) or standard normal."""
    if distribution == "rademacher":
        return rng.choice([-1.0, 1.0], size=(P, k))
    if distribution == "normal":
        return rng.standard_normal((P, k))
    raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")


def apply(A, V):
    """``A @ V`` as a float64 NumPy array, whatever ``A`` is."""
    return np.asarray(to_numpy(A @ V), dtype=np.float64)


def mean_and_stderr(samples, axis=0):
    """Mean over ``axis`` and its standard error :math:`s / \\sqrt n` (inf for one sample)."""
    n = samples.shape[axis]
    mean = samples.mean(axis=axis)
    stderr = samples.std(axis=axis, ddof=1) / np.sqrt(n) if n > 1 else np.full_like(mean, np.inf)
    return mean, stderr
