r"""Synthetic problems whose population (true distribution) is known, unlike MNIST's.

Each problem is a *population* object with ``sample(n, rng) -> (X, y)`` that yields fresh draws on demand,
plus a ``make_*`` function that draws a finite training set and a test set from it and returns a
:class:`~minisgd.data.dataset.Dataset` whose ``population`` is that object. The true loss or gradient of a
model is then ``E[l(x, y)]`` under the population, estimated to any accuracy by :func:`estimate_mean`, or in
closed form for :class:`LinearGaussian`.

Shapes: N examples, d inputs, K outputs. Loss convention (minisgd's ``mse``): ``l = 1/2 ||z - y||^2`` per
example, summed over the K outputs, averaged over examples.

Seeds: every function takes an ``int`` seed or a ``numpy.random.Generator``; nothing touches global state.
A ``make_*(seed=s)`` derives independent streams for the problem itself, the training set and the test set
from ``numpy.random.SeedSequence(s)``, so changing ``n_train`` does not change the test set or the teacher.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .dataset import Dataset
from ..errors import DataError

__all__ = [
    "Estimate",
    "estimate_mean",
    "LinearGaussian",
    "TwoSpirals",
    "make_linear_gaussian",
    "make_two_spirals",
    "as_generator",
    "seed_streams",
]


def as_generator(rng: int | np.random.Generator | np.random.SeedSequence | None) -> np.random.Generator:
    """A ``Generator`` from a seed, a ``SeedSequence`` or a ``Generator`` (returned as is). ``None`` is refused:
    an unseeded draw would make a result irreproducible."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        raise DataError("pass a seed (int) or a numpy.random.Generator; None would make the draw irreproducible")
    return np.random.default_rng(rng)


