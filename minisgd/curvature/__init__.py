"""What the curvature of the loss looks like at a point: spectra, traces, sharpness, and the landscape around it.

* :mod:`~minisgd.curvature.eigen`: eigenvalues of the Hessian (or its Gauss-Newton / residual part): exact by
  ``eigh`` or by Lanczos on exact HVPs; the trace exactly or by Hutchinson; the spectral density by stochastic
  Lanczos quadrature; per-layer spectra.
* :mod:`~minisgd.curvature.sharpness`: Keskar et al.'s epsilon-sharpness (metric 2.1), expected sharpness,
  scale-aware and relative (reparametrization-invariant) sharpness, the Fisher-Rao norm.
* :mod:`~minisgd.curvature.landscape`: evaluation in chunks, the parametric plot between two minimizers, 1-D and
  2-D slices with their quadratic model.
* :mod:`~minisgd.curvature.operators`: the Hessian, Gauss-Newton, residual, Fisher (exact and Monte Carlo),
  empirical Fisher, KFAC and EKFAC as SciPy ``LinearOperator`` objects on the exact products.
* :mod:`~minisgd.curvature.estimators`: trace and diagonal estimators on any operator (Hutchinson, Hutch++, XTrace,
  XDiag), each with its stated error.
"""
from .eigen import (Spectrum, exact_spectrum, hessian_spectrum, hessian_trace, hutchinson_trace, lanczos,
                    layer_spectra, spectral_density, top_eigenvalues)
from .landscape import evaluate, interpolate, slice_1d, slice_2d
from .sharpness import (epsilon_sharpness, expected_sharpness, fisher_rao_norm, relative_sharpness,
                        scale_aware_sharpness, sharpness_summary)

__all__ = ["Spectrum", "exact_spectrum", "hessian_spectrum", "hessian_trace", "hutchinson_trace", "lanczos",
           "layer_spectra", "spectral_density", "top_eigenvalues", "evaluate", "interpolate", "slice_1d", "slice_2d",
           "epsilon_sharpness", "expected_sharpness", "fisher_rao_norm", "relative_sharpness",
           "scale_aware_sharpness", "sharpness_summary"]
