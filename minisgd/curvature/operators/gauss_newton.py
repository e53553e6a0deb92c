r"""The generalized Gauss-Newton matrix (GGN, Schraudolph 2002) as an operator.

.. math::
    G = \frac1N \sum_n J_n^T A_n J_n + \lambda I, \qquad J_n = \partial z_{L,n}/\partial\theta, \quad
    A_n = \partial^2 \ell_n / \partial z_{L,n}^2,

the Hessian without the terms of the network's own second derivatives (positive semi-definite for a convex loss).
Products by a forward R-pass and one backward pass (``net.gauss_newton_vp``, ``minisgd.core.gauss_newton``), the
dense matrix by the block formula (``net.gauss_newton``), the diagonal exactly (``net.gauss_newton_diagonal``).
"""
from ._base import CurvatureOperator


class GaussNewton(CurvatureOperator):
    """The Gauss-Newton matrix ``(P, P)`` of ``net``'s mean loss (L2 included) at ``theta`` on ``(X, y)``."""

    def __init__(self, net, theta, X, y, max_directions=None):
        super().__init__(net, theta, X, y, max_directions)
        self._product_of = net.gauss_newton_vp_operator(self.theta, self.X, self.y)  # checked once, not at every product

    def _apply(self, V):
        return self._product_of(V)

    def to_dense(self):
        return self.net.gauss_newton(self.theta, self.X, self.y)

    def diagonal(self):
        return self.net.gauss_newton_diagonal(self.theta, self.X, self.y)
