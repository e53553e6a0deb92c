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
    d1 = 1.0 - t * t
    return (t, d1, -2.0 * t * d1)[: order + 1]


def _sigmoid_of(z, xp):
    # 1 / (1 + e^{-z}) overflows e^{-z} for z << 0; the tanh form is exact and bounded everywhere.
    return 0.5 * (1.0 + xp.tanh(0.5 * z))


def _sigmoid(z, order):
    r"""s = 1 / (1 + e^{-z});  s' = s (1 - s);  s'' = s (1 - s)(1 - 2 s)."""
    xp = namespace(z)
    s = _sigmoid_of(z, xp)
    d1 = s * (1.0 - s)
    return (s, d1, d1 * (1.0 - 2.0 * s))[: order + 1]


def _softplus(z, order):
    r"""f = log(1 + e^z) = max(z, 0) + log1p(e^{-|z|});  f' = sigmoid(z);  f'' = s (1 - s)."""
    xp = namespace(z)
    f = xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))
    if order == 0:
        return (f,)
    s = _sigmoid_of(z, xp)
    return (f, s, s * (1.0 - s))[: order + 1]


def _gelu(z, order):
    r"""GELU, tanh approximation (Hendrycks & Gimpel 2016):
    f = z/2 (1 + tanh u),  u = c (z + a z^3),  c = sqrt(2/pi),  a = 0.044715;
    f' = (1 + t)/2 + z/2 (1 - t^2) u';   f'' = (1 - t^2) (u' + z/2 (u'' - 2 t u'^2)),
    with t = tanh u,  u' = c (1 + 3 a z^2),  u'' = 6 a c z."""
    xp = namespace(z)
    t = xp.tanh(_GELU_C * (z + _GELU_A * z * z * z))
    f = 0.5 * z * (1.0 + t)
    if order == 0:
        return (f,)
    sech2 = 1.0 - t * t
    du = _GELU_C * (1.0 + 3.0 * _GELU_A * z * z)
    d1 = 0.5 * (1.0 + t) + 0.5 * z * sech2 * du
    if order == 1:
        return (f, d1)
    d2u = 6.0 * _GELU_A * _GELU_C * z
    return (f, d1, sech2 * (du + 0.5 * z * (d2u - 2.0 * t * du * du)))


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
