"""Rescaling a positively homogeneous net (Dinh et al. 2017): the function is unchanged, the derivatives follow the
chain rule.

Independent routes: the rescaled parameters are built a second way, layer by layer from ``net.unflatten`` (the
library builds a flat diagonal); outputs and losses are compared with the network's own forward pass at both
points; the gradient and the EXACT Hessian at the rescaled point (``net.hessian``, a direct computation there) are
compared with ``D^-1 g`` and ``D^-1 H D^-1`` formed with dense diagonal matrices from the factors.

Tolerances. Outputs: rtol = atol = 1e-12 (each layer's pre-activation is rescaled exactly up to one rounding per
operation; the errors are ~1e-15 relative). Hessians span up to 1e12 in scale between blocks when factors 1e-3 and
1e3 meet, so they are compared entry by entry in the units of each entry, D H' D against H, with rtol 1e-10 and an
absolute floor 1e-10 max|H| for entries that cancel to ~0.
"""
import math

import numpy as np
import pytest

import minisgd as ms
from minisgd.theory import reparametrize
from minisgd.theory.reparametrize import opposite_factors, rescale, rescaling

RTOL = 1e-10

CASES = [  # (sizes, activation, loss, factors)
    ([5, 7, 3], "relu", "cross_entropy", (1e3, 1e-3)),
    ([5, 7, 3], "relu", "mse", (1e-3, 1e3)),
    ([4, 6, 5, 3], "relu", "cross_entropy", (1e3, 1.0, 1e-3)),
    ([4, 6, 5, 3], "identity", "mse", (1e-3, 1e3, 1.0)),
    ([3, 5, 4, 6, 2], "relu", "cross_entropy", (1e3, 1e-3, 1e-3, 1e3)),
    ([3, 5, 4, 6, 2], "identity", "cross_entropy", "random"),
    ([6, 8, 8, 4], "relu", "mse", "random"),
]
IDS = [f"{'-'.join(map(str, s))}-{a}-{lo}-{'random' if f == 'random' else 'x'.join(f'{v:g}' for v in f)}"
       for s, a, lo, f in CASES]


def problem(sizes, activation, loss, factors, seed=0):
    rng = np.random.default_rng(seed)
    net = ms.MLP(sizes, activation=activation, loss=loss)
    theta = net.init(seed=seed, scheme="he") + 0.2 * rng.standard_normal(net.num_params)  # nonzero biases
    X = rng.standard_normal((30, sizes[0]))
    y = rng.integers(0, sizes[-1], 30) if loss == "cross_entropy" else rng.standard_normal((30, sizes[-1]))
    if factors == "random":  # log-uniform in [1e-3, 1e3], the last one closing the product to 1
        head = 10.0 ** rng.uniform(-3, 3, net.num_layers - 1)
        factors = (*head, 1.0 / np.prod(head))
    return net, theta, X, y, tuple(factors)


def rescaled_by_layers(net, theta, factors):
    """The rescaled parameters built from the per-layer views: W_l -> a_l W_l, b_l -> (a_1 ... a_l) b_l."""
    params, c = [], 1.0
    for (W, b), a in zip(net.unflatten(theta), factors):
        c *= a
        params.append((a * W, c * b))
    return net.flatten(params)


def diagonal_of_D(net, factors):
    """diag(D) from the factors, layer by layer (the same rule, built without the library's flat layout)."""
    d, c = [], 1.0
    for layer, a in zip(net.layers, factors):
        c *= a
        d += [np.full(layer.fan_in * layer.fan_out, a), np.full(layer.fan_out, c)]
    return np.concatenate(d)


@pytest.mark.parametrize("sizes, activation, loss, factors", CASES, ids=IDS)
def test_the_function_is_unchanged(sizes, activation, loss, factors):
    net, theta, X, y, factors = problem(sizes, activation, loss, factors)
    theta2 = rescale(net, theta, factors)
    np.testing.assert_allclose(theta2, rescaled_by_layers(net, theta, factors), rtol=1e-15, atol=0)
    ratio = np.abs(theta2 / theta)
    assert ratio.max() / ratio.min() >= 10  # the parameters did move, by a decade or more against each other
    Z, Z2 = net.forward(theta, X), net.forward(theta2, X)
    np.testing.assert_allclose(Z2, Z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net.loss(theta2, X, y), net.loss(theta, X, y), rtol=1e-12, atol=1e-12)
    if loss == "cross_entropy":
        assert np.array_equal(net.predict(theta2, X), net.predict(theta, X))


