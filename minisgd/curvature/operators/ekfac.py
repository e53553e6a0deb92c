r"""EKFAC: KFAC's eigenbasis with the eigenvalues refitted to the data (George et al. 2018).

KFAC's block :math:`A \otimes B` has the eigenbasis :math:`U = U_A \otimes U_B`; its eigenvalues
:math:`s_{A,i} s_{B,o}` are a product of means. EKFAC keeps the basis and takes instead the second moment of the
per-example "gradients" projected onto it,

.. math::
    S_{io} = \frac1N \sum_n \sum_j \big((U_A^T \tilde a_n)_i\, (U_B^T d^{(j)}_n)_o\big)^2
           = \big[U^T G_{ll} U\big]_{(io),(io)},

the diagonal of the exact block :math:`G_{ll}` in KFAC's basis: of all matrices with the eigenbasis U, EKFAC is the
closest to :math:`G_{ll}` in the Frobenius norm, so per layer :math:`\lVert \mathrm{EKFAC} - G_{ll} \rVert_F \le
\lVert \mathrm{KFAC} - G_{ll} \rVert_F`, with equality where KFAC is exact. Per layer one more pass over the
examples: :math:`S = \frac1N (\alpha^{\odot 2})^T \sum_j \beta_j^{\odot 2}` with :math:`\alpha = \tilde a U_A`,
:math:`\beta_j = d^{(j)} U_B`, one GEMM. The conventions (mean over examples, one block for weights and bias,
``fisher_type``, the L2 term added exactly) are KFAC's (:mod:`~minisgd.curvature.operators.kfac`).
"""
from ._factors import output_factor
from ._kronecker import KroneckerEigenOperator, layer_statistics
from .kfac import kronecker_factors


class EKFAC(KroneckerEigenOperator):
    r"""EKFAC (George et al. 2018) of the Gauss-Newton matrix, ``(P, P)`` block-diagonal, plus :math:`\lambda I`.

    ``eigen``: per layer ``(U_A, U_B, S)``: KFAC's eigenvectors and the refitted eigenvalues ``S: (I, O)``;
    ``kfac_eigenvalues``: KFAC's own :math:`s_A s_B^T` per layer, for comparison. ``inverse(damping)``,
    ``eigenvalues()``, the diagonal and the trace come in closed form from these.
    """

    def __init__(self, net, theta, X, y=None, fisher_type="gauss_newton", mc_samples=1, seed=0, max_directions=None):
        super().__init__(net, theta, X, y, eigen=None, shift=net.l2, max_directions=max_directions)
        self.fisher_type, self.mc_samples = fisher_type, mc_samples
        xp, N = self.xp, self.X.shape[0]
        factor = output_factor(net, self.theta, self.X, self.y, fisher_type, mc_samples, seed)
        bases, self.kfac_eigenvalues = [], []
        for A, B in kronecker_factors(net, self.theta, self.X, factor):
            sA, UA = xp.linalg.eigh(A)
            sB, UB = xp.linalg.eigh(B)
            bases.append((UA, UB))
            self.kfac_eigenvalues.append(sA[:, None] * sB[None, :])

        def projected_moments(l, a, d):  # a: (n, I), d: (m, n, O)
            UA, UB = bases[l]
            alpha, beta = a @ UA, xp.matmul(d, UB)  # (n, I), (m, n, O)
            return ((alpha * alpha).T @ xp.sum(beta * beta, axis=0),)  # (I, O)

        moments = layer_statistics(net, self.theta, self.X, factor, projected_moments)
        self.eigen = [(UA, UB, S / N) for (UA, UB), (S,) in zip(bases, moments)]
