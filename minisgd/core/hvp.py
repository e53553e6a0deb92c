r"""Hessian-vector products by Pearlmutter's R-operator (Pearlmutter 1994), k directions at once.

For a direction :math:`v` (split per layer into :math:`V_l, v^b_l`, shaped like :math:`W_l, b_l`), write
:math:`R\{x\} = \frac{d}{dt} x(\theta + t v)|_{t=0}`. Applying R to the forward pass,

.. math::
    R\{z_l\} = R\{a_{l-1}\} W_l + a_{l-1} V_l + v^b_l, \qquad R\{a_l\} = \sigma'(z_l) \odot R\{z_l\},
    \qquad R\{a_0\} = 0,

and to the backward pass (:math:`g_l = \delta_{l+1} W_{l+1}^T`, :math:`A` the loss Hessian w.r.t. outputs),

.. math::
    R\{\delta_L\} = A\, R\{z_L\}, \qquad
    R\{\delta_l\} = \big(R\{\delta_{l+1}\} W_{l+1}^T + \delta_{l+1} V_{l+1}^T\big) \odot \sigma'(z_l)
                    + g_l \odot \sigma''(z_l) \odot R\{z_l\},

gives :math:`Hv` block by block as :math:`R\{\nabla_{W_l}\} = (R\{a_{l-1}\}^T \delta_l + a_{l-1}^T R\{\delta_l\})/N`,
:math:`R\{\nabla_{b_l}\} = \sum_n R\{\delta_{l,n}\}/N`, plus :math:`\lambda v`. The k directions ride along
a leading axis: every R-quantity is ``(k, N, n_l)``, so one call costs a few GEMMs per layer, not k passes.
"""
from ..backend import device_of, namespace
from ..threads import blas_threads
from .passes import augmented, backward_pass, column_sums, forward_pass, largest_layer_gemm, rows_times


def split_directions(net, Vk):
    """Directions ``Vk: (k, P)`` per layer: ``[(V_l: (k, n_{l-1}, n_l), v^b_l: (k, n_l)), ...]``, like ``unflatten``."""
    xp = namespace(Vk)
    k = Vk.shape[0]
    dirs = []
    for layer in net.layers:
        split = layer.start + layer.fan_in * layer.fan_out
        dirs.append((xp.reshape(Vk[:, layer.start:split], (k, layer.fan_in, layer.fan_out)),
                     Vk[:, split:layer.stop]))
    return dirs


def forward_r_pass(fwd, dirs):
    r"""The forward R-pass: ``(R_inputs, R_pre)``, per layer l :math:`R\{a_{l-1}\}: (k, N, n_{l-1})` (None for
    the input layer, where it is zero) and :math:`R\{z_l\}: (k, N, n_l)`; ``R_pre[-1]`` is :math:`J V`, the
    outputs' directional derivatives. Needs ``fwd.dact`` (a forward pass of order >= 1)."""
    R_inputs, R_pre = [None], []  # R{a_0} = 0 is kept as None to skip its GEMMs
    last = len(fwd.params) - 1
    for l, ((W, _), (VW, vb)) in enumerate(zip(fwd.params, dirs)):
        Rz = fwd.inputs[l] @ VW  # (N, n_{l-1}) @ (k, n_{l-1}, n_l) -> (k, N, n_l)
        Rz += vb[:, None, :]  # in place: the GEMM's output is ours
        if R_inputs[l] is not None:
            Rz += rows_times(R_inputs[l], W)
        R_pre.append(Rz)
        if l < last:
            R_inputs.append(fwd.dact[l] * Rz)
    return R_inputs, R_pre


