"""Layout, forward pass, gradients, per-example gradients and their norms, output Jacobians."""
from __future__ import annotations

import numpy as np
import pytest

from cases import CASES, KINK_MARGIN, num_params, reference_forward, reference_loss_values, reference_unflatten
from minisgd import MLP
from minisgd.backend import to_numpy
from minisgd.testing import (assert_allclose_relative, check_gradient, check_jacobian_vector,
                             finite_difference_jacobian)
import minisgd as ms


def grad_of(p, theta=None):
    loss, g = p.net.loss_and_grad(p.theta if theta is None else theta, p.X, p.y)
    return to_numpy(g)


# ---------------------------------------------------------------------------------------------------
# Layout and forward pass
# ---------------------------------------------------------------------------------------------------
def test_layout(problem):
    net, case = problem.net, problem.case
    assert list(net.sizes) == list(case.sizes)
    assert net.num_layers == case.depth
    assert net.num_params == num_params(case.sizes) == problem.P
    start = 0
    assert len(net.layers) == case.depth
    for layer, fan_in, fan_out in zip(net.layers, case.sizes[:-1], case.sizes[1:]):
        assert (layer.fan_in, layer.fan_out) == (fan_in, fan_out)
        assert (layer.start, layer.stop) == (start, start + (fan_in + 1) * fan_out)  # contiguous [W; b]
        start = layer.stop
    assert start == net.num_params


def test_unflatten_and_flatten_follow_documented_layout(problem):
    params = problem.net.unflatten(problem.theta)
    ref = reference_unflatten(problem.case.sizes, problem.theta)
    assert len(params) == len(ref)
    for (W, b), (W_ref, b_ref) in zip(params, ref):
        # pure reshapes/slices of the same numbers: exact
        np.testing.assert_array_equal(to_numpy(W), W_ref)
        np.testing.assert_array_equal(to_numpy(b), b_ref)
    np.testing.assert_array_equal(to_numpy(problem.net.flatten(params)), problem.theta)


def test_forward_matches_reference(problem):
    Z = to_numpy(problem.net.forward(problem.theta, problem.X))
    assert Z.shape == (problem.N, problem.K)
    ref = reference_forward(problem.case.sizes, problem.case.activation, problem.theta, problem.X)
    # independent NumPy implementation of the same layer recursion; naive vs stable activation formulas
    # agree to ~1e-15 relative on O(1) pre-activations. 1e-12 relative to the largest output.
    assert_allclose_relative(Z, ref, rtol=1e-12, relative_to="max", what="forward vs reference forward")


def test_loss_matches_reference(problem):
    p = problem
    Z = reference_forward(p.case.sizes, p.case.activation, p.theta, p.X)
    expected = np.mean(reference_loss_values(p.case.loss, Z, p.y)) + 0.5 * p.l2 * np.sum(p.theta ** 2)
    # independent route (naive loss formula, reference forward): 1e-12 relative
    assert_allclose_relative(p.net.loss(p.theta, p.X, p.y), expected, rtol=1e-12,
                             what="net.loss vs reference mean loss + l2/2 ||theta||^2")


def test_predict_and_accuracy(problem):
    p = problem
    Z = to_numpy(p.net.forward(p.theta, p.X))
    pred = to_numpy(p.net.predict(p.theta, p.X))
    if p.case.loss == "cross_entropy":
        np.testing.assert_array_equal(pred, np.argmax(Z, axis=1))
        assert p.net.accuracy(p.theta, p.X, p.y) == pytest.approx(np.mean(pred == p.y), abs=1e-15)
    else:
        np.testing.assert_array_equal(pred, Z)


RELU_CASES = [c for c in CASES if c.activation == "relu"]


@pytest.mark.parametrize("case", RELU_CASES, ids=[c.id for c in RELU_CASES])
def test_relu_cases_are_clear_of_kinks(case):
    """Validates the test data, not the library: finite differences on ReLU nets are only meaningful if
    no stencil theta +- h u (h = 1e-5, |u| = 1) flips a ReLU. Check a 100x larger step (1e-3) along every
    coordinate and 20 random unit directions: the sign pattern of every hidden pre-activation is unchanged."""
    from cases import reference_forward

    p = case.problem()
    assert p.pre_activation_margin() >= KINK_MARGIN
    _, pre = reference_forward(case.sizes, case.activation, p.theta, p.X, return_pre=True)
    signs = [np.sign(z) for z in pre]
    rng = np.random.default_rng(0)
    U = rng.standard_normal((20, p.P))
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    for u in np.vstack([np.eye(p.P), U]):
        for s in (+1e-3, -1e-3):
            _, pre_s = reference_forward(case.sizes, case.activation, p.theta + s * u, p.X, return_pre=True)
            assert all(np.array_equal(np.sign(z), sg) for z, sg in zip(pre_s, signs))


