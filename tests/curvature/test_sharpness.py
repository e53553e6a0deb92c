"""Sharpness measures against closed forms: epsilon-sharpness on quadratics (diagonal: separable closed
form; general: enumeration of the box's vertices), its fallback, expected sharpness against
sigma^2/2 tr(H), the scale-aware measure under ReLU rescaling, and the summary against dense eigh.

Tolerances. On a quadratic the solvers end on a vertex of the box, which is exact in floating point
(clip), so phi is the closed form up to the rounding of two loss values: |error| ~ 1e-16 * f /
(f(x + y) - f(x)) relative, at most ~1e-13 here; rtol = 1e-10 leaves three decades of margin. Monte-Carlo
comparisons use 4 standard errors (a false alarm with probability ~6e-5 for a Gaussian mean; the seeds
are fixed, so the test is deterministic anyway).
"""
import itertools

import numpy as np
import pytest
from scipy import optimize

import minisgd as ms
from minisgd.curvature import sharpness
from support import GPU

RTOL = 1e-10


def diagonal_quadratic():
    """Linear regression (identity, mse, sizes [2, 1]) on an orthogonal design: the loss is exactly
    quadratic in theta = (w1, w2, b) with Hessian X~^T X~ / N = diag(9, 0.25, 1) (columns of X~ = [X, 1]
    orthogonal, squared norms 4*9, 4*0.25, 4, over N = 4)."""
    X = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]) * np.array([3.0, 0.5])
    y = np.array([1.0, -2.0, 0.5, 0.3])
    net = ms.MLP([2, 1], activation="identity", loss="mse")
    theta = np.array([0.3, -0.7, 0.2])
    return net, theta, X, y


def test_the_diagonal_quadratic_is_what_it_says():
    net, theta, X, y = diagonal_quadratic()
    np.testing.assert_allclose(net.hessian(theta, X, y), np.diag([9.0, 0.25, 1.0]), rtol=0, atol=1e-14)
    _, g = net.loss_and_grad(theta, X, y)
    assert np.all(np.abs(g) > 0.1)  # every coordinate has a definite ascent direction from y = 0


@pytest.mark.parametrize("method", ["lbfgsb", "pga"])
@pytest.mark.parametrize("eps", [1e-3, 1e-1, 1.0])
def test_epsilon_sharpness_on_a_diagonal_quadratic_equals_the_closed_form(method, eps):
    # f(x + y) - f(x) = sum_i g_i y_i + h_i y_i^2 / 2 is separable and convex: the maximum over
    # |y_i| <= r_i is sum_i |g_i| r_i + h_i r_i^2 / 2, at the vertex y = sign(g) * r.
    net, theta, X, y = diagonal_quadratic()
    f0, g = net.loss_and_grad(theta, X, y)
    h = np.diag(net.hessian(theta, X, y))
    r = eps * (np.abs(theta) + 1.0)
    expected = 100.0 * np.sum(np.abs(g) * r + 0.5 * h * r ** 2) / (1.0 + f0)
    s = sharpness.epsilon_sharpness(net, theta, X, y, eps=eps, method=method)
    np.testing.assert_allclose(s.radius, r, rtol=1e-15)
    np.testing.assert_allclose(s.value, expected, rtol=RTOL)
    np.testing.assert_allclose(s.maximizer, np.sign(g) * r, rtol=1e-15)
    assert np.all(np.abs(s.maximizer) <= s.radius)
    assert s.method == method and not s.fell_back and s.status == 0 and 1 <= s.iterations <= 10


