r"""Randomized estimators of the trace and the diagonal, on any symmetric operator (``A @ V`` and ``A.shape``),
each in a module named after its paper as curvlinops names them.

=========================== ================================== ========================== ======================
function                    estimates                          error for m products       paper
=========================== ================================== ========================== ======================
``hutchinson_trace``        :math:`\mathrm{tr} A`              :math:`O(m^{-1/2})`         Hutchinson 1989
``hutchinson_diagonal``     :math:`\mathrm{diag} A`            :math:`O(m^{-1/2})`         Bekas et al. 2007
``hutchpp_trace``           :math:`\mathrm{tr} A`              :math:`O(m^{-1})` (PSD)     Meyer et al. 2020
``xtrace``                  :math:`\mathrm{tr} A`              better than Hutch++        Epperly et al. 2024
``xdiag``                   :math:`\mathrm{diag} A`            exact below rank m/2       Epperly et al. 2024
=========================== ================================== ========================== ======================

Each returns its estimate with a stated standard error (:class:`Estimate`, :class:`DiagonalEstimate`); the tests
check each against the exact value (``op.trace()``, ``op.diagonal()``) within it. Example::

    from minisgd.curvature.operators import Hessian
    from minisgd.curvature.estimators import xtrace
    est = xtrace(Hessian(net, theta, X, y), num_matvecs=40)       # est.mean, est.stderr
"""
from ._probes import DiagonalEstimate, Estimate
from .epperly2024xtrace import xdiag, xtrace
from .hutchinson import hutchinson_diagonal, hutchinson_trace
from .meyer2020hutchpp import hutchpp_trace

__all__ = ["Estimate", "DiagonalEstimate", "hutchinson_trace", "hutchinson_diagonal", "hutchpp_trace", "xtrace",
           "xdiag"]