# ---------------------------------------------------------------------------------------------------
# Gradient
# ---------------------------------------------------------------------------------------------------
def test_loss_and_grad_consistent_with_loss(problem):
    p = problem
    loss, g = p.net.loss_and_grad(p.theta, p.X, p.y)
    assert isinstance(loss, float)
    assert to_numpy(g).shape == (p.P,)
    # the same computation split differently: 1e-12 relative
    assert loss == pytest.approx(p.net.loss(p.theta, p.X, p.y), rel=1e-12)


def test_gradient_matches_finite_differences(problem):
    p = problem
    # central FD along the gradient and 5 random unit directions; h = 1e-5, rtol 1e-6, atol 1e-8
    # (FD error ~1e-10 for these O(1) losses, see minisgd.testing).
    check_gradient(lambda t: p.net.loss(t, p.X, p.y), lambda t: grad_of(p, t), p.theta,
                   num_directions=5, seed=3, what=f"{p.case.id} gradient")


def test_gradient_matches_dense_finite_differences(problem):
    """Every coordinate, not only directions: catches an error confined to one layer's bias, etc."""
    p = problem
    fd = finite_difference_jacobian(lambda t: p.net.loss(t, p.X, p.y), p.theta)
    # FD error per entry ~ eps |f| / h + h^2 |f'''| ~ 1e-10; 1e-6 relative to the largest entry.
    assert_allclose_relative(grad_of(p), fd, rtol=1e-6, atol=1e-9, relative_to="max",
                             what=f"{p.case.id} gradient vs dense FD")


def test_loss_is_mean_of_per_example_losses_plus_l2(problem):
    p = problem
    per = to_numpy(p.net.per_example_losses(p.theta, p.X, p.y))
    assert per.shape == (p.N,)
    expected = np.mean(per) + 0.5 * p.l2 * float(np.sum(p.theta ** 2))
    # algebraically equal summations in float64: 1e-12 relative
    assert p.net.loss(p.theta, p.X, p.y) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("case", [c for c in CASES if c.l2 > 0], ids=[c.id for c in CASES if c.l2 > 0])
def test_l2_term_is_on_every_parameter(case):
    """Changing only l2 changes loss by l2/2 ||theta||^2 and gradient by l2 * theta (biases included)."""
    p = case.problem()
    plain = MLP(list(case.sizes), activation=case.activation, loss=case.loss, l2=0.0)
    l_reg, g_reg = p.net.loss_and_grad(p.theta, p.X, p.y)
    l_0, g_0 = plain.loss_and_grad(p.theta, p.X, p.y)
    # Differences of O(1) numbers whose rounding (~1e-16 absolute) is ~1e-14 of the O(1e-2) l2 term:
    # 1e-12 relative (to the largest entry for the gradient).
    assert l_reg - l_0 == pytest.approx(0.5 * case.l2 * np.sum(p.theta ** 2), rel=1e-12)
    assert_allclose_relative(to_numpy(g_reg) - to_numpy(g_0), case.l2 * p.theta, rtol=1e-12,
                             relative_to="max", what="gradient difference l2 vs no l2 (expect l2 * theta)")


# ---------------------------------------------------------------------------------------------------
# Per-example gradients
# ---------------------------------------------------------------------------------------------------
def test_mean_of_per_example_grads_is_grad(problem):
    p = problem
    G = to_numpy(p.net.per_example_grads(p.theta, p.X, p.y))
    assert G.shape == (p.N, p.P)
    g = grad_of(p)
    # Same quantity summed in two orders. Rounding of a sum is relative to its terms, so the scale is
    # max(|G|), not |g| (g can be small by cancellation): 1e-12 relative to the largest term.
    err = np.max(np.abs(G.mean(axis=0) - g))
    scale = max(np.max(np.abs(G)), np.max(np.abs(g)))
    assert err <= 1e-12 * scale, f"mean of per-example grads differs from grad by {err:.3e} (scale {scale:.3e})"


@pytest.mark.parametrize("row", [0, -1, 3])
def test_per_example_grad_row_matches_finite_differences(problem, row):
    p = problem
    n = row % p.N
    G = to_numpy(p.net.per_example_grads(p.theta, p.X, p.y))

    def f(t):  # l_n(theta) + l2/2 ||theta||^2, the documented per-example objective
        return float(to_numpy(p.net.per_example_losses(t, p.X, p.y))[n]) + 0.5 * p.l2 * float(np.sum(t * t))

    # central FD, default h = 1e-5, rtol 1e-6, atol 1e-8
    check_gradient(f, lambda t: to_numpy(p.net.per_example_grads(t, p.X, p.y))[n], p.theta,
                   num_directions=3, seed=10 + n, what=f"{p.case.id} per-example gradient row {n}")
    # the row is also the gradient of the single-example batch (same formula, N = 1): 1e-12 relative
    _, g1 = p.net.loss_and_grad(p.theta, p.X[n:n + 1], p.y[n:n + 1])
    assert_allclose_relative(G[n], to_numpy(g1), rtol=1e-12, atol=1e-15, relative_to="max",
                             what=f"per-example grad row {n} vs gradient of the one-example batch")


