"""Gauss-Newton products by R-pass + backprop against the block-formula Gauss-Newton matrix and explicit Jacobians."""
import numpy as np
import pytest

from minisgd import MLP
from minisgd.backend import to_numpy
from minisgd.core import gauss_newton
from minisgd.errors import ShapeError
from minisgd.testing import assert_allclose_relative


def jacobian_sandwich(p, factor=None):
    """``(1/N) sum_n J_n^T M_n J_n`` from the explicit output Jacobian: ``M = A`` (the loss Hessian) or ``F F^T``."""
    J = to_numpy(p.net.output_jacobian(p.theta, p.X))  # (N, K, P)
    Z = to_numpy(p.net.forward(p.theta, p.X))
    y = p.net.loss_fn.check_targets(p.y, p.N, p.K)
    M = p.net.loss_fn.hessian(Z, y) if factor is None else factor @ np.transpose(factor, (0, 2, 1))  # (N, K, K)
    return np.einsum("nkp,nkj,njq->pq", J, M, J) / p.N


@pytest.mark.parametrize("k", [None, 1, 3])
def test_gauss_newton_vp_equals_the_dense_gauss_newton(problem, k, rng):
    p = problem
    V = rng.standard_normal((p.P,) if k is None else (p.P, k))
    GV = to_numpy(p.net.gauss_newton_vp(p.theta, p.X, p.y, V))
    assert GV.shape == V.shape
    G = to_numpy(p.net.gauss_newton(p.theta, p.X, p.y))
    # R-pass + backprop against the assembled blocks, two summation orders: rounding ~1e-15; 1e-10 of the max
    assert_allclose_relative(GV, G @ V, rtol=1e-10, relative_to="max", what=f"{p.case.id} gnvp vs G @ V")


def test_gauss_newton_vp_equals_the_jacobian_sandwich(problem, rng):
    p = problem
    V = rng.standard_normal((p.P, 2))
    ref = jacobian_sandwich(p) @ V + p.l2 * V
    assert_allclose_relative(to_numpy(p.net.gauss_newton_vp(p.theta, p.X, p.y, V)), ref, rtol=1e-10,
                             relative_to="max", what=f"{p.case.id} gnvp vs J^T A J V")


def test_factor_product_and_diagonal_against_explicit_jacobians(problem, rng):
    """A random factor F (N, K, m): the product and the diagonal of (1/N) sum J^T F F^T J."""
    p = problem
    factor = rng.standard_normal((p.N, p.K, 3))
    dense = jacobian_sandwich(p, factor)
    V = rng.standard_normal((p.P, 4))
    assert_allclose_relative(gauss_newton.factor_vector_product(p.net, p.theta, p.X, factor, V), dense @ V,
                             rtol=1e-10, relative_to="max", what=f"{p.case.id} factor product")
    assert_allclose_relative(gauss_newton.factor_vector_product(p.net, p.theta, p.X, factor, V[:, 0]),
                             dense @ V[:, 0], rtol=1e-10, relative_to="max", what="one direction")
    # chunk_elements=1: one example per chunk, the sum over chunks against the one-shot einsum
    for chunk in (1, 1 << 23):
        diag = gauss_newton.factor_diagonal(p.net, p.theta, p.X, factor, chunk_elements=chunk)
        assert_allclose_relative(diag, np.diag(dense), rtol=1e-12, relative_to="max", what=f"diagonal, chunk {chunk}")


def test_gauss_newton_diagonal(problem):
    p = problem
    G = to_numpy(p.net.gauss_newton(p.theta, p.X, p.y))
    assert_allclose_relative(to_numpy(p.net.gauss_newton_diagonal(p.theta, p.X, p.y)), np.diag(G), rtol=1e-12,
                             relative_to="max", what=f"{p.case.id} Gauss-Newton diagonal")


def test_backpropagated_factor_shapes(rng):
    net = MLP([3, 5, 4, 2], "tanh", "cross_entropy")
    theta, X = net.init(seed=1), rng.standard_normal((6, 3))
    pieces = gauss_newton.backpropagated_factor(net, theta, X, rng.standard_normal((6, 2, 3)))
    assert [(a.shape, d.shape) for a, d in pieces] == [((6, 4), (3, 6, 5)), ((6, 6), (3, 6, 4)), ((6, 5), (3, 6, 2))]


def test_on_array_api_strict(dense_problem):
    xs = pytest.importorskip("array_api_strict")
    net, theta, X, y, _ = dense_problem
    V = np.random.default_rng(1).standard_normal((net.num_params, 2))
    ref = net.gauss_newton_vp(theta, X, y, V)
    got = net.gauss_newton_vp(xs.asarray(theta), xs.asarray(X), xs.asarray(y), xs.asarray(V))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=0, atol=1e-13 * abs(ref).max())


def test_bad_directions_raise(dense_problem):
    net, theta, X, y, _ = dense_problem
    with pytest.raises(ShapeError, match="V must have shape"):
        net.gauss_newton_vp(theta, X, y, np.ones(net.num_params + 1))