@pytest.mark.parametrize("sizes, activation, loss, factors", CASES, ids=IDS)
def test_gradient_and_exact_hessian_follow_the_chain_rule(sizes, activation, loss, factors):
    net, theta, X, y, factors = problem(sizes, activation, loss, factors)
    r = rescaling(net, factors)
    d = diagonal_of_D(net, factors)
    np.testing.assert_array_equal(r.scale, d)
    theta2 = r.apply(theta)
    _, g = net.loss_and_grad(theta, X, y)
    _, g2 = net.loss_and_grad(theta2, X, y)
    np.testing.assert_allclose(g2, g / d, rtol=RTOL, atol=RTOL * np.abs(g / d).max())
    np.testing.assert_allclose(r.gradient(g), g / d, rtol=1e-15, atol=0)
    H, H2 = net.hessian(theta, X, y), net.hessian(theta2, X, y)
    D_inv = np.diag(1.0 / d)
    np.testing.assert_allclose(r.hessian(H), D_inv @ H @ D_inv, rtol=1e-14, atol=0)
    # entry by entry in its own units: (D H' D)_ij = H_ij
    np.testing.assert_allclose(H2 * np.outer(d, d), H, rtol=RTOL, atol=RTOL * np.abs(H).max())
    # the spectrum moves, within Ostrowski's bounds, and the trace by the exact diagonal law
    w, w2 = np.linalg.eigvalsh(H)[::-1], np.linalg.eigvalsh(H2)[::-1]
    scale = np.abs(w2).max()
    for lam, lam2 in zip(w, w2):
        lo, hi = r.eigenvalue_bounds(lam)
        assert lo - 1e-9 * scale <= lam2 <= hi + 1e-9 * scale
    np.testing.assert_allclose(np.trace(H2), np.sum(np.diag(H) / d ** 2), rtol=1e-9)
    assert max(w2[0] / w[0], w[0] / w2[0]) > 10  # and the top eigenvalue did move by more than a decade


def test_opposite_factors():
    assert opposite_factors(3, 10.0) == (10.0, 0.1, 1.0)
    assert opposite_factors(3, 4.0, layers=(3, 1)) == (0.25, 1.0, 4.0)
    with pytest.raises(ValueError, match="two different layers"):
        opposite_factors(2, 10.0, layers=(1, 1))
    with pytest.raises(ValueError, match="alpha must be finite and > 0"):
        opposite_factors(2, 0.0)


def test_refusals():
    tanh = ms.MLP([3, 4, 2], activation="tanh")
    with pytest.raises(ValueError, match="positively homogeneous.*'tanh'"):
        rescaling(tanh, (10.0, 0.1))
    relu = ms.MLP([3, 4, 2], activation="relu")
    with pytest.raises(ValueError, match="multiply to 2, not 1"):
        rescaling(relu, (10.0, 0.2))
    with pytest.raises(ValueError, match="finite and > 0"):
        rescaling(relu, (-1.0, -1.0))
    with pytest.raises(ValueError, match="one factor per layer: 2"):
        rescaling(relu, (10.0, 0.1, 1.0))
    assert set(reparametrize.POSITIVELY_HOMOGENEOUS) <= set(ms.core.activations.NAMES)


def test_an_l2_penalty_is_not_invariant():
    """The outputs and the data term are unchanged; the penalty (l2/2)|theta|^2 is not: documented, not refused."""
    net0 = ms.MLP([4, 6, 3], activation="relu", loss="cross_entropy", l2=0.0)
    net = ms.MLP([4, 6, 3], activation="relu", loss="cross_entropy", l2=1e-2)
    _, theta, X, y, factors = problem([4, 6, 3], "relu", "cross_entropy", (1e2, 1e-2))
    theta2 = rescale(net, theta, factors)
    np.testing.assert_allclose(net0.loss(theta2, X, y), net0.loss(theta, X, y), rtol=1e-12)
    penalty_change = 0.5 * 1e-2 * (theta2 @ theta2 - theta @ theta)
    np.testing.assert_allclose(net.loss(theta2, X, y) - net.loss(theta, X, y), penalty_change, rtol=1e-9)
    assert abs(penalty_change) > 1.0


def test_eigenvalue_bounds_are_ordered_for_negative_eigenvalues():
    r = rescaling(ms.MLP([2, 2, 1], activation="relu"), (10.0, 0.1))
    assert r.eigenvalue_bounds(-1.0) == (pytest.approx(-100.0), pytest.approx(-0.01))
    assert r.eigenvalue_bounds(1.0) == (pytest.approx(0.01), pytest.approx(100.0))
    assert math.isclose(np.prod(r.alphas), 1.0)
