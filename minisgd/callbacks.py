r"""Measurements taken during training: ``every(k, fn)`` runs ``fn`` every k steps and stores what it returns.

A measurement is any function ``fn(net, theta, data, step) -> float | dict[str, float]`` (``data`` has
``X_train`` and ``y_train``; ``step`` is the number of updates done). The trainer calls it at steps 0, k, 2k, ...
and appends the value to ``history[name]`` and the step to ``history[name + "_step"]``; a dict stores each
key as its own history entry, all sharing ``history[name + "_step"]``. A measurement may raise
:class:`StopTraining` to end the run cleanly (``result.stop_reason == "callback"``).

Two measurements of what the Keskar et al. (2017) question is about, each on a fixed, seeded subset of the
training set (``subset=None``: all of it):

* ``top_eigenvalue`` / :class:`TopEigenvalue`: :math:`\lambda_{max}` of the Hessian of the training loss,
  by Lanczos on exact Hessian-vector products (:func:`minisgd.spectrum.top_eigenvalues`).
* ``gradient_noise`` / :class:`GradientNoise`: the trace of the per-example gradient covariance and the simple
  noise scale of McCandlish et al. (2018), from per-example gradient norms without forming (N, P).
"""
from dataclasses import dataclass

import numpy as np

from .backend import device_of, namespace


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


def every(k, fn, name=None):
    """Run ``fn(net, theta, data, step)`` every ``k`` steps (and at step 0), storing it as ``name``.

    ``name`` defaults to ``fn.name`` or ``fn.__name__`` (``"top_eigenvalue"`` for :data:`top_eigenvalue`).
    """
    if int(k) < 1:
        raise ValueError(f"every(k, fn) needs k >= 1, got {k}")
    name = name or getattr(fn, "name", None) or getattr(fn, "__name__", None)
    if not name or name == "<lambda>":
        raise ValueError("give the measurement a name: every(k, fn, name='...')")
    return Every(int(k), fn, str(name))


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

    Uses :func:`minisgd.spectrum.top_eigenvalues` (Lanczos on exact HVPs, seeded) on ``subset`` examples of the
    training set chosen once by ``seed`` (``None``: the whole set; each HVP costs about two gradients of it).
    """

    subset: int | None = None  # examples of the training set, fixed across calls; None: all
    seed: int = 0  # picks the subset and seeds Lanczos's start vector

    name = "top_eigenvalue"

    def __call__(self, net, theta, data, step):
        from .spectrum import top_eigenvalues  # imported here: spectrum is analysis, training does not need it

        X, y = fixed_subset(data, self.subset, self.seed)
        return float(top_eigenvalues(net, theta, X, y, k=1, seed=self.seed).values[0])


@dataclass(frozen=True)
class GradientNoise:
    r"""Gradient noise on ``subset`` training examples: ``{"grad_noise_trace", "grad_norm_sq", "noise_scale"}``.

    With :math:`g_n` the per-example gradients of the N examples and :math:`g` their mean,

    .. math::
        \operatorname{tr}\Sigma = \frac1N\sum_n \lVert g_n - g\rVert^2 = \frac1N\sum_n \lVert g_n\rVert^2
        - \lVert g\rVert^2, \qquad B_{noise} = \operatorname{tr}\Sigma / \lVert g \rVert^2

    (the covariance with the 1/N of the subset, not 1/(N-1); :math:`B_{noise}` is the "simple noise scale" of
    McCandlish et al. 2018, the batch size above which larger batches stop paying off). A minibatch of B
    examples drawn with replacement has gradient covariance :math:`\Sigma / B`. The L2 term of the net shifts
    every :math:`g_n` equally and cancels in :math:`\Sigma`. Cost: one forward-backward pass on the subset.
    """

    subset: int | None = 1024  # examples of the training set, fixed across calls; None: all
    seed: int = 0

    name = "gradient_noise"

    def __call__(self, net, theta, data, step):
        X, y = fixed_subset(data, self.subset, self.seed)
        xp = namespace(theta)
        # float64 sums: the difference of two nearly equal sums loses digits in float32
        norms = xp.astype(net.per_example_grad_norms(theta, X, y), xp.float64)  # (N,)
        g = xp.astype(net.loss_and_grad(theta, X, y)[1], xp.float64)  # (P,)
        mean_sq = float(xp.mean(norms * norms))
        grad_sq = float(xp.sum(g * g))
        trace = mean_sq - grad_sq
        return {"grad_noise_trace": trace, "grad_norm_sq": grad_sq,
                "noise_scale": trace / grad_sq if grad_sq > 0 else float("inf")}


top_eigenvalue = TopEigenvalue()
gradient_noise = GradientNoise()
