r"""Activation functions with their first and second derivatives, side by side.

Each nonlinearity is one function ``derivatives(z, order)`` that returns ``(f,)``, ``(f, f')`` or
``(f, f', f'')`` evaluated elementwise at ``z``, sharing the intermediate values (``tanh(z)`` is computed
once for all three). The gradient needs ``f'``; the R-operator and the exact Hessian need ``f''`` too.

All formulas use only functions of the array API standard (no ``erf``), so they run unchanged on NumPy,
CuPy and array_api_strict.
"""
import math
from dataclasses import dataclass
from typing import Callable

from ..backend import namespace

_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715


def _identity(z, order):
    xp = namespace(z)
    return (z, xp.ones_like(z), xp.zeros_like(z))[: order + 1]


def _relu(z, order):
    r"""relu(z) = max(z, 0); relu' = 1[z > 0]; relu'' = 0 (the kink at 0 has measure zero)."""
    xp = namespace(z)
    positive = xp.astype(z > 0, z.dtype)
    return (z * positive, positive, xp.zeros_like(z))[: order + 1]


def _tanh(z, order):
    r"""f = tanh z;  f' = 1 - f^2;  f'' = -2 f f'."""
    xp = namespace(z)
    t = xp.tanh(z)
    if order == 0:
        return (t,)
    d1 = t * t
    d1 -= 1.0
    d1 *= -1.0  # in place: one temporary for 1 - t^2
    if order == 1:
        return (t, d1)
    d2 = t * d1
    d2 *= -2.0
    return (t, d1, d2)


def _half_tanh(z, xp):
    # 1 / (1 + e^{-z}) overflows e^{-z} for z << 0; the tanh form s = (1 + h)/2, h = tanh(z/2), is exact and
    # bounded everywhere, and h gives the derivatives in fewer passes than s does.
    return xp.tanh(0.5 * z)


def _sigmoid_from(h):
    s = h + 1.0
    s *= 0.5  # in place: one temporary fewer
    return s


def _sigmoid_slope(h):
    r"""s' = s (1 - s) = (1 - h^2)/4."""
    d1 = h * h
    d1 -= 1.0
    d1 *= -0.25
    return d1


def _sigmoid_of(z, xp):
    return _sigmoid_from(_half_tanh(z, xp))


def _sigmoid(z, order):
    r"""s = 1 / (1 + e^{-z}) = (1 + h)/2 with h = tanh(z/2);  s' = s (1 - s) = (1 - h^2)/4;
    s'' = s' (1 - 2 s) = -h s'."""
    xp = namespace(z)
    h = _half_tanh(z, xp)
    s = _sigmoid_from(h)
    if order == 0:
        return (s,)
    d1 = _sigmoid_slope(h)
    if order == 1:
        return (s, d1)
    h *= d1
    h *= -1.0  # in place: h becomes s''
    return (s, d1, h)


def _softplus(z, order):
    r"""f = log(1 + e^z) = max(z, 0) + log1p(e^{-|z|});  f' = sigmoid(z) = (1 + h)/2;  f'' = (1 - h^2)/4,
    h = tanh(z/2)."""
    xp = namespace(z)
    f = xp.exp(-xp.abs(z))
    f = xp.log1p(f)
    f += xp.maximum(z, 0.0)
    if order == 0:
        return (f,)
    h = _half_tanh(z, xp)
    if order == 1:
        return (f, _sigmoid_from(h))
    d2 = _sigmoid_slope(h)
    return (f, _sigmoid_from(h), d2)


def _gelu(z, order):
    r"""GELU, tanh approximation (Hendrycks & Gimpel 2016):
    f = z/2 (1 + tanh u),  u = c (z + a z^3),  c = sqrt(2/pi),  a = 0.044715;
    f' = (1 + t)/2 + z/2 (1 - t^2) u';   f'' = (1 - t^2) (u' + z/2 (u'' - 2 t u'^2)),
    with t = tanh u,  u' = c (1 + 3 a z^2),  u'' = 6 a c z."""
    xp = namespace(z)
    z2 = z * z
    u = z2 * (_GELU_C * _GELU_A)  # in place from here: u = c z (1 + a z^2), one temporary for all its passes
    u += _GELU_C
    u *= z
    t = xp.tanh(u)
    half = t + 1.0
    half *= 0.5  # (1 + t)/2
    f = z * half
    if order == 0:
        return (f,)
    du = z2  # z2 is not needed again: u' = c + 3 a c z^2 in its place
    du *= 3.0 * _GELU_A * _GELU_C
    du += _GELU_C
    sech2 = t * t
    sech2 -= 1.0
    sech2 *= -1.0  # 1 - t^2
    q = 0.5 * z
    q *= sech2  # z/2 (1 - t^2)
    d1 = q * du
    d1 += half
    if order == 1:
        return (f, d1)
    # f'' = (1 - t^2) u' + z/2 (1 - t^2)(u'' - 2 t u'^2),  u'' = 6 a c z
    w = du * du
    w *= t
    w *= -2.0
    w += (6.0 * _GELU_A * _GELU_C) * z
    w *= q
    sech2 *= du
    w += sech2
    return (f, d1, w)


def _silu(z, order):
    r"""SiLU / swish: f = z s;  f' = s (1 + z (1 - s));  f'' = s (1 - s)(2 + z (1 - 2 s)),  s = sigmoid(z)."""
    xp = namespace(z)
    s = _sigmoid_of(z, xp)
    f = z * s
    if order == 0:
        return (f,)
    ds = s * (1.0 - s)
    return (f, s + z * ds, ds * (2.0 + z * (1.0 - 2.0 * s)))[: order + 1]


@dataclass(frozen=True)
class Activation:
    """An elementwise nonlinearity and its derivatives. ``derivatives(z, order)`` is the primitive."""

    name: str
    _rule: Callable

    def derivatives(self, z, order=2):
        """``(f(z), f'(z), f''(z))`` truncated to ``order + 1`` entries; same shape as ``z``."""
        if order not in (0, 1, 2):
            raise ValueError(f"order must be 0, 1 or 2, got {order!r}")
        return self._rule(z, order)

    def f(self, z):
        return self._rule(z, 0)[0]

    def df(self, z):
        return self._rule(z, 1)[1]

    def d2f(self, z):
        return self._rule(z, 2)[2]


_RULES = {
    "identity": _identity,
    "relu": _relu,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "softplus": _softplus,
    "gelu": _gelu,
    "silu": _silu,
}
NAMES = tuple(_RULES)


def get(name):
    """The activation called ``name`` (one of ``NAMES``)."""
    if isinstance(name, Activation):
        return name
    try:
        return Activation(name, _RULES[name])
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(NAMES)}") from None
