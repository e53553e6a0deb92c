r"""The sharpness measures the reparametrization and flatness-measures scenarios compare, measured the same way in
both: each a number of a minimizer ``theta`` on the training data, with whether it is invariant under the
function-preserving rescalings of a ReLU net (Dinh et al. 2017; ``minisgd.theory.reparametrize``), as theory says.

Why each is or is not invariant, for :math:`\theta' = D\theta`, :math:`H' = D^{-1} H D^{-1}`:
:math:`\lambda_{\max}(H)`, :math:`\mathrm{tr}\,H` and :math:`\lVert\theta\rVert^2` are not (they scale with
:math:`D`); Keskar's box :math:`|y_i| \le \epsilon(|\theta_i| + 1)` is not (the ``+ 1`` is absolute), nor is
Gaussian noise of a fixed :math:`\sigma`; noise :math:`\sigma_i = s|\theta_i|` is (the perturbed net is the
rescaled perturbed net), and so are :func:`minisgd.curvature.sharpness.scale_aware_sharpness`,
:func:`minisgd.curvature.sharpness.relative_sharpness` and :func:`minisgd.curvature.sharpness.fisher_rao_norm`.
"""
from dataclasses import dataclass

from ..backend import namespace
from ..curvature.eigen import hessian_trace, top_eigenvalues
from ..curvature.sharpness import (epsilon_sharpness, expected_sharpness, fisher_rao_norm, relative_sharpness,
                                   scale_aware_sharpness)


@dataclass(frozen=True)
class MeasureSettings:
    """The settings of :func:`sharpness_measures` that a scenario's config shares (its config subclasses this)."""

    eps: float = 1e-3  # Keskar's epsilon (full space, L-BFGS-B, 10 iterations)
    sigma: float = 1e-3  # standard deviation of the fixed Gaussian parameter noise
    relative_sigma: float = 1e-2  # s of the magnitude-aware noise sigma_i = s |theta_i|
    noise_samples: int = 16  # antithetic Monte-Carlo draws per noise average


@dataclass(frozen=True)
class Measure:
    key: str
    label: str  # for tables and figures
    invariant: bool  # under every function-preserving diagonal rescaling, by theory


MEASURES = (
    Measure("top_eigenvalue", "λ_max(H)", False),
    Measure("trace", "tr H", False),
    Measure("eps_sharpness", "Keskar ε-sharpness (%)", False),
    Measure("expected_sharpness", "E Δf, σ fixed", False),
    Measure("parameter_norm", "‖θ‖²", False),
    Measure("relative_expected_sharpness", "E Δf, σ ∝ |θ|", True),
    Measure("scale_aware", "Σ_g λ_max(H_gg) ‖θ_g‖²", True),
    Measure("relative_top_eigenvalue", "λ_max(ΘHΘ)", True),
    Measure("relative_trace", "tr(ΘHΘ)", True),
    Measure("radial_curvature", "θᵀHθ", True),
    Measure("fisher_rao", "Fisher-Rao norm²", True),
)
KEYS = tuple(m.key for m in MEASURES)
LABELS = {m.key: m.label for m in MEASURES}
INVARIANT = {m.key: m.invariant for m in MEASURES}


def sharpness_measures(net, theta, X, y, eps=1e-3, sigma=1e-3, relative_sigma=1e-2, noise_samples=16, seed=0):
    """``{key: float}`` for every key of :data:`MEASURES`, at ``theta`` on ``(X, y)``; the eigenvalues by Lanczos
    on HVPs (no dense Hessian), the traces from the exact diagonal, the noise averages with ``noise_samples``
    antithetic draws from ``seed`` (the same draws at every ``theta``, so rescaled copies see the same noise)."""
    xp = namespace(theta)
    relative = relative_sharpness(net, theta, X, y, method="lanczos", seed=seed)
    return {
        "top_eigenvalue": float(top_eigenvalues(net, theta, X, y, k=1, seed=seed).values[0]),
        "trace": hessian_trace(net, theta, X, y),
        "eps_sharpness": float(epsilon_sharpness(net, theta, X, y, eps=eps, seed=seed).value),
        "expected_sharpness": expected_sharpness(net, theta, X, y, sigma, noise_samples, seed=seed).mean,
        "parameter_norm": float(xp.sum(theta * theta)),
        "relative_expected_sharpness": expected_sharpness(net, theta, X, y, relative_sigma * xp.abs(theta),
                                                          noise_samples, seed=seed).mean,
        "scale_aware": scale_aware_sharpness(net, theta, X, y, method="lanczos", tol=1e-8, seed=seed).total,
        **relative.as_dict(),
        "fisher_rao": fisher_rao_norm(net, theta, X, y),
    }