def small_convex_quadratic(seed=0):
    """Linear regression [3, 1] on random data: quadratic with a full (non-diagonal) Hessian, P = 4."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((10, 3))
    y = rng.standard_normal(10)
    net = ms.MLP([3, 1], activation="identity", loss="mse")
    return net, 0.5 * rng.standard_normal(4), X, y


@pytest.mark.parametrize("method", ["lbfgsb", "pga"])
@pytest.mark.parametrize("eps", [1e-2, 0.3, 2.0])
def test_epsilon_sharpness_never_exceeds_the_best_vertex_and_finds_it_when_linear_terms_dominate(method, eps):
    # A convex function attains its maximum over a box at a vertex: enumerate all 2^4 of them.
    net, theta, X, y = small_convex_quadratic()
    f0, g = net.loss_and_grad(theta, X, y)
    r = eps * (np.abs(theta) + 1.0)
    vertices = np.array(list(itertools.product([-1.0, 1.0], repeat=4))) * r
    best = max(net.loss(theta + v, X, y) for v in vertices)
    s = sharpness.epsilon_sharpness(net, theta, X, y, eps=eps, method=method)
    assert np.all(np.abs(s.maximizer) <= s.radius)
    assert s.perturbed_loss <= best * (1 + 1e-14)  # no point of the box is above the best vertex
    if eps == 1e-2:
        # small box: the first-order term dominates, the best vertex is sign(g) * r and both solvers,
        # starting at y = 0 where the ascent direction is g, land on it
        np.testing.assert_allclose(net.loss(theta + np.sign(g) * r, X, y), best, rtol=1e-15)
        np.testing.assert_allclose(s.value, 100 * (best - f0) / (1 + f0), rtol=RTOL)


def test_value_is_recomputed_at_the_maximizer():
    # Independent recomputation of phi from the returned point, on a nonlinear net.
    net = ms.MLP([4, 6, 3], activation="tanh", loss="cross_entropy", l2=1e-3)
    rng = np.random.default_rng(1)
    theta = net.init(seed=1) + 0.1 * rng.standard_normal(net.num_params)
    X, y = rng.standard_normal((40, 4)), rng.integers(0, 3, 40)
    for method in ("lbfgsb", "pga"):
        s = sharpness.epsilon_sharpness(net, theta, X, y, eps=1e-2, method=method)
        f0 = net.loss(theta, X, y)
        expected = 100 * (net.loss(theta + s.maximizer, X, y) - f0) / (1 + f0)
        np.testing.assert_allclose(s.value, expected, rtol=1e-12)
        assert s.value > 0 and np.all(np.abs(s.maximizer) <= s.radius)
        assert s.function_evaluations >= s.iterations >= 1


def test_subspace_box_uses_the_pseudo_inverse_and_matches_the_closed_form():
    # A = [[2, 0], [0, 0], [0, 3]] on the diagonal quadratic: A^+ x = (x_1 / 2, x_3 / 3),
    # A^T H A = diag(4 * 9, 9 * 1) (diagonal), A^T g = (2 g_1, 3 g_3): the closed form is separable again.
    net, theta, X, y = diagonal_quadratic()
    A = np.array([[2.0, 0.0], [0.0, 0.0], [0.0, 3.0]])
    f0, g = net.loss_and_grad(theta, X, y)
    eps = 0.05
    r = eps * (np.abs(np.linalg.pinv(A) @ theta) + 1.0)
    np.testing.assert_allclose(r, eps * (np.abs([theta[0] / 2, theta[2] / 3]) + 1.0), rtol=1e-14)
    ga, ha = A.T @ g, np.diag(A.T @ net.hessian(theta, X, y) @ A)
    expected = 100 * np.sum(np.abs(ga) * r + 0.5 * ha * r ** 2) / (1 + f0)
    for method in ("lbfgsb", "pga"):
        s = sharpness.epsilon_sharpness(net, theta, X, y, eps=eps, basis=A, method=method)
        assert s.subspace_dim == 2 and s.maximizer.shape == (2,)
        np.testing.assert_allclose(s.radius, r, rtol=1e-12)
        np.testing.assert_allclose(s.value, expected, rtol=RTOL)
        np.testing.assert_allclose(s.perturbation, A @ s.maximizer, rtol=1e-15)


def test_random_subspace_is_seeded_gaussian_and_the_value_is_consistent():
    _, _, X, y = small_convex_quadratic()
    net = ms.MLP([3, 5, 1], activation="tanh", loss="mse")
    theta = net.init(seed=2)
    s = sharpness.epsilon_sharpness(net, theta, X, y, eps=1e-2, subspace_dim=3, seed=7)
    A = sharpness.random_subspace(net.num_params, 3, seed=7)
    np.testing.assert_array_equal(s.basis, A)
    np.testing.assert_allclose(s.radius, 1e-2 * (np.abs(np.linalg.pinv(A) @ theta) + 1), rtol=1e-10)
    f0 = net.loss(theta, X, y)
    expected = 100 * (net.loss(theta + A @ s.maximizer, X, y) - f0) / (1 + f0)
    np.testing.assert_allclose(s.value, expected, rtol=1e-12)
    assert np.all(np.abs(s.maximizer) <= s.radius) and s.value > 0


# ---- the fallback: a sharpness maximization that does not fail silently --------------------------------

def _fake_minimize(x_offset=0.0, fun=0.0, message="ABNORMAL_TERMINATION_IN_LNSRCH"):
    """A stand-in for scipy's minimize reporting a failed line search (status 2) at ``x0 + x_offset``."""
    def fake(fun_and_grad, x0, **kwargs):
        fun_and_grad(x0)  # as L-BFGS-B would: one evaluation at the start
        return optimize.OptimizeResult(x=np.asarray(x0) + x_offset, fun=fun, status=2, success=False,
                                       message=message, nit=0, nfev=1)
    return fake


