r"""Gauss-Newton products :math:`J^T M J V` without the Jacobian, k directions at once; the Gauss-Newton diagonal.

With :math:`J_n = \partial z_{L,n} / \partial\theta` (``(K, P)``) and a symmetric :math:`M_n` (``(K, K)``) per
example in output space, the **sandwich**

.. math::
    G_M V = \frac1N \sum_n J_n^T M_n J_n V

costs one forward R-pass (:math:`U = J V`, Pearlmutter 1994: :func:`minisgd.core.hvp.forward_r_pass`), the
output-space product :math:`M_n u_n`, and one backward pass seeded with it (backprop is :math:`J^T`): about two
gradients' worth of GEMMs for all k directions together. Per layer the transposed Jacobian gives the outer-product
sums :math:`\sum_n \tilde a_{l-1,n} \otimes \delta^{(j)}_{l,n}` of :mod:`minisgd.core.backprop`, one per direction.

* :math:`M = A = \partial^2 \ell / \partial z^2` (the loss Hessian) is the **generalized Gauss-Newton matrix**
  (Schraudolph 2002), ``net.gauss_newton`` as a product: :func:`gauss_newton_vector_product` (L2 included).
* :math:`M = F F^T` from a per-example **output factor** ``F: (N, K, m)`` is the Fisher family
  (:func:`factor_vector_product`): ``F`` a square root of ``A`` gives the Gauss-Newton matrix again, sampled
  gradients the Monte Carlo Fisher, the gradient at the label the empirical Fisher (``minisgd.curvature.operators``).

For a factor, backpropagating its ``m`` columns gives per layer :math:`\tilde a_{l-1}` and the deltas
:math:`d^{(j)}_{l,n} = J_{L \leftarrow l,n}^T F_n[:, j]` (:func:`backpropagated_factor`): the pieces of the
diagonal, :math:`\mathrm{diag}\, G_F = \frac1N \sum_n \sum_j \tilde a^{\odot 2} \otimes d^{(j)\odot 2}`
(:func:`factor_diagonal`), and of KFAC's Kronecker factors. Nothing here divides by N but the two products and
the diagonal, which are means over examples like the loss.
"""
from ..backend import namespace
from .hvp import forward_r_pass, split_directions
from .passes import augmented, backward_pass, forward_pass


def _sandwich(net, theta, X, Vk, output_product):
    r"""``(k, P)``: :math:`\frac1N \sum_n J_n^T M_n J_n v` for each row ``v`` of ``Vk: (k, P)``;
    ``output_product(fwd, U)`` returns :math:`M_n u_n` for ``U = J V: (k, N, K)``."""
    xp = namespace(theta, X)
    N = X.shape[0]
    fwd = forward_pass(net.unflatten(theta), X, net.activation, order=1)
    _, R_pre = forward_r_pass(fwd, split_directions(net, Vk))
    deltas, _ = backward_pass(fwd, output_product(fwd, R_pre[-1]))  # deltas[l]: (k, N, n_l)
    pieces = []
    for a, delta in zip(fwd.inputs, deltas):
        dW = xp.matmul(a.T, delta)  # (n_{l-1}, N) @ (k, N, n_l) -> (k, n_{l-1}, n_l)
        pieces += [xp.reshape(dW, (Vk.shape[0], -1)), xp.sum(delta, axis=1)]  # row-major [W; b], like theta
    return xp.concat(pieces, axis=1) / N


def _as_rows(V):
    """``V: (P,)`` or ``(P, k)`` -> ``(k, P)`` and whether it was one vector."""
    return (V[None, :], True) if V.ndim == 1 else (V.T, False)


def gauss_newton_vector_product(net, theta, X, y, V):
    r"""``G @ V`` for ``V: (P,)`` or ``(P, k)``, same shape as ``V`` (inputs already validated by ``MLP``):

    .. math::
        G V = \frac1N \sum_n J_n^T A_n J_n V + \lambda V, \qquad A_n = \partial^2 \ell_n / \partial z_{L,n}^2,

    the Gauss-Newton part of the Hessian (``net.gauss_newton`` times ``V``), ``A_n u`` by the loss's own product
    (no ``(K, K)`` matrix)."""
    Vk, single = _as_rows(V)
    GV = _sandwich(net, theta, X, Vk, lambda fwd, U: net.loss_fn.hessian_vector_product(fwd.outputs, y, U))
    if net.l2:
        GV = GV + net.l2 * Vk
    return GV[0, :] if single else GV.T


def factor_vector_product(net, theta, X, factor, V):
    r"""``(P,)`` or ``(P, k)``: :math:`\frac1N \sum_n J_n^T F_n F_n^T J_n V` for an output factor
    ``factor: (N, K, m)`` (no L2 term: the caller adds what its matrix means)."""
    xp = namespace(factor)
    Vk, single = _as_rows(V)

    def output_product(fwd, U):  # F (F^T u) per example, batched over (k, N)
        coefficients = xp.matmul(U[:, :, None, :], factor)  # (k, N, 1, K) @ (N, K, m) -> (k, N, 1, m)
        return xp.matmul(factor, xp.permute_dims(coefficients, (0, 1, 3, 2)))[..., 0]  # (k, N, K, 1) -> (k, N, K)

    out = _sandwich(net, theta, X, Vk, output_product)
    return out[0, :] if single else out.T


def backpropagated_factor(net, theta, X, factor):
    r"""Per layer ``(ã_{l-1}: (N, n_{l-1} + 1), d_l: (m, N, n_l))``: the augmented inputs and the factor's columns
    backpropagated to the layer's pre-activations, :math:`d^{(j)}_{l,n} = J_{L \leftarrow l,n}^T F_n[:, j]`.
    The per-example "gradient" of column j at layer l is :math:`\tilde a_{l-1,n} \otimes d^{(j)}_{l,n}`."""
    xp = namespace(theta, X)
    fwd = forward_pass(net.unflatten(theta), X, net.activation, order=1)
    deltas, _ = backward_pass(fwd, xp.permute_dims(factor, (2, 0, 1)))  # seed (m, N, K)
    return [(augmented(a), d) for a, d in zip(fwd.inputs, deltas)]


def factor_diagonal(net, theta, X, factor, chunk_elements=1 << 23):
    r"""``(P,)``: the diagonal of :math:`\frac1N \sum_n J_n^T F_n F_n^T J_n` (no L2 term), per layer

    .. math::
        \mathrm{diag} = \frac1N \sum_n \tilde a_{l-1,n}^{\odot 2} \otimes \sum_j d^{(j)\odot 2}_{l,n}
        \quad (\text{one GEMM } (\tilde a^{\odot 2})^T D \text{ per layer}),

    with the factor ``(N, K, m)`` a square root of the loss Hessian this is the Gauss-Newton diagonal. Examples go
    in chunks of at most ``chunk_elements`` numbers per backpropagated array."""
    xp = namespace(theta, X)
    N, m = X.shape[0], factor.shape[2]
    rows = max(1, chunk_elements // (m * max(net.sizes[1:])))
    total = None
    for n0 in range(0, N, rows):
        n1 = min(N, n0 + rows)
        pieces = []
        for a, d in backpropagated_factor(net, theta, X[n0:n1, ...], factor[n0:n1, ...]):
            pieces.append(xp.reshape((a * a).T @ xp.sum(d * d, axis=0), (-1,)))  # (n_{l-1} + 1) x n_l row-major
        part = xp.concat(pieces)
        total = part if total is None else total + part
    return total / N
