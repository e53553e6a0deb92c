r"""The forward and backward passes that every derivative in minisgd starts from.

Layer :math:`l = 1..L` computes :math:`z_l = a_{l-1} W_l + b_l` (``a_0 = X``) and, for hidden layers,
:math:`a_l = \sigma(z_l)`; the last layer is linear and :math:`z_L` are the outputs. The backward pass
propagates :math:`\delta_l = \partial \ell_n / \partial z_l` per example:

.. math::
    \delta_L = \nabla_z \ell(z_L, y), \qquad g_l = \delta_{l+1} W_{l+1}^T, \qquad \delta_l = g_l \odot \sigma'(z_l),

with :math:`g_l = \partial \ell_n / \partial a_l`. Nothing here is divided by N: the per-example quantities
are what per-example gradients, the R-operator and the exact Hessian all need.
"""
from dataclasses import dataclass, field
from typing import List

from ..backend import device_of, namespace
from .kernels import bias_activation


@dataclass
class Forward:
    """What the forward pass leaves for the derivatives, one entry per layer.

    params:  list of ``(W: (n_{l-1}, n_l), b: (n_l,))``
    inputs:  ``a_{l-1}: (N, n_{l-1})`` for l = 1..L (``inputs[0]`` is X)
    pre:     ``z_l: (N, n_l)`` for l = 1..L (``pre[-1]`` is the output)
    dact:    ``sigma'(z_l): (N, n_l)`` for the hidden layers l = 1..L-1 (when order >= 1)
    d2act:   ``sigma''(z_l): (N, n_l)`` for the hidden layers (when order == 2)
    """

    params: list
    inputs: List = field(default_factory=list)
    pre: List = field(default_factory=list)
    dact: List = field(default_factory=list)
    d2act: List = field(default_factory=list)

    @property
    def outputs(self):
        return self.pre[-1]


def forward_pass(params, X, activation, order=1):
    """Run the network on ``X: (N, d)``, keeping activation derivatives up to ``order`` (0, 1 or 2)."""
    fwd = Forward(params)
    a = X
    last = len(params) - 1
    for l, (W, b) in enumerate(params):
        fwd.inputs.append(a)
        if l == last:
            z = a @ W  # (N, K)
            z += b  # in place: the GEMM's output is ours
            fwd.pre.append(z)
        elif order == 1:  # the training path: bias, activation and derivative in one pass
            z, a, da = bias_activation(a @ W, b, activation)  # (N, n_l) each
            fwd.pre.append(z)
            fwd.dact.append(da)
        else:
            z = a @ W  # (N, n_l)
            z += b
            fwd.pre.append(z)
            derivs = activation.derivatives(z, order)
            a = derivs[0]
            fwd.dact += derivs[1:2]
            fwd.d2act += derivs[2:3]
    return fwd


def largest_layer_gemm(net, N):
    """``2 N max_l n_{l-1} n_l``: the largest single GEMM of a pass over ``N`` examples (what the thread policy
    weighs)."""
    return 2.0 * N * max(layer.fan_in * layer.fan_out for layer in net.layers)


def rows_times(A, W):
    """``A @ W`` for ``A: (..., m)``, ``W: (m, n)`` as one GEMM over all leading rows (NumPy would run one
    GEMM per leading index)."""
    xp = namespace(A)
    if A.ndim == 2:
        return A @ W
    lead = A.shape[:-1]
    return xp.reshape(xp.reshape(A, (-1, A.shape[-1])) @ W, (*lead, W.shape[1]))


def backward_pass(fwd, seed):
    r"""Backpropagate ``seed`` :math:`= \partial \ell / \partial z_L` through the network.

    ``seed: (..., N, K)``; leading axes are carried along (e.g. one per output unit for the output
    Jacobian). Returns ``(deltas, act_grads)``: ``deltas[l]`` is :math:`\delta_{l+1}: (..., N, n_{l+1})`
    for l = 0..L-1 and ``act_grads[l]`` is :math:`g_{l+1} = \delta_{l+2} W_{l+2}^T` for the hidden layers.
    """
    L = len(fwd.params)
    deltas = [None] * L
    act_grads = [None] * (L - 1)
    delta = seed
    deltas[L - 1] = delta
    for l in range(L - 1, 0, -1):
        W = fwd.params[l][0]
        g = rows_times(delta, W.T)  # (..., N, n_l)
        act_grads[l - 1] = g
        delta = g * fwd.dact[l - 1]
        deltas[l - 1] = delta
    return deltas, act_grads


def column_sums(A):
    r"""``(..., n)``: :math:`\sum_n A_{..., n, :}` of ``A: (..., N, n)``, as one matrix-vector product with ones (NumPy's
    reduction over the first axis of a narrow array is 4x slower than the BLAS call)."""
    xp = namespace(A)
    return xp.ones(A.shape[-2], dtype=A.dtype, device=device_of(A)) @ A


def augmented(a):
    """``[a, 1]``: (N, n) -> (N, n + 1), the input with the 1 that multiplies the bias row of ``[W; b]``."""
    xp = namespace(a)
    return xp.concat([a, xp.ones((a.shape[0], 1), dtype=a.dtype, device=device_of(a))], axis=1)