def test_failed_line_search_falls_back_to_projected_gradient_ascent(monkeypatch):
    net, theta, X, y = small_convex_quadratic()
    monkeypatch.setattr(sharpness.optimize, "minimize", _fake_minimize())
    s = sharpness.epsilon_sharpness(net, theta, X, y, eps=0.05)
    assert s.fell_back and s.method == "pga"
    first = s.attempts[0]
    assert (first.method, first.status, first.message) == ("lbfgsb", 2, "ABNORMAL_TERMINATION_IN_LNSRCH")
    assert first.increase == 0.0  # what the failed solver reached: nothing; this used to be reported as 0
    assert s.value > 0 and np.all(np.abs(s.maximizer) <= s.radius)
    f0 = net.loss(theta, X, y)
    np.testing.assert_allclose(s.value, 100 * (net.loss(theta + s.maximizer, X, y) - f0) / (1 + f0), rtol=1e-12)
    assert s.iterations == sum(a.iterations for a in s.attempts)


def test_a_lying_solver_cannot_set_the_value(monkeypatch):
    # The solver claims f = 1e9 at a point far outside the box: the point is clipped into the box and
    # the value recomputed there.
    net, theta, X, y = small_convex_quadratic()
    monkeypatch.setattr(sharpness.optimize, "minimize", _fake_minimize(x_offset=10.0, fun=-1e9))
    s = sharpness.epsilon_sharpness(net, theta, X, y, eps=0.05, fallback=False)
    assert not s.fell_back and s.status == 2
    np.testing.assert_array_equal(s.maximizer, s.radius)  # x0 + 10 clipped to the upper bounds
    f0 = net.loss(theta, X, y)
    np.testing.assert_allclose(s.perturbed_loss, net.loss(theta + s.radius, X, y), rtol=1e-15)
    np.testing.assert_allclose(s.value, 100 * (s.perturbed_loss - f0) / (1 + f0), rtol=1e-15)
    np.testing.assert_allclose(s.attempts[0].increase, s.perturbed_loss - f0, rtol=1e-15)  # the record too


def test_a_failed_line_search_falls_back_even_after_some_progress(monkeypatch):
    # L-BFGS-B moved a little (to 0.2 r) before its line search failed: PGA continues from there, so the
    # result is at least that point's increase, and the failure is on record.
    net, theta, X, y = small_convex_quadratic()
    r = 0.05 * (np.abs(theta) + 1.0)
    _, g = net.loss_and_grad(theta, X, y)
    y_partial = 0.2 * np.sign(g) * r
    monkeypatch.setattr(sharpness.optimize, "minimize", _fake_minimize(x_offset=y_partial))
    s = sharpness.epsilon_sharpness(net, theta, X, y, eps=0.05)
    partial = s.attempts[0].increase
    np.testing.assert_allclose(partial, net.loss(theta + y_partial, X, y) - net.loss(theta, X, y), rtol=1e-12)
    assert partial > 0 and s.fell_back and s.attempts[0].status == 2
    assert s.attempts[1].increase > partial and s.perturbed_loss - s.loss == s.attempts[1].increase


