"""Hessian-vector products (R-operator) against finite differences of the gradient and the exact Hessian."""
from __future__ import annotations

import numpy as np
import pytest

from minisgd.backend import to_numpy
from minisgd.testing import assert_allclose_relative, check_jacobian_vector


def grad_at(p, theta):
    return to_numpy(p.net.loss_and_grad(theta, p.X, p.y)[1])


def hvp(p, V, theta=None):
    return to_numpy(p.net.hvp(p.theta if theta is None else theta, p.X, p.y, V))


def test_hvp_matches_finite_differences_of_gradient(problem):
    p = problem
    # (g(theta + h v) - g(theta - h v)) / 2h vs H v along 4 random unit directions. Central FD with
    # h = 1e-5 of an O(1) gradient: ~1e-10 error; rtol 1e-6 relative to the largest entry, atol 1e-8.
    check_jacobian_vector(lambda t: grad_at(p, t), lambda t, v: hvp(p, v, t), p.theta,
                          num_directions=4, seed=7, what=f"{p.case.id} hvp")


@pytest.mark.parametrize("k", [None, 1, 3])
def test_hvp_matches_hessian(problem, k, rng):
    p = problem
    V = rng.standard_normal((p.P,) if k is None else (p.P, k))
    HV = hvp(p, V)
    assert HV.shape == V.shape
    H = to_numpy(p.net.hessian(p.theta, p.X, p.y))
    # two exact routes (R-operator vs assembled blocks) with different summation orders: rounding is
    # ~1e-15 of the largest products; 1e-10 relative to the largest entry of H @ V.
    assert_allclose_relative(HV, H @ V, rtol=1e-10, relative_to="max", what=f"{p.case.id} hvp vs hessian @ V")


def test_hvp_batched_equals_single_columns(problem, rng):
    p = problem
    V = rng.standard_normal((p.P, 3))
    HV = hvp(p, V)
    for j in range(3):
        # same arithmetic, only the batched GEMM shapes differ (blocking order): 1e-12 relative to max
        assert_allclose_relative(HV[:, j], hvp(p, V[:, j].copy()), rtol=1e-12, relative_to="max",
                                 what=f"column {j} of batched hvp vs single hvp")


def test_hvp_is_linear(problem, rng):
    p = problem
    V1, V2 = rng.standard_normal((2, p.P))
    a, b = 2.5, -0.75
    lhs = hvp(p, a * V1 + b * V2)
    rhs = a * hvp(p, V1) + b * hvp(p, V2)
    # exactly linear in exact arithmetic; rounding ~eps * |H||V|: 1e-12 relative to the largest entry
    assert_allclose_relative(lhs, rhs, rtol=1e-12, relative_to="max", what="hvp(a V1 + b V2) vs a hvp(V1) + b hvp(V2)")
    np.testing.assert_array_equal(hvp(p, np.zeros(p.P)), np.zeros(p.P))  # H 0 = 0 exactly


def test_hvp_includes_l2(problem, rng):
    """H v = (H without l2) v + l2 v: the L2 term acts on every coordinate."""
    from minisgd import MLP

    p = problem
    V = rng.standard_normal((p.P, 2))
    plain = MLP(list(p.case.sizes), activation=p.case.activation, loss=p.case.loss, l2=0.0)
    diff = hvp(p, V) - to_numpy(plain.hvp(p.theta, p.X, p.y, V))
    # difference of two O(|Hv|) results: rounding ~1e-15 of |Hv|, compared with l2 |V| ~ 1e-2
    scale = max(np.max(np.abs(hvp(p, V))), 1.0)
    assert np.max(np.abs(diff - p.l2 * V)) <= 1e-12 * scale


def test_per_example_hvps_are_single_example_hessians_times_v(dense_problem):
    net, theta, X, y, H = dense_problem
    v = np.random.default_rng(0).standard_normal(net.num_params)
    rows = net.per_example_hvps(theta, X, y, v)
    assert rows.shape == (X.shape[0], net.num_params)
    for n in (0, 17, 59):  # H_n from the block formula on a one-example batch (l2 included in both)
        H_n = net.hessian(theta, X[n:n + 1], y[n:n + 1])
        np.testing.assert_allclose(rows[n], H_n @ v, rtol=0, atol=1e-12 * abs(H_n).max() * abs(v).max() * 10)
    np.testing.assert_allclose(rows.mean(axis=0), H @ v, rtol=0, atol=1e-12 * abs(H @ v).max())
