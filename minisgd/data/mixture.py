r"""Gaussian-mixture classification with a computable Bayes error.

K classes with equal priors 1/K and a shared isotropic covariance:
:math:`x \mid y = k \sim \mathcal N(\mu_k, s^2 I_d)`. The Bayes classifier is the nearest mean,
:math:`\hat y(x) = \arg\min_k \|x - \mu_k\|^2`, and its error is the Bayes error (the lowest any classifier
reaches).

How the Bayes error is computed. Given class k, write :math:`x = \mu_k + s z`, z ~ N(0, I_d). The classifier
is right iff for all j != k, :math:`a_j^\top z < t_j` with :math:`a_j = (\mu_j - \mu_k)/\|\mu_j - \mu_k\|` and
:math:`t_j = \|\mu_j - \mu_k\| / (2 s)`. Only the projection of z on the r-dimensional span of the a_j
matters, and there z = ρ u with ρ ~ χ_r independent of u uniform on the unit sphere, so

.. math::
    P(\text{right} \mid k) = E_u\big[F_{\chi_r}(R(u))\big], \qquad
    R(u) = \min_{j:\, a_j^\top u > 0} t_j / (a_j^\top u) \quad (+\infty \text{ if no such } j),

and the Bayes error is :math:`1 - \frac1K \sum_k P(\text{right} \mid k)`. Then:

- K = 2: :math:`\Phi(-\|\mu_1 - \mu_0\| / (2 s))`, closed form;
- r = 1 (collinear means): u = ±1, exact;
- r = 2 (e.g. K = 3): u on the circle, the periodic trapezoid rule on a fine grid (error estimated by halving
  the grid; below 1e-9 in practice);
- r >= 3: u drawn uniformly, a conditional Monte Carlo estimate with its standard error (far less variance
  than simulating the classifier, since ρ is integrated exactly).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .dataset import Dataset
from ..errors import DataError
from .synthetic import as_generator, seed_streams

__all__ = ["GaussianMixture", "BayesErrorRate", "make_gaussian_mixture", "chi_cdf", "normal_cdf"]

_erf_object = np.frompyfunc(math.erf, 1, 1)


def _erf(x) -> np.ndarray:
    return np.asarray(_erf_object(x), dtype=np.float64)


def normal_cdf(x) -> np.ndarray:
    """Φ(x) = (1 + erf(x / √2)) / 2, elementwise (standard library erf, no SciPy needed)."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))


