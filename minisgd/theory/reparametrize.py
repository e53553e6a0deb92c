r"""Rescalings that leave a ReLU network's function unchanged and move its sharpness at will (Dinh et al. 2017,
*Sharp minima can generalize for deep nets*).

A positively homogeneous activation, :math:`\sigma(a z) = a\,\sigma(z)` for :math:`a > 0` (ReLU, the identity),
lets a factor pass through a layer. Multiply layer :math:`l`'s weights by :math:`\alpha_l > 0` and its bias by
:math:`c_l = \prod_{k \le l} \alpha_k`; then every pre-activation of layer :math:`l` is :math:`c_l` times the old
one, and with :math:`c_L = \prod_l \alpha_l = 1` the outputs are unchanged, for every input:

.. math::  z_l' = \alpha_l W_l^T \sigma(z_{l-1}') + c_l b_l = c_l (W_l^T \sigma(z_{l-1}) + b_l) = c_l z_l.

On the flat parameters this is a diagonal linear map :math:`\theta' = D\theta` (:math:`D = \alpha_l` on
``W_l``, :math:`c_l` on ``b_l``), and :math:`f(D\theta) = f(\theta)` for every :math:`\theta` (``f`` any function
of the outputs: the loss, the accuracy). The chain rule then says how the derivatives at :math:`\theta' = D\theta`
follow from those at :math:`\theta`:

.. math::  \nabla f(\theta') = D^{-1} \nabla f(\theta), \qquad
           \nabla^2 f(\theta') = D^{-1}\, \nabla^2 f(\theta)\, D^{-1}.

So the Hessian's top eigenvalue, its trace and Keskar's epsilon-sharpness change (by :math:`\alpha^2` and more)
while the function, and so every measure of generalization, stays the same. By Ostrowski's theorem (Horn & Johnson,
*Matrix Analysis*, Thm. 4.5.9) :math:`\lambda_k(D^{-1} H D^{-1}) = t_k \lambda_k(H)` with
:math:`t_k \in [1/\max_i d_i^2,\ 1/\min_i d_i^2]`: the bounds :func:`Rescaling.eigenvalue_bounds` gives.

An L2 penalty (``net.l2 > 0``) is not invariant: the outputs and the data term still are, the penalty is not, and
the Hessian law above then holds for the data term only.
"""
import math
from dataclasses import dataclass

import numpy as np

from ..backend import device_of, namespace

# sigma(a z) = a sigma(z) for all a > 0 and z: the activations a rescaling passes through
POSITIVELY_HOMOGENEOUS = ("relu", "identity")


@dataclass(frozen=True, eq=False)
class Rescaling:
    r"""The function-preserving map :math:`\theta' = D\theta` of a network.

    alphas: ``(L,)`` the per-layer weight factors :math:`\alpha_l > 0`, :math:`\prod_l \alpha_l = 1`.
    scale: ``(P,)`` float64, the diagonal of :math:`D` (:math:`\alpha_l` on ``W_l``, :math:`c_l` on ``b_l``).
    """

    alphas: tuple
    scale: np.ndarray

    def _d(self, like):
        xp = namespace(like)
        return xp.asarray(self.scale, dtype=like.dtype, device=device_of(like))

    def apply(self, theta):
        r"""``(P,)`` the rescaled parameters :math:`D\theta`."""
        return self._d(theta) * theta

    def gradient(self, g):
        r"""``(P,)`` the gradient at :math:`D\theta` from the gradient ``g`` at :math:`\theta`: :math:`D^{-1} g`."""
        return g / self._d(g)

    def hessian(self, H):
        r"""``(P, P)`` the Hessian at :math:`D\theta` from the Hessian ``H`` at :math:`\theta`:
        :math:`D^{-1} H D^{-1}`."""
        d = self._d(H)
        return H / d[:, None] / d[None, :]

    def eigenvalue_bounds(self, eigenvalue):
        r"""Where :math:`\lambda_k(D^{-1} H D^{-1})` must lie given :math:`\lambda_k(H) =` ``eigenvalue``
        (Ostrowski): between :math:`\lambda_k(H)/\max_i d_i^2` and :math:`\lambda_k(H)/\min_i d_i^2`, ordered."""
        d2 = self.scale ** 2
        ends = (eigenvalue / d2.max(), eigenvalue / d2.min())
        return min(ends), max(ends)


def rescaling(net, alphas):
    r"""The :class:`Rescaling` of ``net`` with weight factors ``alphas`` (one per layer, :math:`\alpha_l > 0`,
    :math:`\prod_l \alpha_l = 1`); biases get :math:`c_l = \prod_{k \le l} \alpha_k`.

    Refused (``ValueError``): an activation that is not positively homogeneous (the function would change), a
    wrong number of factors, a factor that is not finite and positive (a negative one flips ReLU's kink), and
    factors whose product is not 1 (to relative precision 1e-10), which would scale the outputs by that product.
    """
    act = net.activation.name
    if act not in POSITIVELY_HOMOGENEOUS:
        raise ValueError(f"rescaling preserves the function only for positively homogeneous activations "
                         f"({', '.join(POSITIVELY_HOMOGENEOUS)}: sigma(a z) = a sigma(z) for a > 0); this network "
                         f"uses {act!r}, for which W1 -> a W1, W2 -> W2 / a changes the outputs")
    alphas = tuple(float(a) for a in np.ravel(alphas))
    if len(alphas) != net.num_layers:
        raise ValueError(f"give one factor per layer: {net.num_layers} for {net!r}, got {len(alphas)}")
    if not all(math.isfinite(a) and a > 0 for a in alphas):
        raise ValueError(f"every factor must be finite and > 0 (a negative one flips the ReLU), got {alphas}")
    log_product = math.fsum(math.log(a) for a in alphas)
    if abs(log_product) > 1e-10:
        raise ValueError(f"the factors multiply to {math.exp(log_product):.6g}, not 1, so the outputs would be "
                         f"scaled by that much; make the last factor 1 / (product of the others)")
    scale, c = np.empty(net.num_params), 1.0
    for layer, alpha in zip(net.layers, alphas):
        c *= alpha
        split = layer.start + layer.fan_in * layer.fan_out  # theta[start:split] = W_l.ravel(), then b_l
        scale[layer.start:split], scale[split:layer.stop] = alpha, c
    return Rescaling(alphas, scale)


def rescale(net, theta, alphas):
    r"""``(P,)`` :math:`D\theta`: the same function as ``theta``, other sharpness; see :func:`rescaling`."""
    return rescaling(net, alphas).apply(theta)


def opposite_factors(num_layers, alpha, layers=(1, 2)):
    r"""``(L,)`` factors :math:`\alpha` on layer ``layers[0]``, :math:`1/\alpha` on ``layers[1]`` (1-based), 1
    elsewhere: Dinh et al.'s two-layer example :math:`(\alpha W_1, W_2/\alpha)`."""
    first, second = layers
    if not (1 <= first <= num_layers and 1 <= second <= num_layers and first != second):
        raise ValueError(f"layers must be two different layers in 1 .. {num_layers}, got {layers}")
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be finite and > 0, got {alpha!r}")
    factors = [1.0] * num_layers
    factors[first - 1], factors[second - 1] = alpha, 1.0 / alpha
    return tuple(factors)