def test_real_silent_failure_of_lbfgsb_on_a_tiny_box_is_caught():
    # scipy's L-BFGS-B stops when the projected gradient's largest entry is <= gtol = 1e-5. The projected
    # gradient is bounded by the box width, 2 eps (|x_i| + 1) < 1e-5 here (eps = 1e-6, |x_i| < 4), so
    # L-BFGS-B "converges" at its start y = 0 and reports f(x + 0) - f(x) = 0: sharpness 0, status 0.
    net = ms.MLP([5, 8, 3], activation="tanh", loss="cross_entropy")
    rng = np.random.default_rng(3)
    theta = net.init(seed=3)
    X, y = rng.standard_normal((60, 5)), rng.integers(0, 3, 60)
    assert np.abs(theta).max() < 4
    silent = sharpness.epsilon_sharpness(net, theta, X, y, eps=1e-6, fallback=False)
    assert silent.value == 0.0 and silent.status == 0 and "PROJECTED GRADIENT" in silent.message
    s = sharpness.epsilon_sharpness(net, theta, X, y, eps=1e-6)
    assert s.fell_back and s.method == "pga" and s.value > 0
    assert s.attempts[0].increase == 0.0 and s.attempts[0].status == 0
    # first order: the maximum over a box this small is sum |g_i| r_i (the quadratic term is ~1e-6 of it)
    f0, g = net.loss_and_grad(theta, X, y)
    first_order = 100 * np.sum(np.abs(g) * s.radius) / (1 + f0)
    np.testing.assert_allclose(s.value, first_order, rtol=1e-4)


def test_projected_gradient_ascent_never_decreases_and_escapes_a_critical_point():
    # At the exact minimizer of a quadratic the gradient is zero: sign(0) takes random signs, and every
    # accepted step raises F.
    H = np.diag([3.0, 1.0, 0.5])
    history = []

    def objective(yv):
        history.append(0.5 * yv @ H @ yv)
        return history[-1], H @ yv

    objective.calls = 0
    r = np.array([0.1, 0.2, 0.3])
    y_end, run = sharpness.projected_gradient_ascent(objective, np.zeros(3), r, maxiter=10)
    np.testing.assert_allclose(np.abs(y_end), r)  # every vertex is the maximum of this symmetric bowl
    assert run.status == 0 and "KKT" in run.message
    np.testing.assert_allclose(run.increase, 0.5 * r @ H @ r, rtol=1e-15)


def test_projected_gradient_ascent_backtracks_instead_of_going_downhill():
    # F(y) = -(y - 0.3)^2 on |y| <= 1 (one coordinate): the first full step from 0 (to y = 1) would lower
    # F; halving finds ascent, and the iterates close in on the interior maximum y = 0.3, F never falling.
    def objective(yv):
        return -float((yv[0] - 0.3) ** 2), np.array([-2.0 * (yv[0] - 0.3)])

    objective.calls = 0
    y_end, run = sharpness.projected_gradient_ascent(objective, np.zeros(1), np.ones(1), maxiter=40)
    assert run.increase > 0  # F(y_end) - F(0) with F(0) = -0.09
    np.testing.assert_allclose(y_end, [0.3], atol=1e-3)
    np.testing.assert_allclose(run.increase, 0.09 - (y_end[0] - 0.3) ** 2, rtol=1e-12)


def test_invalid_arguments_are_refused():
    net, theta, X, y = diagonal_quadratic()
    with pytest.raises(ValueError, match="method"):
        sharpness.epsilon_sharpness(net, theta, X, y, method="adam")
    with pytest.raises(ValueError, match="eps"):
        sharpness.epsilon_sharpness(net, theta, X, y, eps=0.0)
    with pytest.raises(ValueError, match="basis"):
        sharpness.epsilon_sharpness(net, theta, X, y, basis=np.ones((5, 2)))
    with pytest.raises(ValueError, match="subspace_dim"):
        sharpness.epsilon_sharpness(net, theta, X, y, subspace_dim=4)


