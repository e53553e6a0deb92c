"""Test cases as data: small MLPs with seeded inputs, shared by every derivative test.

Each :class:`Case` names an architecture (``sizes``), an activation, a loss, an L2 coefficient, a number
of examples and a seed. ``case.problem()`` builds the network and a reproducible ``(theta, X, y)``:

* ``theta`` is drawn here (not with ``net.init``) so the tests control its scale: weights
  ``N(0, (gain^2 / fan_in))`` with gain 1.5 so that the nonlinearities are exercised beyond their linear
  region, biases ``N(0, 0.5^2)`` so that bias gradients and the L2 term on biases are not trivially zero.
* ``X ~ N(0, 1)``; ``y`` integer labels in ``[0, K)`` for cross-entropy, ``N(0, 1)`` targets of shape
  ``(N, K)`` for mse (``(N,)`` for the ``label_1d`` case with K = 1).

Coverage: depths 1-4, widths 2-10, every activation of ``minisgd.core.activations.NAMES``, both losses,
``l2 = 0`` and ``l2 = 1e-2``. Every case has ``P <= 224`` so dense finite-difference Hessians
(``2 P`` gradient evaluations) stay fast.

ReLU has kinks. Finite differences with step ``h = 1e-5`` along a unit direction move a pre-activation by
at most ``h * ||d z / d theta||``, which is O(1e-4) for these tiny nets; for ReLU cases we keep only the
examples whose hidden pre-activations all satisfy ``|z| >= KINK_MARGIN = 1e-2`` (a 100x margin), so no
finite-difference stencil crosses a kink and FD checks are valid for ReLU too.

Also here: plain-NumPy reference implementations (naive formulas, no stabilisation) of the activations,
the losses and the forward pass with the documented parameter layout, used as an independent route.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

DTYPE = np.float64
KINK_MARGIN = 1e-2


# ----------------------------------------------------------------------------------------------------
# Naive NumPy references (valid at moderate arguments, |z| <~ 30)
# ----------------------------------------------------------------------------------------------------
def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


REFERENCE_ACTIVATIONS = {
    "identity": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "tanh": np.tanh,
    "sigmoid": _sigmoid,
    "softplus": lambda z: np.log(1.0 + np.exp(z)),
    "gelu": lambda z: 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3))),
    "silu": lambda z: z * _sigmoid(z),
}


def reference_loss_values(loss, Z, y):
    """Naive per-example losses ``(N,)``: log(sum(exp(z))) - z_y, or 1/2 ||z - y||^2."""
    Z = np.asarray(Z, dtype=np.float64)
    if loss == "cross_entropy":
        return np.log(np.sum(np.exp(Z), axis=1)) - Z[np.arange(Z.shape[0]), np.asarray(y)]
    if loss == "mse":
        Y = np.asarray(y, dtype=np.float64).reshape(Z.shape)
        return 0.5 * np.sum((Z - Y) ** 2, axis=1)
    raise ValueError(loss)


def num_params(sizes):
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def reference_unflatten(sizes, theta):
    """``[(W, b)]`` from the documented layout: per layer, ``[W; b]`` ((fan_in + 1, fan_out)) row-major."""
    params, start = [], 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        stop = start + (fan_in + 1) * fan_out
        Wb = np.asarray(theta[start:stop]).reshape(fan_in + 1, fan_out)
        params.append((Wb[:-1], Wb[-1]))
        start = stop
    assert start == len(theta), (start, len(theta))
    return params


def reference_forward(sizes, activation, theta, X, return_pre=False):
    """Outputs ``(N, K)`` of the MLP ``z_l = a_{l-1} W_l + b_l``, ``a_l = act(z_l)``, last layer linear.

    With ``return_pre=True`` also returns the list of hidden pre-activations ``z_1 .. z_{L-1}``.
    """
    act = REFERENCE_ACTIVATIONS[activation]
    a = np.asarray(X, dtype=np.float64)
    pre = []
    params = reference_unflatten(sizes, theta)
    for l, (W, b) in enumerate(params):
        z = a @ W + b
        if l < len(params) - 1:
            pre.append(z)
            a = act(z)
        else:
            a = z
    return (a, pre) if return_pre else a


# ----------------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """A network with a point ``theta`` and data ``(X, y)``, all NumPy float64 (labels int64)."""

    case: "Case"
    net: object
    theta: np.ndarray
    X: np.ndarray
    y: np.ndarray

    @property
    def P(self):
        return self.theta.shape[0]

    @property
    def N(self):
        return self.X.shape[0]

    @property
    def K(self):
        return self.case.sizes[-1]

    @property
    def l2(self):
        return self.case.l2

    def pre_activation_margin(self, theta=None):
        """Smallest ``|z|`` over all hidden pre-activations of all examples (inf for depth 1)."""
        _, pre = reference_forward(self.case.sizes, self.case.activation,
                                   self.theta if theta is None else theta, self.X, return_pre=True)
        return min((float(np.min(np.abs(z))) for z in pre), default=math.inf)


@dataclass(frozen=True)
class Case:
    sizes: tuple
    activation: str
    loss: str
    l2: float
    n: int = 7
    seed: int = 0
    label_1d: bool = False  # mse with K == 1: targets of shape (N,) instead of (N, 1)

    def __post_init__(self):
        assert len(self.sizes) >= 2
        assert not self.label_1d or (self.loss == "mse" and self.sizes[-1] == 1)

    @property
    def id(self):
        tail = "-y1d" if self.label_1d else ""
        return f"{'x'.join(map(str, self.sizes))}-{self.activation}-{self.loss}-l2={self.l2:g}{tail}"

    @property
    def depth(self):
        return len(self.sizes) - 1

    @property
    def num_params(self):
        return num_params(self.sizes)

    def make_net(self):
        from minisgd import MLP

        return MLP(list(self.sizes), activation=self.activation, loss=self.loss, l2=self.l2)

    def make_theta(self, rng):
        pieces = []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:]):
            W = rng.standard_normal((fan_in, fan_out)) * (1.5 / math.sqrt(fan_in))
            b = 0.5 * rng.standard_normal(fan_out)
            pieces += [W.ravel(), b]
        return np.concatenate(pieces).astype(DTYPE)

    def make_data(self, rng, theta):
        d, K = self.sizes[0], self.sizes[-1]
        draw = self.n if self.activation != "relu" else 20 * self.n
        X = rng.standard_normal((draw, d)).astype(DTYPE)
        if self.activation == "relu":
            # keep the examples whose hidden pre-activations stay KINK_MARGIN away from the kink at 0
            _, pre = reference_forward(self.sizes, self.activation, theta, X, return_pre=True)
            margin = np.min(np.concatenate([np.abs(z) for z in pre], axis=1), axis=1)
            keep = np.flatnonzero(margin >= KINK_MARGIN)[: self.n]
            assert keep.size == self.n, f"{self.id}: only {keep.size} examples clear of relu kinks"
            X = X[keep]
        if self.loss == "cross_entropy":
            y = rng.integers(0, K, size=self.n).astype(np.int64)
        else:
            y = rng.standard_normal((self.n, K)).astype(DTYPE)
            if self.label_1d:
                y = y[:, 0]
        return X, y

    @cached_property
    def _arrays(self):
        rng = np.random.default_rng(self.seed)
        theta = self.make_theta(rng)
        X, y = self.make_data(rng, theta)
        for a in (theta, X, y):
            a.setflags(write=False)  # cached and shared between tests: nobody may modify them
        return theta, X, y

    def problem(self):
        theta, X, y = self._arrays
        return Problem(self, self.make_net(), theta, X, y)


CASES = [
    # depth 1 (linear / softmax regression): closed-form Hessians, zero residual
    Case((3, 2), "identity", "mse", 0.0, n=6, seed=1),
    Case((4, 3), "identity", "mse", 1e-2, n=7, seed=2),
    Case((4, 3), "identity", "cross_entropy", 0.0, n=9, seed=3),
    Case((5, 4), "tanh", "cross_entropy", 1e-2, n=5, seed=4),  # activation unused at depth 1
    # depth 2
    Case((3, 4, 2), "identity", "mse", 0.0, n=7, seed=5),  # deep linear: nonzero residual
    Case((3, 5, 2), "tanh", "cross_entropy", 0.0, n=7, seed=6),
    Case((3, 6, 3), "relu", "cross_entropy", 1e-2, n=8, seed=7),
    Case((2, 4, 1), "sigmoid", "mse", 0.0, n=7, seed=8, label_1d=True),
    Case((2, 3, 2), "gelu", "mse", 0.0, n=6, seed=9),
    Case((5, 8, 4), "relu", "mse", 0.0, n=7, seed=10),
    Case((4, 5, 3), "silu", "mse", 1e-2, n=7, seed=11),
    Case((3, 5, 3), "softplus", "cross_entropy", 0.0, n=7, seed=12),
    # depth 3
    Case((4, 5, 4, 3), "softplus", "mse", 1e-2, n=7, seed=13),
    Case((3, 4, 4, 2), "gelu", "cross_entropy", 1e-2, n=7, seed=14),
    Case((3, 4, 2, 3), "identity", "cross_entropy", 1e-2, n=6, seed=15),
    Case((6, 10, 10, 4), "sigmoid", "cross_entropy", 0.0, n=9, seed=16),  # P = 224, widest
    # depth 4
    Case((3, 4, 3, 3, 2), "silu", "cross_entropy", 0.0, n=7, seed=17),
    Case((2, 3, 3, 3, 2), "tanh", "mse", 1e-2, n=6, seed=18),
    Case((3, 4, 4, 4, 3), "relu", "cross_entropy", 1e-2, n=7, seed=19),
]
CASE_IDS = [c.id for c in CASES]

assert len(set(CASE_IDS)) == len(CASE_IDS)
assert max(c.num_params for c in CASES) <= 300


def select(**criteria):
    """Cases whose attributes equal the given values, e.g. ``select(loss="mse", depth=1)``."""
    return [c for c in CASES if all(getattr(c, k) == v for k, v in criteria.items())]