def _r_pass(net, theta, X, y, Vk):
    """Forward and backward R-passes for directions ``Vk: (k, P)``.

    Returns ``(fwd, deltas, R_inputs, R_deltas)``: per layer l, ``a_{l-1}``, ``delta_l: (N, n_l)`` and
    ``R{a_{l-1}}: (k, N, n_{l-1})`` (None for the input layer), ``R{delta_l}: (k, N, n_l)``, per example
    (no 1/N): the pieces of every per-layer Hessian-vector product.
    """
    xp = namespace(theta, X)
    params = net.unflatten(theta)
    dirs = split_directions(net, Vk)
    fwd = forward_pass(params, X, net.activation, order=2)
    deltas, act_grads = backward_pass(fwd, net.loss_fn.grad(fwd.outputs, y))
    R_inputs, R_pre = forward_r_pass(fwd, dirs)

    R_deltas = [None] * len(params)
    R_delta = net.loss_fn.hessian_vector_product(fwd.outputs, y, R_pre[-1])  # (k, N, K)
    for l in range(len(params) - 1, -1, -1):
        R_deltas[l] = R_delta
        if l > 0:
            W, VW = params[l][0], dirs[l][0]
            R_delta = rows_times(R_delta, W.T)  # (k, N, n_{l-1}); R{g}, then R{delta} in place
            R_delta += deltas[l] @ xp.permute_dims(VW, (0, 2, 1))
            R_delta *= fwd.dact[l - 1]
            R_delta += (act_grads[l - 1] * fwd.d2act[l - 1]) * R_pre[l - 1]
    return fwd, deltas, R_inputs, R_deltas


def hvp_flops(net, N, k):
    r"""``(4 + 10 k) N W`` (W the number of weights): the GEMM flops of ``k`` Hessian-vector products, the
    forward and backward passes (:math:`4 N W`) and per direction the forward R-pass (:math:`4 N W`), the
    backward R-pass (:math:`4 N W`, less the input layer) and the blocks of :math:`Hv` (:math:`4 N W`)."""
    return (4.0 + 10.0 * k) * N * sum(layer.fan_in * layer.fan_out for layer in net.layers)


def hessian_vector_product(net, theta, X, y, V):
    """``H @ V`` for ``V: (P,)`` or ``(P, k)``, same shape as ``V`` (inputs already validated)."""
    xp = namespace(theta, X)
    single = V.ndim == 1
    # (k, P) row-major: each direction's layer blocks are then unit-stride matrices, which matmul hands to BLAS
    # (a transposed view of V would send it down NumPy's strided loop, 2-4x slower per direction).
    Vk = V[None, :] if single else xp.reshape(xp.reshape(V.T, (-1,)), (V.shape[1], V.shape[0]))
    k, N = Vk.shape[0], X.shape[0]
    with blas_threads(largest_layer_gemm(net, k * N)):  # R-passes: one GEMM over k N rows
        fwd, deltas, R_inputs, R_deltas = _r_pass(net, theta, X, y, Vk)
        pieces = []
        for a, delta, Ra, Rd in zip(fwd.inputs, deltas, R_inputs, R_deltas):
            RgW = xp.matmul(a.T, Rd)  # (n_{l-1}, N) @ (k, N, n_l) -> (k, n_{l-1}, n_l)
            if Ra is not None:
                RgW += xp.matmul(xp.permute_dims(Ra, (0, 2, 1)), delta)
            pieces += [xp.reshape(RgW, (k, -1)), column_sums(Rd)]
        HV = xp.concat(pieces, axis=1) / N  # (k, P)
    if net.l2:
        HV = HV + net.l2 * Vk
    return HV[0, :] if single else HV.T


def per_example_hvps(net, theta, X, y, v):
    r"""``(N, P)``: row n is :math:`(\nabla^2 \ell_n + \lambda I) v` for one direction ``v: (P,)``.

    The same R-passes as ``hessian_vector_product``, without the sum over examples: per layer,
    :math:`R\{\nabla_{\tilde W_l} \ell_n\} = R\{\tilde a_{l-1,n}\} \otimes \delta_{l,n} + \tilde a_{l-1,n} \otimes
    R\{\delta_{l,n}\}` (``R{ã}`` has a 0 in the bias slot). Their mean over rows is ``H v``.
    """
    xp = namespace(theta, X)
    N = X.shape[0]
    fwd, deltas, R_inputs, R_deltas = _r_pass(net, theta, X, y, v[None, :])
    out = xp.empty((N, net.num_params), dtype=theta.dtype, device=device_of(theta))
    for layer, a, delta, Ra, Rd in zip(net.layers, fwd.inputs, deltas, R_inputs, R_deltas):
        block = augmented(a)[:, :, None] * Rd[0][:, None, :]  # (N, n_{l-1} + 1, n_l)
        if Ra is not None:
            Ra0 = xp.concat([Ra[0], xp.zeros((N, 1), dtype=theta.dtype, device=device_of(theta))], axis=1)
            block = block + Ra0[:, :, None] * delta[:, None, :]
        out[:, layer.start:layer.stop] = xp.reshape(block, (N, layer.size))
    if net.l2:
        out = out + net.l2 * v[None, :]
    return out
