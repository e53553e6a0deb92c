"""The residual operator H - G against the block-formula residual."""
import numpy as np

from minisgd.curvature.operators import Residual

from .conftest import check_against_dense


def test_products_diagonal_and_trace_against_the_dense_residual(small):
    net, theta, X, y = small
    R = Residual(net, theta, X, y)
    dense = net.residual(theta, X, y)
    check_against_dense(R, dense, "Residual")
    # and H - G, the definition, from the two dense matrices (the L2 term cancels)
    np.testing.assert_allclose(dense, net.hessian(theta, X, y) - net.gauss_newton(theta, X, y), rtol=0,
                               atol=1e-13 * abs(dense).max())
