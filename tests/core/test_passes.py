"""The forward and backward passes (minisgd.core.passes) against independent routes.

Forward: every pre-activation and activation against the naive NumPy forward of ``cases.py`` (rtol 1e-13: the same
products in another order). Backward: ``delta_l[n] = d l_n / d z_l[n]`` against central differences of the
per-example loss with a perturbation injected into ``z_l`` of a naive forward (h = 1e-6: truncation
~h^2 |l'''| ~ 1e-12, rounding ~eps |l_n| / h = 2.2e-10 |l_n|, so |error| <= 1e-7 |fd| + 1e-9 + 1e-9 |l_n|: the
rounding term matters for the squared error of softplus nets, whose l_n reaches hundreds), on every test case
(depths 1-4, every activation, both losses); ReLU cases keep only examples 1e-2 away from the kinks (cases.py), far beyond h.
"""
import numpy as np
import pytest

from cases import CASES, REFERENCE_ACTIVATIONS, reference_forward, reference_loss_values, reference_unflatten
from minisgd.core.passes import augmented, backward_pass, forward_pass, rows_times


def loss_with_bump(case, theta, x, y, layer, unit, h):
    """Per-example loss of one example with ``h`` added to pre-activation ``unit`` of ``layer`` (0-based)."""
    act = REFERENCE_ACTIVATIONS[case.activation]
    params = reference_unflatten(case.sizes, theta)
    a = x[None, :]
    for l, (W, b) in enumerate(params):
        z = a @ W + b
        if l == layer:
            z = z.copy()
            z[0, unit] += h
        a = z if l == len(params) - 1 else act(z)
    return reference_loss_values(case.loss, a, np.atleast_1d(y) if case.loss == "cross_entropy" else y[None])[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("order", [0, 1, 2])
def test_forward_pass_equals_the_naive_forward(case, order):
    p = case.problem()
    fwd = forward_pass(p.net.unflatten(p.theta), p.X, p.net.activation, order=order)
    outputs, pre = reference_forward(case.sizes, case.activation, p.theta, p.X, return_pre=True)
    np.testing.assert_allclose(fwd.outputs, outputs, rtol=1e-13, atol=1e-13)
    for z, z_ref in zip(fwd.pre[:-1], pre):
        np.testing.assert_allclose(z, z_ref, rtol=1e-13, atol=1e-13)
    assert len(fwd.inputs) == len(case.sizes) - 1 and fwd.inputs[0] is p.X
    assert len(fwd.dact) == (len(case.sizes) - 2 if order >= 1 else 0)
    assert len(fwd.d2act) == (len(case.sizes) - 2 if order == 2 else 0)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_deltas_are_the_derivatives_of_the_loss_by_the_pre_activations(case):
    p = case.problem()
    net, theta = p.net, p.theta
    X, y = p.X[:6], p.y[:6]  # problem() keeps ReLU examples 1e-2 away from the kinks
    fwd = forward_pass(net.unflatten(theta), X, net.activation, order=1)
    seed = net.loss_fn.grad(fwd.outputs, net.loss_fn.check_targets(y, X.shape[0], fwd.outputs.shape[1]))
    deltas, _ = backward_pass(fwd, seed)
    h = 1e-6
    losses = np.array([abs(loss_with_bump(case, theta, X[n], y[n], 0, 0, 0.0)) for n in range(X.shape[0])])
    for layer, delta in enumerate(deltas):
        fd = np.array([[(loss_with_bump(case, theta, X[n], y[n], layer, j, h)
                         - loss_with_bump(case, theta, X[n], y[n], layer, j, -h)) / (2 * h)
                        for j in range(delta.shape[1])] for n in range(X.shape[0])])
        np.testing.assert_array_less(np.abs(delta - fd), 1e-7 * np.abs(fd) + 1e-9 + 1e-9 * losses[:, None])


def test_backward_carries_leading_axes(rng):
    """A seed with a leading axis (one per output, as the output Jacobian uses) equals one pass per slice."""
    case = CASES[3]
    p = case.problem()
    fwd = forward_pass(p.net.unflatten(p.theta), p.X, p.net.activation, order=1)
    seeds = rng.standard_normal((3, *fwd.outputs.shape))
    stacked, _ = backward_pass(fwd, seeds)
    for i in range(3):
        single, _ = backward_pass(fwd, seeds[i])
        for a, b in zip(stacked, single):
            np.testing.assert_allclose(a[i], b, rtol=1e-14, atol=1e-14)


def test_rows_times_and_augmented(rng):
    A, W = rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((4, 6))
    np.testing.assert_allclose(rows_times(A, W), np.einsum("abnm,mk->abnk", A, W), rtol=1e-13)
    a = rng.standard_normal((5, 3))
    np.testing.assert_array_equal(augmented(a), np.hstack([a, np.ones((5, 1))]))
