r"""The residual of the Gauss-Newton approximation, :math:`R = H - G`, as an operator.

.. math::
    R = \frac1N \sum_n \sum_k \frac{\partial \ell_n}{\partial z_{L,n,k}} \nabla^2_\theta z_{L,n,k},

the part of the Hessian that the network's second derivatives make: indefinite, and small near an interpolating
minimizer (where the output gradients vanish). The L2 term cancels. Products as ``H V - G V`` (two passes), the
dense matrix by the block formula (``net.residual``), the diagonal as the difference of the two exact diagonals.
"""
from ._base import CurvatureOperator


class Residual(CurvatureOperator):
    """``H - G``, ``(P, P)``, of ``net``'s mean loss at ``theta`` on ``(X, y)``."""

    def __init__(self, net, theta, X, y, max_directions=None):
        super().__init__(net, theta, X, y, max_directions)
        self._hvp = net.hvp_operator(self.theta, self.X, self.y)  # checked once, not at every product
        self._gvp = net.gauss_newton_vp_operator(self.theta, self.X, self.y)

    def _apply(self, V):
        return self._hvp(V) - self._gvp(V)

    def to_dense(self):
        return self.net.residual(self.theta, self.X, self.y)

    def diagonal(self):
        return (self.net.hessian_diagonal(self.theta, self.X, self.y)
                - self.net.gauss_newton_diagonal(self.theta, self.X, self.y))
