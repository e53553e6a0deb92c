r"""KFAC: the Gauss-Newton (or Fisher) matrix approximated by one Kronecker product per layer.

Layer l's block of the Gauss-Newton family :math:`\frac1N\sum_n J_n^T F_n F_n^T J_n` is, with the per-example
"gradients" :math:`\tilde a_{l-1,n} \otimes d^{(j)}_{l,n}` (``_kronecker``'s layout),

.. math::
    G_{ll} = \frac1N \sum_n \tilde a_n \tilde a_n^T \otimes D_n, \qquad D_n = \sum_j d^{(j)}_n d^{(j)T}_n,

and KFAC (Martens & Grosse 2015) replaces the mean of products by the product of means:

.. math::
    G_{ll} \approx A_l \otimes B_l, \qquad A_l = \frac1N \sum_n \tilde a_{l-1,n} \tilde a_{l-1,n}^T \;(I \times I),
    \qquad B_l = \frac1N \sum_n \sum_j d^{(j)}_{l,n} d^{(j)T}_{l,n} \;(O \times O),

with cross-layer blocks zero and the L2 term :math:`\lambda I` added exactly. **Conventions**, stated as curvlinops
states its own: the loss is the mean over the N examples (``reduction="mean"``), each factor is an expectation over
the examples (the ``1/N`` in each, so that :math:`A \otimes B` has the scale of :math:`G`); weights and bias form
one block (the input is augmented with a 1: curvlinops's ``separate_weight_and_bias=False``); no weight sharing,
so the "expand" and "reduce" variants (Eschenhagen et al. 2023) coincide. ``fisher_type`` picks the output
factor (``_factors``): ``"gauss_newton"`` (default; the loss Hessian's square root, K backward passes:
curvlinops's ``type-2``), ``"fisher"`` (the same matrix by the expectation over labels), ``"mc"``
(``mc_samples`` labels drawn from the model per example: curvlinops's ``mc``), ``"empirical"`` (the labels'
gradients). KFAC is exact where :math:`D_n` does not depend on n, e.g. one example, or a linear (one-layer) model
with the squared error (:math:`D_n = I`).
"""
from ...backend import device_of, namespace
from ._factors import output_factor
from ._kronecker import KroneckerEigenOperator, layer_statistics


def kronecker_factors(net, theta, X, factor):
    """``[(A_l: (I, I), B_l: (O, O)), ...]``, KFAC's factors (the module docstring) for the output factor
    ``factor: (N, K, m)``."""
    xp, N = namespace(theta), X.shape[0]

    def outer_sums(l, a, d):  # a: (n, I), d: (m, n, O)
        d = xp.reshape(d, (-1, d.shape[2]))  # (m n, O): every column of every example
        return a.T @ a, d.T @ d

    sums = layer_statistics(net, theta, X, factor, outer_sums)
    return [(A / N, B / N) for A, B in sums]


class KFAC(KroneckerEigenOperator):
    r"""KFAC (Martens & Grosse 2015) of the Gauss-Newton matrix, ``(P, P)`` block-diagonal, plus :math:`\lambda I`.

    ``factors``: per layer ``(A_l, B_l)``; products as :math:`A X B`, the dense matrix as ``kron(A, B)`` per block;
    ``eigenvalues()`` and ``inverse(damping)`` from the factors' eigendecompositions
    :math:`A = U_A \mathrm{diag}(s_A) U_A^T`, :math:`B = U_B \mathrm{diag}(s_B) U_B^T`.
    """

    def __init__(self, net, theta, X, y=None, fisher_type="gauss_newton", mc_samples=1, seed=0, max_directions=None):
        super().__init__(net, theta, X, y, eigen=None, shift=net.l2, max_directions=max_directions)
        self.fisher_type, self.mc_samples = fisher_type, mc_samples
        factor = output_factor(net, self.theta, self.X, self.y, fisher_type, mc_samples, seed)
        self.factors = kronecker_factors(net, self.theta, self.X, factor)
        self.eigen = []
        for A, B in self.factors:
            sA, UA = self.xp.linalg.eigh(A)
            sB, UB = self.xp.linalg.eigh(B)
            self.eigen.append((UA, UB, sA[:, None] * sB[None, :]))  # eigenvalues of A (x) B: (I, O)

    def _apply(self, V):
        xp = self.xp
        k = V.shape[1]
        pieces = []
        for layer, (A, B) in zip(self.net.layers, self.factors):
            X = xp.reshape(V[layer.start:layer.stop, :].T, (k, layer.fan_in + 1, layer.fan_out))  # (k, I, O)
            pieces.append(xp.reshape(xp.matmul(xp.matmul(A, X), B), (k, -1)))  # (A (x) B) vec X = vec(A X B)
        out = xp.concat(pieces, axis=1).T
        return out + self.shift * V if self.shift else out

    def diagonal(self):
        xp = self.xp
        diag = xp.concat([xp.reshape(xp.linalg.diagonal(A)[:, None] * xp.linalg.diagonal(B)[None, :], (-1,))
                          for A, B in self.factors])
        return diag + self.shift

    def trace(self):
        xp = self.xp
        traces = [float(xp.sum(xp.linalg.diagonal(A))) * float(xp.sum(xp.linalg.diagonal(B))) for A, B in self.factors]
        return sum(traces) + self.shift * self.shape[0]

    def to_dense(self):
        self._check_dense_fits()
        xp = self.xp
        dense = xp.zeros(self.shape, dtype=self.theta.dtype, device=device_of(self.theta))
        for layer, (A, B) in zip(self.net.layers, self.factors):
            dense[layer.start:layer.stop, layer.start:layer.stop] = xp.reshape(
                A[:, None, :, None] * B[None, :, None, :], (layer.size, layer.size))  # kron(A, B)
        return dense + self.shift * xp.eye(self.shape[0], dtype=dense.dtype, device=device_of(dense)) if self.shift \
            else dense