# ---- expected sharpness under Gaussian noise ---------------------------------------------------------------

def quadratic_net():
    """Linear regression [4, 2] with l2: loss exactly quadratic, full Hessian, P = 10."""
    rng = np.random.default_rng(4)
    net = ms.MLP([4, 2], activation="identity", loss="mse", l2=1e-2)
    return net, rng.standard_normal(10), rng.standard_normal((30, 4)), rng.standard_normal((30, 2))


@pytest.mark.parametrize("antithetic", [True, False])
def test_expected_sharpness_on_a_quadratic_matches_half_sigma_squared_trace(antithetic):
    # For a quadratic, E f(theta + sigma xi) - f(theta) = sigma^2/2 tr(H) exactly.
    net, theta, X, y = quadratic_net()
    H = net.hessian(theta, X, y)
    sigma = 0.3
    e = sharpness.expected_sharpness(net, theta, X, y, sigma, num_samples=400, antithetic=antithetic)
    np.testing.assert_allclose(e.trace, np.trace(H), rtol=1e-12)
    np.testing.assert_allclose(e.second_order, sigma ** 2 / 2 * np.trace(H), rtol=1e-12)
    assert abs(e.mean - e.second_order) <= 4 * e.stderr
    assert e.stderr < 0.1 * e.second_order  # the comparison has teeth: 4 stderr is < 40% of the value


def test_antithetic_samples_on_a_quadratic_are_the_quadratic_form():
    # Antithetic pairs cancel the gradient term exactly, so for a quadratic each sample is
    # sigma^2/2 xi^T H xi >= 0 (H is positive definite here), and the variance is the quadratic form's:
    # Var = sigma^4/4 * 2 tr(H^2). The sample variance of 2000 draws is within 20% of it.
    net, theta, X, y = quadratic_net()
    H = net.hessian(theta, X, y)
    sigma = 0.3
    e = sharpness.expected_sharpness(net, theta, X, y, sigma, num_samples=2000)
    assert np.all(e.samples > 0)
    np.testing.assert_allclose(e.samples.var(ddof=1), sigma ** 4 / 2 * np.trace(H @ H), rtol=0.2)


def test_expected_sharpness_with_per_parameter_sigma():
    net, theta, X, y = quadratic_net()
    sigma = 0.1 * (np.abs(theta) + 0.1)
    e = sharpness.expected_sharpness(net, theta, X, y, sigma, num_samples=400)
    np.testing.assert_allclose(e.second_order, 0.5 * np.sum(sigma ** 2 * np.diag(net.hessian(theta, X, y))),
                               rtol=1e-12)
    assert abs(e.mean - e.second_order) <= 4 * e.stderr
    # a given diagonal is used as is (here: the dense Hessian's), with the same random draws
    given = sharpness.expected_sharpness(net, theta, X, y, sigma, num_samples=400,
                                         diagonal=np.diag(net.hessian(theta, X, y)))
    np.testing.assert_allclose([given.second_order, given.mean], [e.second_order, e.mean], rtol=1e-12)


def test_expected_sharpness_of_a_nonlinear_net_is_second_order_for_small_sigma():
    # Antithetic samples leave the fourth-order term, ~sigma^2 relative to the second-order one: at
    # sigma = 1e-3 that is ~1e-6, far below the Monte-Carlo error.
    net = ms.MLP([5, 8, 3], activation="tanh", loss="cross_entropy")
    rng = np.random.default_rng(5)
    theta = net.init(seed=5)
    X, y = rng.standard_normal((50, 5)), rng.integers(0, 3, 50)
    e = sharpness.expected_sharpness(net, theta, X, y, 1e-3, num_samples=200)
    assert abs(e.mean - e.second_order) <= 4 * e.stderr and e.stderr < 0.2 * e.second_order


# ---- scale-aware sharpness ---------------------------------------------------------------------------------

