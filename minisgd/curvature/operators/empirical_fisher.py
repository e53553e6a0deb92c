r"""The empirical Fisher: the uncentred second moment of the per-example gradients at the data's labels.

.. math::
    \tilde F = \frac1N \sum_n \nabla_\theta \ell_n \nabla_\theta \ell_n^T + \lambda I
             = \frac1N \sum_n J_n^T g_n g_n^T J_n + \lambda I, \qquad g_n = \nabla_z \ell(z_n, y_n),

(the gradients of the data term; the L2 term's curvature added exactly). Not the Fisher: the labels are the data's,
so near a minimizer where the model fits them it goes to zero with the gradients while the Fisher does not (Kunstner
et al. 2019, *Limitations of the empirical Fisher approximation*). Rank at most N. Products by
``minisgd.core.gauss_newton.factor_vector_product`` with the one-column factor :math:`g_n`.
"""
from ._factors import FactorOperator, output_factor


class EmpiricalFisher(FactorOperator):
    """The empirical Fisher ``(P, P)`` of ``net`` at ``theta`` on ``(X, y)``."""

    def __init__(self, net, theta, X, y, max_directions=None):
        theta, X, y = net._checked(theta, X, y)
        super().__init__(net, theta, X, y, output_factor(net, theta, X, y, "empirical"), max_directions)
