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
from .backend import namespace
from .forward import backward_pass, forward_pass


def _rows_times(A, W):
    """``(k, N, m) @ (m, n)`` as one GEMM over the k*N rows."""
    xp = namespace(A)
    k, N, m = A.shape
    return xp.reshape(xp.reshape(A, (k * N, m)) @ W, (k, N, W.shape[1]))


def hessian_vector_product(net, theta, X, y, V):
    """``H @ V`` for ``V: (P,)`` or ``(P, k)``, same shape as ``V`` (inputs already validated)."""
    xp = namespace(theta, X)
    single = V.ndim == 1
    Vk = V[None, :] if single else V.T  # (k, P)
    k, N = Vk.shape[0], X.shape[0]

    params = net.unflatten(theta)
    dirs = []  # per layer: (V_l: (k, n_{l-1}, n_l), v^b_l: (k, n_l))
    for layer in net.layers:
        split = layer.start + layer.fan_in * layer.fan_out
        dirs.append((xp.reshape(Vk[:, layer.start:split], (k, layer.fan_in, layer.fan_out)),
                     Vk[:, split:layer.stop]))

    fwd = forward_pass(params, X, net.activation, order=2)
    deltas, act_grads = backward_pass(fwd, net.loss_fn.grad(fwd.outputs, y))

    # Forward R-pass.
    R_inputs, R_pre = [None], []  # R{a_0} = 0 is kept as None to skip its GEMMs
    for l, ((W, _), (VW, vb)) in enumerate(zip(params, dirs)):
        Rz = fwd.inputs[l] @ VW + vb[:, None, :]  # (N, n_{l-1}) @ (k, n_{l-1}, n_l) -> (k, N, n_l)
        if R_inputs[l] is not None:
            Rz = Rz + _rows_times(R_inputs[l], W)
        R_pre.append(Rz)
        if l < len(params) - 1:
            R_inputs.append(fwd.dact[l] * Rz)

    # Backward R-pass, collecting the per-layer pieces of H v.
    pieces = [None] * len(params)
    R_delta = net.loss_fn.hessian_vector_product(fwd.outputs, y, R_pre[-1])  # (k, N, K)
    for l in range(len(params) - 1, -1, -1):
        a, delta = fwd.inputs[l], deltas[l]
        RgW = xp.matmul(a.T, R_delta)  # (n_{l-1}, N) @ (k, N, n_l) -> (k, n_{l-1}, n_l)
        if R_inputs[l] is not None:
            RgW = RgW + xp.matmul(xp.permute_dims(R_inputs[l], (0, 2, 1)), delta)
        pieces[l] = (xp.reshape(RgW, (k, -1)), xp.sum(R_delta, axis=1))
        if l > 0:
            W, VW = params[l][0], dirs[l][0]
            R_g = _rows_times(R_delta, W.T) + delta @ xp.permute_dims(VW, (0, 2, 1))  # (k, N, n_{l-1})
            R_delta = R_g * fwd.dact[l - 1] + (act_grads[l - 1] * fwd.d2act[l - 1]) * R_pre[l - 1]

    HV = xp.concat([p for pair in pieces for p in pair], axis=1) / N  # (k, P)
    if net.l2:
        HV = HV + net.l2 * Vk
    return HV[0, :] if single else HV.T
