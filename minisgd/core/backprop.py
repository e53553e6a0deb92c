r"""Gradients by backpropagation: the mean gradient, per-example gradients and their norms.

With the parameters of layer l flattened as the ``(n_{l-1} + 1, n_l)`` matrix :math:`\tilde W_l = [W_l; b_l]`
(row-major), the per-example gradient of :math:`\ell_n` with respect to it is an outer product,

.. math::
    \nabla_{\tilde W_l} \ell_n = \tilde a_{l-1,n} \otimes \delta_{l,n}, \qquad \tilde a = [a, 1],

so the mean gradient is :math:`\tilde a_{l-1}^T \delta_l / N` (one GEMM), any weighted sum
:math:`\sum_n w_n \nabla \ell_n` is the same GEMM with the output deltas seeded by :math:`w_n` instead of
:math:`1/N`, and the squared norm of a
per-example gradient factorizes, :math:`\lVert \tilde a \otimes \delta \rVert^2 = \lVert \tilde a \rVert^2
\lVert \delta \rVert^2`, with no (N, P) matrix in sight. The L2 term :math:`\tfrac{\lambda}{2}\lVert\theta\rVert^2`
adds :math:`\lambda \theta` to every per-example gradient, so their mean is the gradient.
"""
from ..backend import device_of, namespace
from ..threads import blas_threads
from .passes import augmented, backward_pass, column_sums, forward_pass, largest_layer_gemm


def gradient_flops(net, N):
    r"""``6 N W`` (W the number of weights): the GEMM flops of one gradient, :math:`2 N W` forward,
    :math:`2 N W` for the deltas and :math:`2 N W` for the weight gradients."""
    return 6.0 * N * sum(layer.fan_in * layer.fan_out for layer in net.layers)


def _output_deltas(net, fwd, y, scale=1.0, seed=None):
    """Per-example deltas of every layer, times ``scale``: a float (1/N folds the mean into the small output seed)
    or ``(N, 1)`` per-example weights. ``seed``: the loss gradient w.r.t. the outputs, when already computed."""
    seed = net.loss_fn.grad(fwd.outputs, y) if seed is None else seed
    deltas, _ = backward_pass(fwd, seed * scale)
    return deltas


def _weighted_sum_of_outer_products(xp, fwd, deltas):
    r"""``(P,)``: :math:`\sum_n \tilde a_{l-1,n} \otimes \delta_{l,n}` for every layer, the weights already in
    the deltas."""
    pieces = []
    for a, delta in zip(fwd.inputs, deltas):
        pieces.append(xp.reshape(a.T @ delta, (-1,)))  # dW: (n_{l-1}, n_l) row-major
        pieces.append(column_sums(delta))  # db: (n_l,)
    return xp.concat(pieces)


def loss_and_grad(net, theta, X, y):
    r"""Mean loss :math:`\frac1N\sum_n \ell_n + \frac{\lambda}{2}\lVert\theta\rVert^2` as a 0-d array on the
    device of ``theta`` (reading it is the caller's device-to-host copy) and its gradient ``(P,)``; inputs as
    :meth:`minisgd.core.mlp.MLP.check_inputs` returns them, not checked here."""
    xp = namespace(theta, X)
    N = X.shape[0]
    with blas_threads(largest_layer_gemm(net, N)):
        fwd = forward_pass(net.unflatten(theta), X, net.activation, order=1)
        losses, seed = net.loss_fn.value_and_grad(fwd.outputs, y)
        deltas = _output_deltas(net, fwd, y, 1.0 / N, seed)  # deltas of the mean loss: no pass over P to divide
        grad = _weighted_sum_of_outer_products(xp, fwd, deltas)
    loss = xp.mean(losses)
    if net.l2:
        grad = grad + net.l2 * theta
        loss = loss + 0.5 * net.l2 * xp.sum(theta * theta)
    return loss, grad