def relu_problem(sizes, seed):
    rng = np.random.default_rng(seed)
    net = ms.MLP(sizes, activation="relu", loss="cross_entropy")
    theta = net.init(seed=seed, scheme="he") + 0.2 * rng.standard_normal(net.num_params)  # nonzero biases
    X, y = rng.standard_normal((40, sizes[0])), rng.integers(0, sizes[-1], 40)
    return net, theta, X, y


def rescale(net, theta, alphas):
    """Dinh et al.'s reparametrization: W_l -> alpha_l W_l, b_l -> c_l b_l with c_l = prod_{j<=l} alpha_j;
    a ReLU net computes the same function when prod alpha = 1."""
    params, c = [], 1.0
    for (W, b), alpha in zip(net.unflatten(theta), alphas):
        c *= alpha
        params.append((alpha * W, c * b))
    return net.flatten(params)


@pytest.mark.parametrize("sizes, alphas", [([4, 6, 3], (10.0, 0.1)), ([4, 6, 5, 3], (10.0, 1.0, 0.1)),
                                           ([4, 6, 5, 3], (0.1, 100.0, 0.1))])
def test_scale_aware_sharpness_is_invariant_under_relu_rescaling(sizes, alphas):
    net, theta, X, y = relu_problem(sizes, seed=len(sizes))
    theta2 = rescale(net, theta, alphas)
    np.testing.assert_allclose(net.forward(theta2, X), net.forward(theta, X), rtol=1e-12, atol=1e-12)
    top = ms.curvature.eigen.hessian_spectrum(net, theta, X, y, k=1, method="exact").values[0]
    top2 = ms.curvature.eigen.hessian_spectrum(net, theta2, X, y, k=1, method="exact").values[0]
    assert max(top / top2, top2 / top) > 10  # plain sharpness moves by more than a decade
    s = sharpness.scale_aware_sharpness(net, theta, X, y, method="exact")
    s2 = sharpness.scale_aware_sharpness(net, theta2, X, y, method="exact")
    assert s.groups == tuple(f"layer{l}.{p}" for l in range(1, len(sizes)) for p in "Wb")
    assert np.all(s.norm_sq > 0) and not np.allclose(s.curvature, s2.curvature, rtol=0.5)
    np.testing.assert_allclose(s2.values, s.values, rtol=1e-8)
    np.testing.assert_allclose([s2.total, s2.maximum], [s.total, s.maximum], rtol=1e-8)


def test_scale_aware_sharpness_by_lanczos_matches_the_dense_blocks():
    # Lanczos on each block at tol 1e-10: the eigenvalue error is below the residual bound (symmetric
    # case), 1e-10 * |lambda|, so rtol 1e-8 is safe.
    net, theta, X, y = relu_problem([4, 6, 5, 3], seed=8)
    dense = sharpness.scale_aware_sharpness(net, theta, X, y, method="exact")
    lanczos = sharpness.scale_aware_sharpness(net, theta, X, y, method="lanczos", tol=1e-10)
    assert (dense.method, lanczos.method) == ("exact", "lanczos")
    H = net.hessian(theta, X, y)
    for (name, start, stop), lam in zip(sharpness.parameter_groups(net), dense.curvature):
        np.testing.assert_allclose(lam, np.linalg.eigvalsh(H[start:stop, start:stop])[-1], rtol=1e-12)
    np.testing.assert_allclose(lanczos.curvature, dense.curvature, rtol=1e-8)


# ---- summary -------------------------------------------------------------------------------------------------

def test_effective_dimension_closed_form():
    # 1/(1+1) + 3/(3+1) + 0 (the negative eigenvalue counts as zero) = 1.25
    np.testing.assert_allclose(sharpness.effective_dimension([1.0, 3.0, -2.0], z=1.0), 1.25, rtol=1e-15)
    with pytest.raises(ValueError, match="z"):
        sharpness.effective_dimension([1.0], z=0.0)


