r"""The temperature of SGD: the one ratio of step size to batch size that its stochastic-differential-equation
(SDE) approximation depends on, the step size that gives a chosen temperature, and the statistics that test
whether a measure depends on the temperature alone.

SGD with step :math:`\eta` and minibatch gradient :math:`g_B = g + \xi`, :math:`\mathrm{Cov}\,\xi = C_B`, matches
in its first two moments, over the time :math:`t = \eta k` after :math:`k` steps, the SDE

.. math:: d\theta = -\nabla L(\theta)\,dt + \sqrt{\eta\,C_B(\theta)}\;dW_t

(Li, Tai and E 2017; Jastrzebski et al. 2017, "Three factors influencing minima in SGD"; Smith and Le 2018, "A
Bayesian perspective on generalization and stochastic gradient descent"). For batches of B drawn without
replacement from N examples whose per-example gradients have covariance :math:`\Sigma` (normalized by N),
:math:`C_B = \frac{N - B}{N - 1}\,\frac{\Sigma}{B}`, so the noise enters only through :math:`\eta\,C_B`: runs with
the same :math:`\eta / B \cdot (1 - B/N)` follow the same SDE, per unit of time :math:`\eta k`. Smith and Le
write the noise scale as :math:`g = \epsilon (N/B - 1)`; :func:`sde_temperature` is :math:`g / N`. It differs from
the exact factor :math:`(N - B)/(N - 1)` by :math:`N / (N - 1)`, the same for every run on one training set, so
ratios of temperatures, which is all a comparison uses, are exact.
"""
import math

import numpy as np


def _check(lr_or_temperature, name, batch_size, num_examples, momentum):
    if not (isinstance(lr_or_temperature, (int, float)) and lr_or_temperature > 0
            and math.isfinite(lr_or_temperature)):
        raise ValueError(f"{name} must be a positive finite number, got {lr_or_temperature!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if num_examples is not None and not batch_size < num_examples:
        raise ValueError(f"batch_size must be smaller than num_examples = {num_examples} (at B = N there is no "
                         f"sampling noise and no temperature), got {batch_size}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")


def sde_temperature(lr, batch_size, num_examples=None, momentum=0.0):
    r"""The temperature of SGD with step ``lr`` (:math:`\eta`), batch ``batch_size`` (B) drawn without
    replacement from ``num_examples`` (N; ``None``: an infinite population, no finite-population factor) and
    heavy-ball momentum :math:`\mu`:

    .. math:: T = \frac{\eta}{B\,(1 - \mu)}\Big(1 - \frac{B}{N}\Big).

    Momentum multiplies the effective step by :math:`1/(1 - \mu)` (Smith and Le 2018, section 5, for
    ``v = mu v + g; theta -= eta v``, minisgd's :class:`~minisgd.training.optim.Momentum`). ``B >= N`` is an error: the
    full batch has no sampling noise.

    >>> sde_temperature(0.125, 128, num_examples=1024)  # 0.125 / 128 * (1 - 1/8)
    0.0008544921875
    """
    _check(lr, "lr", batch_size, num_examples, momentum)
    factor = 1.0 if num_examples is None else 1.0 - batch_size / num_examples
    return lr / (batch_size * (1.0 - momentum)) * factor


def lr_for_temperature(temperature, batch_size, num_examples=None, momentum=0.0):
    r"""The step size that gives SGD the temperature ``temperature`` at batch ``batch_size``: the inverse of
    :func:`sde_temperature`,

    .. math:: \eta = \frac{T\,B\,(1 - \mu)}{1 - B/N}.

    >>> lr_for_temperature(0.0008544921875, 128, num_examples=1024)
    0.125
    """
    _check(temperature, "temperature", batch_size, num_examples, momentum)
    factor = 1.0 if num_examples is None else 1.0 - batch_size / num_examples
    return temperature * batch_size * (1.0 - momentum) / factor


def steps_for_time(time, lr):
    r"""The number of steps :math:`k = \mathrm{round}(t / \eta)` (at least 1) that cover SDE time ``time`` at
    step ``lr``: runs at one temperature compared after the same time follow the same SDE for the same span."""
    if not (time > 0 and lr > 0):
        raise ValueError(f"time and lr must be positive, got time = {time!r}, lr = {lr!r}")
    return max(1, round(time / lr))


def variance_fractions(values, groups, subgroups):
    r"""How much of the variance of ``values`` the ``groups`` explain, how much the ``subgroups`` nested in them
    explain on top, and what is left: the nested analysis of variance

    .. math:: \sum_i (x_i - \bar x)^2 = \sum_g n_g (\bar x_g - \bar x)^2
        + \sum_{g,s} n_{gs} (\bar x_{gs} - \bar x_g)^2 + \sum_i (x_i - \bar x_{g_i s_i})^2,

    divided by the left side. With ``groups`` the temperatures, ``subgroups`` the batch sizes and the seeds
    repeating each (temperature, B) cell, the SDE view predicts a large first fraction and a small second one.
    ``values, groups, subgroups``: ``(n,)``; labels are any hashable values. Returns ``{"between": ...,
    "within": ..., "residual": ...}``, summing to 1 (all NaN when the values do not vary).
    """
    x = np.asarray(values, dtype=float)
    groups, subgroups = list(groups), list(subgroups)
    if not (x.ndim == 1 and len(groups) == len(subgroups) == x.size):
        raise ValueError(f"values, groups and subgroups must be 1-d of one length, got {x.shape}, "
                         f"{len(groups)}, {len(subgroups)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("values must be finite (drop the runs that diverged first)")
    total = float(np.sum((x - x.mean()) ** 2))
    if total == 0.0:
        return {"between": math.nan, "within": math.nan, "residual": math.nan}

    def fitted(labels):  # each value replaced by the mean of its label's values
        out = np.empty_like(x)
        for label in set(labels):
            mask = np.array([lab == label for lab in labels])
            out[mask] = x[mask].mean()
        return out

    group_means, cell_means = fitted(groups), fitted(list(zip(groups, subgroups)))
    between = float(np.sum((group_means - x.mean()) ** 2))
    within = float(np.sum((cell_means - group_means) ** 2))
    return {"between": between / total, "within": within / total, "residual": (total - between - within) / total}