def weighted_gradient(net, theta, X, y, w):
    r"""``(P,)``: the weighted sum of the per-example gradients, in one backward pass,

    .. math::
        \sum_n w_n \nabla_\theta \bigl(\ell_n + \tfrac{\lambda}{2}\lVert\theta\rVert^2\bigr)
        = \sum_n w_n \nabla_\theta \ell_n + \Bigl(\sum_n w_n\Bigr) \lambda \theta,

    that is ``w @ per_example_grads(net, theta, X, y)`` without the ``(N, P)`` matrix: the output deltas are
    seeded with :math:`w_n` where the mean gradient seeds :math:`1/N`. ``w: (N,)`` any real weights;
    ``w = 1/N`` gives the gradient, weights summing to zero drop the L2 term (as in the noise of
    :mod:`minisgd.training.injection`).
    """
    xp = namespace(theta, X)
    with blas_threads(largest_layer_gemm(net, X.shape[0])):
        fwd = forward_pass(net.unflatten(theta), X, net.activation, order=1)
        deltas = _output_deltas(net, fwd, y, w[:, None])  # (N, K) seed, row n times w_n
        grad = _weighted_sum_of_outer_products(xp, fwd, deltas)
    if net.l2:
        grad = grad + net.l2 * float(xp.sum(w)) * theta
    return grad


def per_example_grads(net, theta, X, y):
    r"""``G: (N, P)``, row n the gradient of :math:`\ell_n + \frac{\lambda}{2}\lVert\theta\rVert^2`."""
    xp = namespace(theta, X)
    N = X.shape[0]
    fwd = forward_pass(net.unflatten(theta), X, net.activation, order=1)
    deltas = _output_deltas(net, fwd, y)
    G = xp.empty((N, net.num_params), dtype=theta.dtype, device=device_of(theta))
    for layer, a, delta in zip(net.layers, fwd.inputs, deltas):
        outer = augmented(a)[:, :, None] * delta[:, None, :]  # (N, n_{l-1} + 1, n_l)
        G[:, layer.start:layer.stop] = xp.reshape(outer, (N, layer.size))
    if net.l2:
        G = G + net.l2 * theta[None, :]
    return G


def per_example_grad_norms(net, theta, X, y):
    r"""``(N,)`` Euclidean norms of the rows of ``per_example_grads``, in O(N (d + sum of widths)) memory.

    .. math::
        \lVert g_n \rVert^2 = \sum_l (\lVert a_{l-1,n} \rVert^2 + 1) \lVert \delta_{l,n} \rVert^2
        + 2 \lambda \sum_l z_{l,n} \cdot \delta_{l,n} + \lambda^2 \lVert \theta \rVert^2,

    using :math:`\tilde W_l \cdot (\tilde a \otimes \delta) = (\tilde a \tilde W_l) \cdot \delta = z_l \cdot \delta`.
    """
    xp = namespace(theta, X)
    fwd = forward_pass(net.unflatten(theta), X, net.activation, order=1)
    deltas = _output_deltas(net, fwd, y)
    sq = 0.0
    for a, z, delta in zip(fwd.inputs, fwd.pre, deltas):
        delta_sq = xp.sum(delta * delta, axis=1)
        sq = sq + (xp.sum(a * a, axis=1) + 1.0) * delta_sq
        if net.l2:
            sq = sq + 2.0 * net.l2 * xp.sum(z * delta, axis=1)
    if net.l2:
        sq = sq + net.l2 ** 2 * xp.sum(theta * theta)
    return xp.sqrt(xp.maximum(sq, 0.0))  # the L2 expansion can round a zero norm to -eps


def output_jacobian(net, theta, X):
    r"""``J: (N, K, P)``, :math:`J_n = \partial z_{L,n} / \partial \theta`.

    Backpropagates the K unit seeds at once: :math:`\Delta_L = I_K` per example, giving
    :math:`\Delta_l = \partial z_L / \partial z_l: (K, N, n_l)` and the block
    :math:`J_n[k, (i, o)] = \tilde a_{l-1,n,i} \Delta_{l}[k, n, o]`.
    """
    xp = namespace(theta, X)
    N = X.shape[0]
    K = net.sizes[-1]
    fwd = forward_pass(net.unflatten(theta), X, net.activation, order=1)
    seed = xp.broadcast_to(xp.eye(K, dtype=theta.dtype, device=device_of(theta))[:, None, :], (K, N, K))
    deltas, _ = backward_pass(fwd, seed)  # deltas[l]: (K, N, n_l)
    J = xp.empty((N, K, net.num_params), dtype=theta.dtype, device=device_of(theta))
    for layer, a, delta in zip(net.layers, fwd.inputs, deltas):
        delta = xp.permute_dims(delta, (1, 0, 2))  # (N, K, n_l)
        block = augmented(a)[:, None, :, None] * delta[:, :, None, :]  # (N, K, n_{l-1} + 1, n_l)
        J[:, :, layer.start:layer.stop] = xp.reshape(block, (N, K, layer.size))
    return J