def test_sharpness_summary_exact_and_lanczos_against_dense_eigh():
    net = ms.MLP([5, 8, 3], activation="tanh", loss="cross_entropy", l2=1e-3)
    rng = np.random.default_rng(9)
    theta = net.init(seed=9) + 0.3 * rng.standard_normal(net.num_params)
    X, y = rng.standard_normal((60, 5)), rng.integers(0, 3, 60)
    H = net.hessian(theta, X, y)
    w = np.linalg.eigvalsh(H)
    z = 0.05
    s = sharpness.sharpness_summary(net, theta, X, y, z=z, method="exact")
    np.testing.assert_allclose([s.top_eigenvalue, s.trace, s.frobenius_norm],
                               [w[-1], np.trace(H), np.linalg.norm(H, "fro")], rtol=1e-10)
    np.testing.assert_allclose(s.effective_dimension, np.sum(np.maximum(w, 0) / (np.maximum(w, 0) + z)),
                               rtol=1e-10)
    assert set(s.as_dict()) == {"top_eigenvalue", "trace", "frobenius_norm", "effective_dimension"}
    lz = sharpness.sharpness_summary(net, theta, X, y, z=z, method="lanczos", k=10, num_probes=200)
    assert lz.method == "lanczos" and lz.effective_dimension_is_bound
    np.testing.assert_allclose(lz.top_eigenvalue, w[-1], rtol=1e-7)  # Lanczos tol 1e-8 relative
    np.testing.assert_allclose(lz.trace, np.trace(H), rtol=1e-12)  # exact, from the diagonal
    assert abs(lz.frobenius_norm - s.frobenius_norm) <= 4 * lz.frobenius_stderr
    assert lz.effective_dimension <= s.effective_dimension  # truncated to the top 10: a lower bound


@pytest.mark.parametrize("library, rtol", [("array_api_strict", 1e-12), pytest.param("cupy", 1e-9, marks=GPU)])
def test_other_array_libraries_give_the_numpy_results(library, rtol):
    # The measures run on any array-API backend; the arithmetic is the same (array_api_strict: NumPy underneath) or
    # summed in other orders (CuPy), so they agree to rounding.
    xp = pytest.importorskip(library)
    net = ms.MLP([4, 6, 3], activation="tanh", loss="cross_entropy")
    rng = np.random.default_rng(10)
    theta, X, y = net.init(seed=10), rng.standard_normal((30, 4)), rng.integers(0, 3, 30)
    arrays = (xp.asarray(theta), xp.asarray(X), xp.asarray(y))
    measures = [
        lambda *a: sharpness.epsilon_sharpness(net, *a, eps=1e-2).value,
        lambda *a: sharpness.epsilon_sharpness(net, *a, eps=1e-2, subspace_dim=3, method="pga").value,
        lambda *a: sharpness.expected_sharpness(net, *a, 0.01, num_samples=4).mean,
        lambda *a: sharpness.scale_aware_sharpness(net, *a, method="lanczos").total,
        lambda *a: sharpness.sharpness_summary(net, *a, method="lanczos", k=5).frobenius_norm,
    ]
    for measure in measures:
        np.testing.assert_allclose(measure(*arrays), measure(theta, X, y), rtol=rtol)


# ---- invariant measures ------------------------------------------------------------------------------------------
# The rescaling-invariant measures of minisgd.curvature.sharpness (relative sharpness, the Fisher-Rao norm) against dense
# references, finite differences, and their invariance under Dinh et al.'s rescalings (minisgd.theory.reparametrize).
#
# Tolerances: dense references agree to rounding (rtol 1e-10); Lanczos at tol 1e-10 leaves an eigenvalue error below
# its residual bound, so rtol 1e-8; central differences with h = 1e-5 on a tanh net have truncation error
# ~h^2 |l'''| ~ 1e-10 relative to the O(1) derivatives, so rtol 1e-7.


