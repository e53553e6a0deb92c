"""The Gauss-Newton operator against the block-formula Gauss-Newton matrix."""
import numpy as np

from minisgd.curvature.operators import GaussNewton, Hessian

from .conftest import check_against_dense, make_problem


def test_products_diagonal_and_trace_against_the_dense_gauss_newton(small):
    net, theta, X, y = small
    G = GaussNewton(net, theta, X, y)
    dense = net.gauss_newton(theta, X, y)
    check_against_dense(G, dense, "GaussNewton")
    np.testing.assert_array_equal(G.to_dense(), dense)
    w = np.linalg.eigvalsh(dense)
    assert w[0] >= -1e-12 * w[-1]  # positive semi-definite (convex losses), up to rounding


def test_a_linear_model_has_no_residual():
    """Depth 1: the outputs are linear in theta, so G = H (second route: the Hessian operator)."""
    net, theta, X, y = make_problem([4, 3], "identity", "cross_entropy", 1e-2)
    V = np.random.default_rng(3).standard_normal((net.num_params, 4))
    GV, HV = GaussNewton(net, theta, X, y) @ V, Hessian(net, theta, X, y) @ V
    np.testing.assert_allclose(GV, HV, rtol=0, atol=1e-13 * abs(HV).max())