def test_per_example_grad_norms(problem):
    p = problem
    norms = to_numpy(p.net.per_example_grad_norms(p.theta, p.X, p.y))
    G = to_numpy(p.net.per_example_grads(p.theta, p.X, p.y))
    assert norms.shape == (p.N,)
    assert np.all(norms >= 0)
    # ||a (x) delta||^2 = ||a||^2 ||delta||^2 is exact algebra; float64 rounding of both routes ~1e-15:
    # 1e-12 relative (elementwise).
    assert_allclose_relative(norms, np.linalg.norm(G, axis=1), rtol=1e-12,
                             what="per_example_grad_norms vs row norms of per_example_grads")


# ---------------------------------------------------------------------------------------------------
# Output Jacobian
# ---------------------------------------------------------------------------------------------------
def test_output_jacobian_matches_finite_differences(problem):
    p = problem
    J = to_numpy(p.net.output_jacobian(p.theta, p.X))
    assert J.shape == (p.N, p.K, p.P)
    J_fd = finite_difference_jacobian(lambda t: to_numpy(p.net.forward(t, p.X)), p.theta)  # (N, K, P)
    # central FD of O(1) outputs: ~1e-10 absolute; 1e-6 relative to the largest entry.
    assert_allclose_relative(J, J_fd, rtol=1e-6, atol=1e-9, relative_to="max",
                             what=f"{p.case.id} output_jacobian vs FD of forward")


def test_output_jacobian_vector_products(problem):
    p = problem
    J = to_numpy(p.net.output_jacobian(p.theta, p.X))
    check_jacobian_vector(lambda t: to_numpy(p.net.forward(t, p.X)),
                          lambda t, v: np.einsum("nkp,p->nk", J, v), p.theta,
                          num_directions=3, seed=5, what=f"{p.case.id} output_jacobian @ v")


def test_gradient_is_jacobian_transpose_times_loss_grad(problem):
    """g = (1/N) sum_n J_n^T dl/dz_n + l2 theta: chain rule assembled from two independently tested parts."""
    from minisgd.core import losses

    p = problem
    J = to_numpy(p.net.output_jacobian(p.theta, p.X))
    Z = to_numpy(p.net.forward(p.theta, p.X))
    y = p.y.reshape(Z.shape) if p.case.loss == "mse" else p.y
    dz = np.asarray(losses.get(p.case.loss).grad(Z, y))
    expected = np.einsum("nkp,nk->p", J, dz) / p.N + p.l2 * p.theta
    # different summation orders of the same products: 1e-12 relative to the largest entry
    assert_allclose_relative(grad_of(p), expected, rtol=1e-12, atol=1e-15, relative_to="max",
                             what="grad vs J^T dl/dz")


def test_weighted_gradient_equals_weighted_per_example_gradients(case):
    p = case.problem()
    w = np.random.default_rng(case.seed).standard_normal(p.X.shape[0])
    G = p.net.per_example_grads(p.theta, p.X, p.y)  # (N, P), L2 in every row
    np.testing.assert_allclose(p.net.weighted_gradient(p.theta, p.X, p.y, w), w @ G, rtol=1e-12,
                               atol=1e-12 * np.abs(G).max())
    mean = np.full(p.X.shape[0], 1.0 / p.X.shape[0])  # w = 1/N is the gradient
    np.testing.assert_allclose(p.net.weighted_gradient(p.theta, p.X, p.y, mean),
                               p.net.loss_and_grad(p.theta, p.X, p.y)[1], rtol=1e-12, atol=1e-14)


def test_weighted_gradient_against_finite_differences(case):
    p = case.problem()
    w = np.random.default_rng(case.seed + 1).standard_normal(p.X.shape[0])

    def weighted_loss(theta):  # sum_n w_n (l_n + l2/2 |theta|^2)
        return float(w @ p.net.per_example_losses(theta, p.X, p.y) + w.sum() * 0.5 * p.net.l2 * theta @ theta)

    check_gradient(weighted_loss, lambda th: p.net.weighted_gradient(th, p.X, p.y, w), p.theta, rtol=1e-6,
                   atol=1e-9, what="weighted gradient")


def test_weighted_gradient_rejects_bad_weights(case):
    p = case.problem()
    with pytest.raises(ms.ShapeError, match="one weight per example"):
        p.net.weighted_gradient(p.theta, p.X, p.y, np.ones(p.X.shape[0] + 1))
    with pytest.raises(ms.NonFiniteError, match="weights"):
        p.net.weighted_gradient(p.theta, p.X, p.y, np.full(p.X.shape[0], np.nan))