def chi_cdf(R, r: int) -> np.ndarray:
    r"""CDF of the χ distribution with r degrees of freedom at R >= 0 (+inf allowed): the regularized lower
    incomplete gamma :math:`P(r/2, R^2/2)`.

    With x = R²/2: r even, :math:`1 - e^{-x}\sum_{i<r/2} x^i / i!`; r odd,
    :math:`\mathrm{erf}(\sqrt x) - e^{-x} \sum_{i=0}^{(r-3)/2} x^{i+1/2} / \Gamma(i + 3/2)`
    (from :math:`P(a+1, x) = P(a, x) - x^a e^{-x} / \Gamma(a+1)`).
    """
    R = np.asarray(R, dtype=np.float64)
    finite = np.isfinite(R)
    x = np.where(finite, R, 0.0) ** 2 / 2
    ex = np.exp(-x)
    if r % 2 == 0:
        out = 1.0 - ex * sum(x**i / math.factorial(i) for i in range(r // 2))
    else:
        out = _erf(np.sqrt(x))
        for i in range((r - 1) // 2):
            out = out - ex * x ** (i + 0.5) / math.gamma(i + 1.5)
    return np.where(finite, np.clip(out, 0.0, 1.0), 1.0)


class BayesErrorRate(NamedTuple):
    """The Bayes error ``value``, its ``stderr`` (0 when exact; an error estimate for quadrature), ``method``."""

    value: float
    stderr: float
    method: str


class GaussianMixture:
    """K equiprobable classes, ``x | y=k ~ N(means[k], sigma^2 I_d)``; see the module docstring.

    means : (K, d), distinct rows. sigma : the shared standard deviation s > 0.
    """

    def __init__(self, means, sigma: float = 1.0):
        means = np.asarray(means, dtype=np.float64)
        if means.ndim != 2 or means.shape[0] < 2:
            raise DataError(f"GaussianMixture: means must be (K, d) with K >= 2, got shape {means.shape}")
        if not sigma > 0:
            raise DataError(f"GaussianMixture: sigma must be > 0, got {sigma}")
        gaps = np.linalg.norm(means[:, None, :] - means[None, :, :], axis=2)
        if np.any(gaps[~np.eye(len(means), dtype=bool)] == 0):
            raise DataError("GaussianMixture: two classes share a mean; the classes must have distinct means")
        self.means, self.sigma = means, float(sigma)

    @property
    def num_classes(self) -> int:
        return self.means.shape[0]

    @property
    def input_dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
        """n fresh draws: X (n, d) float64, y (n,) int64 with P(y = k) = 1/K."""
        rng = as_generator(rng)
        y = rng.integers(0, self.num_classes, size=n)
        return self.means[y] + self.sigma * rng.standard_normal((n, self.input_dim)), y.astype(np.int64)

    def bayes_classifier(self, X: np.ndarray) -> np.ndarray:
        """Nearest mean, (N, d) -> (N,) int64: the Bayes-optimal rule for equal priors and shared s^2 I."""
        # ||x - mu||^2 = ||x||^2 - 2 x.mu + ||mu||^2; the first term is the same for every class.
        scores = X @ self.means.T - 0.5 * np.sum(self.means**2, axis=1)
        return np.argmax(scores, axis=1).astype(np.int64)

    def bayes_error(self, *, grid: int = 1 << 14, n_directions: int = 400_000, rng=0) -> BayesErrorRate:
        """The Bayes error; the method (exact, quadrature, Monte Carlo) depends on K and the means' span."""
        K = self.num_classes
        if K == 2:
            gap = float(np.linalg.norm(self.means[1] - self.means[0]))
            return BayesErrorRate(float(normal_cdf(-gap / (2 * self.sigma))), 0.0, "closed form")
        rng = as_generator(rng)
        right, var, methods = [], [], set()
        for k in range(K):
            p, v, m = self._p_right(k, grid, n_directions, rng)
            right.append(p)
            var.append(v)
            methods.add(m)
        # Classes are estimated from independent draws, so their variances add.
        return BayesErrorRate(1.0 - float(np.mean(right)), math.sqrt(sum(var)) / K, "+".join(sorted(methods)))

    def _p_right(self, k: int, grid: int, n_directions: int, rng) -> tuple[float, float, str]:
        """P(right | k) and an error variance for it (0 when exact)."""
        D = np.delete(self.means, k, axis=0) - self.means[k]  # (K-1, d)
        dist = np.linalg.norm(D, axis=1)
        t = dist / (2 * self.sigma)  # (K-1,)
        # Orthonormal basis of span{a_j}: the right singular vectors with non-negligible singular values.
        _, sv, Vt = np.linalg.svd(D / dist[:, None], full_matrices=False)
        r = int(np.sum(sv > 1e-10 * sv[0]))
        A = (D / dist[:, None]) @ Vt[:r].T  # (K-1, r): the a_j in that basis

        def mean_F(U):  # U: (r, M) unit directions as columns -> (M,) F_chi_r(R(u))
            proj = A @ U  # (K-1, M); (r, M) layout keeps this a BLAS GEMM
            with np.errstate(divide="ignore"):
                ratio = t[:, None] / np.maximum(proj, 0.0)  # +inf where a_j.u <= 0: no boundary that way
            return chi_cdf(ratio.min(axis=0), r)

        if r == 1:
            return float(mean_F(np.array([[1.0, -1.0]])).mean()), 0.0, "exact 1-d"
        if r == 2:
            def circle(m):
                theta = 2 * math.pi * np.arange(m) / m
                return float(mean_F(np.stack([np.cos(theta), np.sin(theta)])).mean())

            fine = circle(grid)
            return fine, (fine - circle(grid // 2)) ** 2, "quadrature"
        G = rng.standard_normal((r, n_directions))
        F = mean_F(G / np.linalg.norm(G, axis=0))
        return float(F.mean()), float(F.var(ddof=1) / n_directions), "monte carlo"


def make_gaussian_mixture(K: int = 2, d: int = 2, *, separation: float = 3.0, sigma: float = 1.0, means=None,
                          n_train: int = 1000, n_test: int = 1000, seed: int = 0) -> Dataset:
    """A :class:`GaussianMixture` dataset.

    ``means`` (K, d) if given (then K and d are read from it); else for K = 2, ``±(separation/2) u`` with u a
    random unit vector, so the Bayes error is Φ(-separation / (2 sigma)) exactly; for K > 2,
    means ~ N(0, separation² / (2d) I_d), so that E||mu_i - mu_j||² = separation².
    """
    problem_rng, train_rng, test_rng = seed_streams(seed, 3)
    means_given = means is not None
    if means is None:
        if K == 2:
            u = problem_rng.standard_normal(d)
            u /= np.linalg.norm(u)
            means = np.stack([-separation / 2 * u, separation / 2 * u])
        else:
            means = problem_rng.standard_normal((K, d)) * separation / math.sqrt(2 * d)
    pop = GaussianMixture(means, sigma)
    Xtr, ytr = pop.sample(n_train, train_rng)
    Xte, yte = pop.sample(n_test, test_rng)
    return Dataset(
        name="gaussian-mixture", X_train=Xtr, y_train=ytr, X_test=Xte, y_test=yte,
        num_classes=pop.num_classes, population=pop,
        preprocessing=({"op": "synthetic", "problem": "gaussian-mixture", "K": pop.num_classes,
                        "d": pop.input_dim, "sigma": float(sigma), "separation": float(separation),
                        "means_given": means_given, "n_train": n_train, "n_test": n_test, "seed": seed},),
    )
