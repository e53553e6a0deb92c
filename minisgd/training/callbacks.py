r"""Measurements taken during training: ``every(k, fn)`` runs ``fn`` every k steps (``doubling(k, fn)`` at steps 0, k,
2k, 4k, ...) and stores what it returns.

A measurement is any function ``fn(net, theta, data, step) -> float | dict[str, float]`` (``data`` has
``X_train`` and ``y_train``; ``step`` is the number of updates done). The trainer calls it at the steps it is due
and appends the value to ``history[name]`` and the step to ``history[name + "_step"]``; a dict stores each
key as its own history entry, all sharing ``history[name + "_step"]``. A measurement may raise
:class:`StopTraining` to end the run cleanly (``result.stop_reason == "callback"``).

Two measurements of what the Keskar et al. (2017) question is about, each on a fixed, seeded subset of the
training set (``subset=None``: all of it):

* ``top_eigenvalue`` / :class:`TopEigenvalue`: :math:`\lambda_{max}` of the Hessian of the training loss,
  by Lanczos on exact Hessian-vector products (:func:`minisgd.curvature.eigen.top_eigenvalues`).
* ``gradient_noise`` / :class:`GradientNoise`: the trace of the per-example gradient covariance and the simple
  noise scale of McCandlish et al. (2018), from per-example gradient norms without forming (N, P).
"""
from dataclasses import dataclass

import numpy as np

from ..backend import device_of, namespace
from ..theory import noise


class StopTraining(Exception):
    """Raised by a measurement to end training after the current step (not an error)."""


@dataclass(frozen=True)
class Every:
    """``fn`` at steps ``0, k, 2k, ...``, its values stored under ``name``; build with :func:`every`."""

    k: int
    fn: object
    name: str

    def due(self, step):
        return step % self.k == 0

    def __call__(self, net, theta, data, step):
        return self.fn(net, theta, data, step)


@dataclass(frozen=True)
class Doubling(Every):
    """``fn`` at steps ``0, k, 2k, 4k, 8k, ...``: evenly spaced in log time, for what changes over decades (a loss
    falling from 2 to 1e-5); build with :func:`doubling`."""

    def due(self, step):
        m, r = divmod(step, self.k)
        return r == 0 and m & (m - 1) == 0


def every(k, fn, name=None):
    """Run ``fn(net, theta, data, step)`` every ``k`` steps (and at step 0), storing it as ``name``.

    ``name`` defaults to ``fn.name`` or ``fn.__name__`` (``"top_eigenvalue"`` for :data:`top_eigenvalue`).
    """
    return _scheduled(Every, k, fn, name)


def doubling(k, fn, name=None):
    """Run ``fn(net, theta, data, step)`` at steps 0, ``k``, 2k, 4k, 8k, ..., storing it as ``name`` (as
    :func:`every`)."""
    return _scheduled(Doubling, k, fn, name)


def _scheduled(schedule, k, fn, name):
    if int(k) < 1:
        raise ValueError(f"{schedule.__name__.lower()}(k, fn) needs k >= 1, got {k}")
    name = name or getattr(fn, "name", None) or getattr(fn, "__name__", None)
    if not name or name == "<lambda>":
        raise ValueError(f"give the measurement a name: {schedule.__name__.lower()}(k, fn, name='...')")
    return schedule(int(k), fn, str(name))


def fixed_subset(data, n, seed=0):
    """``(X, y)``: ``n`` training examples chosen by ``default_rng(seed)`` without replacement (all if ``n`` is
    ``None`` or >= N), in increasing index order, gathered on the data's device. The same every call."""
    X, y = data.X_train, data.y_train
    N = X.shape[0]
    if n is None or n >= N:
        return X, y
    idx = np.sort(np.random.default_rng(seed).choice(N, size=int(n), replace=False))
    xp = namespace(X)
    idx = xp.asarray(idx, device=device_of(X))
    return xp.take(X, idx, axis=0), xp.take(y, idx, axis=0)


@dataclass(frozen=True)
class TopEigenvalue:
    r"""The largest eigenvalue of the Hessian of the training loss at ``theta`` (a float).

    Uses :func:`minisgd.curvature.eigen.top_eigenvalues` (Lanczos on exact HVPs, seeded) on ``subset`` examples of the
    training set chosen once by ``seed`` (``None``: the whole set; each HVP costs about two gradients of it).
    """

    subset: int | None = None  # examples of the training set, fixed across calls; None: all
    seed: int = 0  # picks the subset and seeds Lanczos's start vector

    name = "top_eigenvalue"

    def __call__(self, net, theta, data, step):
        from ..curvature.eigen import top_eigenvalues  # imported here: spectrum is analysis, training does not need it

        X, y = fixed_subset(data, self.subset, self.seed)
        return float(top_eigenvalues(net, theta, X, y, k=1, seed=self.seed).values[0])


@dataclass(frozen=True)
class GradientNoise:
    r"""Gradient noise on ``subset`` training examples: ``{"grad_noise_trace", "grad_norm_sq", "noise_scale"}``.

    :math:`\operatorname{tr}\Sigma` of the per-example gradients, :math:`\lVert g\rVert^2` and McCandlish et al.'s
    simple noise scale :math:`\operatorname{tr}\Sigma / \lVert g\rVert^2`, as
    :func:`minisgd.theory.noise.gradient_noise` defines them (one forward-backward pass on the subset).
    """

    subset: int | None = 1024  # examples of the training set, fixed across calls; None: all
    seed: int = 0

    name = "gradient_noise"

    def __call__(self, net, theta, data, step):
        stats = noise.gradient_noise(net, theta, *fixed_subset(data, self.subset, self.seed))
        return {"grad_noise_trace": stats.trace, "grad_norm_sq": stats.grad_norm_sq, "noise_scale": stats.noise_scale}


top_eigenvalue = TopEigenvalue()
gradient_noise = GradientNoise()
