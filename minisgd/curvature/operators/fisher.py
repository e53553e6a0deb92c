r"""The Fisher information of the model's predictive distribution: exact, or Monte Carlo with S samples.

.. math::
    F = \frac1N \sum_n \mathbb E_{y \sim p(y | x_n)}\big[\nabla_\theta \ell(x_n, y)\, \nabla_\theta \ell(x_n, y)^T\big]
      + \lambda I
      = \frac1N \sum_n J_n^T\, \mathbb E_y[g g^T]\, J_n + \lambda I, \qquad g = \nabla_z \ell(z_n, y),

with :math:`p(y|x)` the distribution whose negative log-likelihood is the loss (softmax for the cross-entropy,
:math:`\mathcal N(z, I)` for the half squared error). The labels are the model's, never the data's (that is
the empirical Fisher). **Exact** (``mc_samples=None``): the expectation in closed form, a sum over the K classes
(the Gaussian's covariance, I, for mse); for these losses it equals the Gauss-Newton matrix (Martens 2020,
sec. 9.2), reached here by another route. **Monte Carlo** (``mc_samples=S``): S labels drawn per example from
``seed``, :math:`\hat F = \frac1{NS}\sum_{n,s} \nabla\ell(x_n, y_{ns}) \nabla\ell(x_n, y_{ns})^T + \lambda I`, an
unbiased estimate whose entries have standard deviation :math:`O(1/\sqrt{S N})`; the draws are fixed at
construction, so the operator is one fixed (rank :math:`\le NS`) matrix. The mean over examples, the L2 term added
exactly.
"""
from ._factors import FactorOperator, output_factor


class Fisher(FactorOperator):
    """The true Fisher ``(P, P)``: exact (``mc_samples=None``) or Monte Carlo with ``mc_samples`` labels per example.

    ``y`` is not used (the labels come from the model) and may be omitted."""

    def __init__(self, net, theta, X, y=None, mc_samples=None, seed=0, max_directions=None):
        kind = "fisher" if mc_samples is None else "mc"
        factor = output_factor(net, theta, X, None, kind, mc_samples, seed)
        super().__init__(net, theta, X, y, factor, max_directions)
        self.mc_samples = mc_samples

    def __repr__(self):
        how = "exact" if self.mc_samples is None else f"Monte Carlo, {self.mc_samples} samples per example"
        return f"{super().__repr__()[:-1]}, {how})"