def problem(sizes=(5, 7, 6, 3), activation="relu", seed=0, N=40):
    rng = np.random.default_rng(seed)
    net = ms.MLP(list(sizes), activation=activation, loss="cross_entropy")
    theta = net.init(seed=seed, scheme="he") + 0.2 * rng.standard_normal(net.num_params)
    X, y = rng.standard_normal((N, sizes[0])), rng.integers(0, sizes[-1], N)
    return net, theta, X, y


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_relative_sharpness_against_the_dense_matrix(activation):
    net, theta, X, y = problem(activation=activation)
    H = net.hessian(theta, X, y)
    T = np.diag(np.abs(theta))
    exact = sharpness.relative_sharpness(net, theta, X, y, method="exact")
    lanczos = sharpness.relative_sharpness(net, theta, X, y, method="lanczos", tol=1e-10)
    assert (exact.method, lanczos.method) == ("exact", "lanczos")
    np.testing.assert_allclose(exact.top_eigenvalue, np.linalg.eigvalsh(T @ H @ T)[-1], rtol=1e-10)
    np.testing.assert_allclose(exact.trace, np.trace(T @ H @ T), rtol=1e-10)
    np.testing.assert_allclose(exact.radial, theta @ H @ theta, rtol=1e-10)
    np.testing.assert_allclose(lanczos.top_eigenvalue, exact.top_eigenvalue, rtol=1e-8)
    assert (lanczos.trace, lanczos.radial) == (exact.trace, exact.radial)
    assert set(exact.as_dict()) == {"relative_top_eigenvalue", "relative_trace", "radial_curvature"}


def test_relative_trace_is_the_second_order_term_of_magnitude_aware_noise():
    net, theta, X, y = problem()
    s = 1e-2
    e = sharpness.expected_sharpness(net, theta, X, y, sigma=s * np.abs(theta), num_samples=4)
    rel = sharpness.relative_sharpness(net, theta, X, y, method="exact")
    np.testing.assert_allclose(e.second_order, s ** 2 / 2 * rel.trace, rtol=1e-12)


@pytest.mark.parametrize("sizes, factors", [((5, 7, 3), (1e3, 1e-3)), ((5, 7, 6, 3), (1e-3, 1e3, 1.0)),
                                            ((5, 7, 6, 3), (30.0, 1e-2, 1 / 0.3))])
def test_invariant_under_rescaling_where_the_top_eigenvalue_is_not(sizes, factors):
    net, theta, X, y = problem(sizes, seed=len(sizes))
    theta2 = rescale(net, theta, factors)
    top = ms.curvature.eigen.hessian_spectrum(net, theta, X, y, k=1, method="exact").values[0]
    top2 = ms.curvature.eigen.hessian_spectrum(net, theta2, X, y, k=1, method="exact").values[0]
    assert max(top / top2, top2 / top) > 100
    for method in ("exact", "lanczos"):
        r = sharpness.relative_sharpness(net, theta, X, y, method=method, tol=1e-10)
        r2 = sharpness.relative_sharpness(net, theta2, X, y, method=method, tol=1e-10)
        np.testing.assert_allclose([r2.top_eigenvalue, r2.trace, r2.radial], [r.top_eigenvalue, r.trace, r.radial],
                                   rtol=1e-8)
    np.testing.assert_allclose(sharpness.fisher_rao_norm(net, theta2, X, y),
                               sharpness.fisher_rao_norm(net, theta, X, y), rtol=1e-10)


def test_fisher_rao_norm_against_finite_differences():
    """<theta, g_n> is the derivative of l_n(theta + t theta) at t = 0: central differences, per example."""
    net, theta, X, y = problem(activation="tanh", seed=3)
    h = 1e-5
    up, down = net.per_example_losses(theta + h * theta, X, y), net.per_example_losses(theta - h * theta, X, y)
    slopes = (up - down) / (2 * h)
    expected = np.mean(slopes ** 2)
    np.testing.assert_allclose(sharpness.fisher_rao_norm(net, theta, X, y), expected, rtol=1e-7)
    np.testing.assert_allclose(sharpness.fisher_rao_norm(net, theta, X, y, chunk=7),
                               sharpness.fisher_rao_norm(net, theta, X, y), rtol=1e-13)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        sharpness.fisher_rao_norm(net, theta, X, y, chunk=0)
    with pytest.raises(ValueError, match="method must be"):
        sharpness.relative_sharpness(net, theta, X, y, method="eigh")
