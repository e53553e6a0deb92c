r"""The exact Hessian of the mean loss (L2 included) as an operator: ``net.hvp`` products.

.. math::
    H = \frac1N \sum_n \nabla^2_\theta \ell_n + \lambda I .

Products by Pearlmutter's R-operator (``minisgd.core.hvp``, k directions in one pass), the dense matrix by the
block formula (``net.hessian``, a second route), the diagonal exactly without the matrix (``net.hessian_diagonal``).
"""
from ._base import CurvatureOperator


class Hessian(CurvatureOperator):
    """The Hessian ``(P, P)`` of ``net``'s mean loss plus L2 at ``theta`` on ``(X, y)``."""

    def __init__(self, net, theta, X, y, max_directions=None):
        super().__init__(net, theta, X, y, max_directions)
        self._product_of = net.hvp_operator(self.theta, self.X, self.y)  # checked once, not at every product

    def _apply(self, V):
        return self._product_of(V)

    def to_dense(self):
        return self.net.hessian(self.theta, self.X, self.y)

    def diagonal(self):
        return self.net.hessian_diagonal(self.theta, self.X, self.y)
