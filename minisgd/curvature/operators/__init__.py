r"""Curvature matrices as SciPy linear operators: exact (Hessian, Gauss-Newton, residual, Fisher) and approximate
(Monte Carlo Fisher, empirical Fisher, KFAC, EKFAC), all on the same network, point and data.

Each is a ``scipy.sparse.linalg.LinearOperator`` of shape ``(P, P)``, so ``eigsh``, ``cg``, ``lsmr`` and the
estimators of :mod:`minisgd.curvature.estimators` work on it; ``A @ V`` with ``V: (P, k)`` is one call of minisgd's
exact products for all k columns, and a CuPy ``V`` stays on the GPU. Each also has ``to_dense()`` (when it fits),
``diagonal()`` and ``trace()``, exact; KFAC and EKFAC add ``eigenvalues()`` in closed form and ``inverse(damping)``.

* ``Hessian``: :math:`\frac1N\sum_n \nabla^2\ell_n + \lambda I`, products by the R-operator (``net.hvp``);
* ``GaussNewton``: :math:`\frac1N\sum_n J_n^T A_n J_n + \lambda I`, a forward R-pass and one backward pass;
* ``Residual``: :math:`H - G`, both;
* ``Fisher``: :math:`\frac1N\sum_n E_{y\sim p(y|x_n)}[\nabla\ell\nabla\ell^T] + \lambda I`, exact or Monte Carlo
  with ``mc_samples`` labels per example, as G;
* ``EmpiricalFisher``: :math:`\frac1N\sum_n \nabla\ell_n\nabla\ell_n^T + \lambda I`, as G with one column;
* ``KFAC``: :math:`\bigoplus_l A_l \otimes B_l + \lambda I`, products :math:`A X B` per layer;
* ``EKFAC``: KFAC's eigenbasis with the eigenvalues refitted, four GEMMs per layer.

**Conventions.** Every matrix is the curvature of minisgd's objective, the *mean* loss over the N examples plus
:math:`\frac\lambda2\lVert\theta\rVert^2` (so each adds :math:`\lambda I`, the residual excepted, where it
cancels); ``theta``'s layout is the network's (per layer ``[W; b]`` row-major). The Fisher family's expectations
are over the model's labels (``Fisher``) or the data's (``EmpiricalFisher``); KFAC's factors are expectations over
the examples, weights and bias in one block (see :mod:`~minisgd.curvature.operators.kfac`).

Example::

    from scipy.sparse.linalg import eigsh
    from minisgd.curvature.operators import Hessian, KFAC
    H = Hessian(net, theta, X, y)
    top = eigsh(H, k=5, which="LA", return_eigenvectors=False)
    K = KFAC(net, theta, X, y)
    step = K.inverse(damping=1e-3) @ grad                     # a damped natural-gradient step
"""
from .ekfac import EKFAC
from .empirical_fisher import EmpiricalFisher
from .fisher import Fisher
from .gauss_newton import GaussNewton
from .hessian import Hessian
from .kfac import KFAC
from .residual import Residual
from ._base import CurvatureOperator
from ._kronecker import KroneckerEigenOperator

__all__ = ["Hessian", "GaussNewton", "Residual", "Fisher", "EmpiricalFisher", "KFAC", "EKFAC", "CurvatureOperator",
           "KroneckerEigenOperator"]