def seed_streams(seed: int, k: int) -> list[np.random.Generator]:
    """``k`` independent Generators spawned from ``SeedSequence(seed)``: one per part of a problem (the problem
    itself, its training set, its test set), so that changing one part's size leaves the others' draws alone."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(k)]


class Estimate(NamedTuple):
    """A Monte Carlo mean: ``value`` and its standard error ``stderr`` (same shape), from ``n`` draws."""

    value: np.ndarray
    stderr: np.ndarray
    n: int


def estimate_mean(population, fn, n: int, rng, chunk_size: int = 10_000) -> Estimate:
    r"""Estimate ``E[fn(X, y)]`` over the population from ``n`` fresh draws, in chunks.

    ``fn(X, y)`` maps a chunk (B examples) to per-example values of shape (B, ...), e.g. per-example losses
    (B,) or per-example gradients (B, P). Returns the sample mean and its standard error
    :math:`\hat\sigma / \sqrt{n}` per entry (``ddof=1``); memory stays O(chunk_size), so ``n`` may be large.
    """
    if n < 2:
        raise DataError(f"estimate_mean: need n >= 2 draws for a standard error, got {n}")
    rng = as_generator(rng)
    total = total_sq = None
    shift = None  # subtract the first chunk's mean: sums of squares then lose no precision
    done = 0
    while done < n:
        B = min(chunk_size, n - done)
        X, y = population.sample(B, rng)
        values = np.asarray(fn(X, y), dtype=np.float64)
        if values.shape[0] != B:
            raise DataError(f"estimate_mean: fn returned {values.shape[0]} rows for {B} examples")
        if shift is None:
            shift = values.mean(axis=0)
            total = np.zeros_like(shift)
            total_sq = np.zeros_like(shift)
        centered = values - shift
        total += centered.sum(axis=0)
        total_sq += (centered**2).sum(axis=0)
        done += B
    mean = total / n
    var = np.maximum(total_sq / n - mean**2, 0.0) * n / (n - 1)
    return Estimate(value=shift + mean, stderr=np.sqrt(var / n), n=n)


# ---- linear-Gaussian regression --------------------------------------------------------------------------
class LinearGaussian:
    r"""Linear regression with Gaussian inputs; the population loss and gradient are known in closed form.

    .. math::
        x \sim \mathcal N(0, \Sigma), \quad y = x^\top w^* + \varepsilon, \quad \varepsilon \sim \mathcal N(0, s^2)

        L(w) = \tfrac12 E(x^\top w - y)^2 = \tfrac12 (w - w^*)^\top \Sigma (w - w^*) + \tfrac{s^2}{2},
        \qquad \nabla L(w) = \Sigma (w - w^*), \qquad \nabla^2 L = \Sigma.

    With a bias b (prediction :math:`x^\top w + b`), because :math:`E x = 0` and ε is independent of x,

    .. math::
        L(w, b) = \tfrac12 (w - w^*)^\top \Sigma (w - w^*) + \tfrac12 b^2 + \tfrac{s^2}{2},
        \qquad \partial L / \partial b = b.

    So the functions below take ``params`` of length d (``w``, no bias) or d + 1 (the ``theta`` of
    ``minisgd.MLP([d, 1], activation="identity", loss="mse")``, laid out ``[W[:, 0], b]``), and return a
    gradient of the same length; the MLP's ``mse`` loss averaged over fresh draws converges to this L.
    """

    def __init__(self, Sigma, w_star, noise_std: float):
        Sigma = np.asarray(Sigma, dtype=np.float64)
        w_star = np.asarray(w_star, dtype=np.float64)
        d = w_star.shape[0]
        if w_star.ndim != 1 or Sigma.shape != (d, d):
            raise DataError(f"LinearGaussian: w_star must be (d,) and Sigma (d, d); got {w_star.shape}, {Sigma.shape}")
        if not np.allclose(Sigma, Sigma.T):
            raise DataError("LinearGaussian: Sigma must be symmetric")
        try:
            self._chol = np.linalg.cholesky(Sigma)  # x = L g, g ~ N(0, I): Cov x = L L^T = Sigma
        except np.linalg.LinAlgError as exc:
            raise DataError("LinearGaussian: Sigma must be positive definite") from exc
        self.Sigma, self.w_star, self.noise_std = Sigma, w_star, float(noise_std)

    @property
    def input_dim(self) -> int:
        return self.w_star.shape[0]

    @property
    def min_loss(self) -> float:
        """L(w*) = s^2 / 2, the noise floor."""
        return self.noise_std**2 / 2

    def _split(self, params) -> tuple[np.ndarray, float, bool]:
        params = np.asarray(params, dtype=np.float64)
        d = self.input_dim
        if params.shape == (d,):
            return params, 0.0, False
        if params.shape == (d + 1,):
            return params[:d], float(params[d]), True
        raise DataError(
            f"LinearGaussian: params must have shape ({d},) or ({d + 1},) (w then bias), got {params.shape}"
        )

    def sample(self, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
        """n fresh draws: X (n, d), y (n, 1) (the (N, K) target layout of the mse loss, K = 1)."""
        rng = as_generator(rng)
        X = rng.standard_normal((n, self.input_dim)) @ self._chol.T  # rows x_n = L g_n
        y = X @ self.w_star + self.noise_std * rng.standard_normal(n)
        return X, y[:, None]

    def population_loss(self, params) -> float:
        """L(w) or L(w, b), see the class docstring."""
        w, b, _ = self._split(params)
        r = w - self.w_star
        return float(0.5 * r @ self.Sigma @ r + 0.5 * b * b + self.min_loss)

    def population_gradient(self, params) -> np.ndarray:
        """Sigma (w - w*), with b appended when params include the bias; same shape as params."""
        w, b, has_bias = self._split(params)
        g = self.Sigma @ (w - self.w_star)
        return np.append(g, b) if has_bias else g

    def population_hessian(self, with_bias: bool = False) -> np.ndarray:
        """Sigma (d, d), or blockdiag(Sigma, 1) (d+1, d+1) with the bias."""
        if not with_bias:
            return self.Sigma.copy()
        d = self.input_dim
        H = np.zeros((d + 1, d + 1))
        H[:d, :d] = self.Sigma
        H[d, d] = 1.0
        return H

    def population_gradient_covariance(self, params) -> np.ndarray:
        r"""Covariance of one example's gradient under the population, :math:`\operatorname{Cov}_{x,y}\, g(x, y)`.

        With :math:`\delta = w - w^*`, residual :math:`r = x^\top\delta + b - \varepsilon` and
        :math:`c = E r^2 = \delta^\top\Sigma\delta + b^2 + s^2 = 2 L(w, b)`, Isserlis' theorem
        (:math:`E[(x^\top\delta)^2 x x^\top] = (\delta^\top\Sigma\delta)\Sigma + 2\Sigma\delta\delta^\top\Sigma`,
        odd moments zero) gives, for :math:`g = r x`,

        .. math::
            \operatorname{Cov} g = c\,\Sigma + \Sigma\delta\,\delta^\top\Sigma
            = 2L\,\nabla^2 L + \nabla L\, \nabla L^\top,

        and with the bias coordinate :math:`g_b = r` the blocks :math:`\operatorname{Cov}(g_w, g_b) = b\,\Sigma\delta`,
        :math:`\operatorname{Var} g_b = c - b^2` (the constant input is not Gaussian, so the pattern above misses
        :math:`2b^2` there). A mean of N i.i.d. examples has covariance this / N: the full training set's gradient
        is itself a noisy estimate of :meth:`population_gradient`. Shape (d, d) or (d+1, d+1), as params.
        """
        w, b, has_bias = self._split(params)
        c = 2.0 * self.population_loss(params)
        mean = self.population_gradient(params)  # (d,) or (d+1,)
        cov = c * self.population_hessian(with_bias=has_bias) + np.outer(mean, mean)
        if has_bias:
            cov[-1, -1] -= 2.0 * b * b
        return cov

    def per_example_gradients(self, params, X, y) -> np.ndarray:
        """g_n = (x_n^T w + b - y_n) [x_n, 1]: (N, d) or (N, d+1); their mean estimates the gradient."""
        w, b, has_bias = self._split(params)
        r = X @ w + b - np.asarray(y).reshape(-1)  # (N,)
        G = r[:, None] * X
        return np.hstack([G, r[:, None]]) if has_bias else G


def make_linear_gaussian(d: int = 10, *, noise_std: float = 0.5, condition_number: float = 10.0,
                         n_train: int = 1000, n_test: int = 1000, seed: int = 0) -> Dataset:
    """A :class:`LinearGaussian` problem: Sigma = Q diag(lambda) Q^T with lambda geometric from 1 down to
    1/condition_number and Q a uniformly random rotation; w* ~ N(0, I_d). Targets y: (N, 1)."""
    problem_rng, train_rng, test_rng = seed_streams(seed, 3)
    lam = np.geomspace(1.0, 1.0 / condition_number, d)
    Q, R = np.linalg.qr(problem_rng.standard_normal((d, d)))
    Q = Q * np.sign(np.diag(R))  # sign fix makes Q Haar-distributed
    pop = LinearGaussian((Q * lam) @ Q.T, problem_rng.standard_normal(d), noise_std)
    Xtr, ytr = pop.sample(n_train, train_rng)
    Xte, yte = pop.sample(n_test, test_rng)
    return Dataset(
        name="linear-gaussian", X_train=Xtr, y_train=ytr, X_test=Xte, y_test=yte, task="regression",
        population=pop,
        preprocessing=({"op": "synthetic", "problem": "linear-gaussian", "d": d, "noise_std": float(noise_std),
                        "condition_number": float(condition_number), "n_train": n_train, "n_test": n_test,
                        "seed": seed},),
    )


# ---- two spirals -----------------------------------------------------------------------------------------
class TwoSpirals:
    r"""Two interleaved spirals in the plane (d = 2, K = 2), for drawing decision boundaries and landscapes.

    Class 0: :math:`t \sim U(0, 1)`, :math:`p = t\,(\cos 2\pi T t, \sin 2\pi T t)` with T = ``turns``;
    class 1: :math:`-p`, the same spiral rotated by π. Then :math:`x = p + \sigma \varepsilon`,
    :math:`\varepsilon \sim \mathcal N(0, I_2)`, σ = ``noise``. Equal class priors.
    """

    def __init__(self, noise: float = 0.1, turns: float = 1.5):
        if noise < 0 or turns <= 0:
            raise DataError(f"TwoSpirals: need noise >= 0 and turns > 0, got {noise}, {turns}")
        self.noise, self.turns = float(noise), float(turns)

    def sample(self, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
        """n fresh draws: X (n, 2), y (n,) int64."""
        rng = as_generator(rng)
        y = rng.integers(0, 2, size=n)
        t = rng.random(n)
        angle = 2 * math.pi * self.turns * t
        P = t[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)  # (n, 2)
        P *= np.where(y == 1, -1.0, 1.0)[:, None]
        return P + self.noise * rng.standard_normal((n, 2)), y.astype(np.int64)


def make_two_spirals(n_train: int = 1000, n_test: int = 1000, *, noise: float = 0.1, turns: float = 1.5,
                     seed: int = 0) -> Dataset:
    """A :class:`TwoSpirals` problem as a dataset (K = 2, d = 2)."""
    train_rng, test_rng = seed_streams(seed, 2)
    pop = TwoSpirals(noise, turns)
    Xtr, ytr = pop.sample(n_train, train_rng)
    Xte, yte = pop.sample(n_test, test_rng)
    return Dataset(
        name="two-spirals", X_train=Xtr, y_train=ytr, X_test=Xte, y_test=yte, num_classes=2, population=pop,
        preprocessing=({"op": "synthetic", "problem": "two-spirals", "noise": float(noise), "turns": float(turns),
                        "n_train": n_train, "n_test": n_test, "seed": seed},),
    )
