"""KFAC: exact where the factorization is (one example; a linear model with the squared error), its factors against
direct formulas, products against the Kronecker products, closed-form eigenvalues and the damped inverse."""
import numpy as np
import pytest

from minisgd.curvature.operators import KFAC
from minisgd.errors import ConfigError

from .conftest import RTOL, blocks, check_against_dense, make_problem


@pytest.mark.parametrize("fisher_type", ["gauss_newton", "fisher", "mc", "empirical"])
def test_products_diagonal_and_trace_against_the_kronecker_products(small, fisher_type):
    net, theta, X, y = small
    K = KFAC(net, theta, X, y, fisher_type=fisher_type, mc_samples=2)
    dense = K.to_dense()
    check_against_dense(K, dense, f"KFAC({fisher_type})")
    for layer, block, (A, B) in zip(net.layers, blocks(net, dense), K.factors):
        np.testing.assert_allclose(block, np.kron(A, B) + net.l2 * np.eye(layer.size), rtol=0, atol=1e-14)
    off = dense.copy()
    for layer in net.layers:
        off[layer.start:layer.stop, layer.start:layer.stop] = 0
    assert not off.any()  # block-diagonal


def test_one_example_makes_every_block_exact():
    """With N = 1 the mean of Kronecker products is one product: each diagonal block of the exact Gauss-Newton
    matrix equals KFAC's (the cross-layer blocks, which KFAC drops, are not zero)."""
    net, theta, X, y = make_problem([5, 7, 6, 3], "tanh", "cross_entropy", 1e-3, n=1)
    G = net.gauss_newton(theta, X, y)
    for exact, approx in zip(blocks(net, G), blocks(net, KFAC(net, theta, X, y).to_dense())):
        np.testing.assert_allclose(approx, exact, rtol=0, atol=RTOL * abs(exact).max())


def test_a_linear_model_with_squared_error_is_exact():
    """Depth 1, mse: G = (1/N sum x x^T) (x) I exactly, and KFAC's factors are those two."""
    net, theta, X, y = make_problem([4, 3], "identity", "mse", 1e-2, n=30)
    K = KFAC(net, theta, X, y)
    G = net.gauss_newton(theta, X, y)
    np.testing.assert_allclose(K.to_dense(), G, rtol=0, atol=RTOL * abs(G).max())
    A, B = K.factors[0]
    Xa = np.hstack([X, np.ones((30, 1))])
    np.testing.assert_allclose(A, Xa.T @ Xa / 30, rtol=1e-13)
    np.testing.assert_allclose(B, np.eye(3), rtol=0, atol=1e-14)


def test_factors_against_direct_formulas(small):
    """A_1 from the inputs; the last layer's B is the mean loss Hessian (gauss_newton) or the gradients' second
    moment (empirical): there the backpropagated factor is the output factor itself."""
    net, theta, X, y = small
    N = X.shape[0]
    Xa = np.hstack([X, np.ones((N, 1))])
    Z = net.forward(theta, X)
    yy = net.loss_fn.check_targets(y, N, net.sizes[-1])
    A1, _ = KFAC(net, theta, X, y).factors[0]
    np.testing.assert_allclose(A1, Xa.T @ Xa / N, rtol=1e-13)
    _, BL = KFAC(net, theta, X, y).factors[-1]
    np.testing.assert_allclose(BL, net.loss_fn.hessian(Z, yy).mean(axis=0), rtol=0, atol=1e-14)
    g = net.loss_fn.grad(Z, yy)
    _, BL = KFAC(net, theta, X, y, fisher_type="empirical").factors[-1]
    np.testing.assert_allclose(BL, g.T @ g / N, rtol=0, atol=1e-14)


def test_eigenvalues_and_damped_inverse(small):
    net, theta, X, y = small
    K = KFAC(net, theta, X, y)
    dense = K.to_dense()
    w = np.linalg.eigvalsh(dense)[::-1]
    np.testing.assert_allclose(K.eigenvalues(), w, rtol=0, atol=1e-12 * w[0])
    damping = 1e-2
    inv = K.inverse(damping)
    ref = np.linalg.inv(dense + damping * np.eye(net.num_params))
    # closed form against LAPACK's inverse of a matrix with condition number up to ~1e4: rounding ~1e-12
    V = np.random.default_rng(5).standard_normal((net.num_params, 3))
    np.testing.assert_allclose(inv @ V, ref @ V, rtol=0, atol=1e-9 * abs(ref @ V).max())
    np.testing.assert_allclose(inv @ (K @ V) + damping * (inv @ V), V, rtol=0, atol=1e-9)
    np.testing.assert_allclose(inv.diagonal(), np.diag(ref), rtol=0, atol=1e-9 * abs(ref).max())
    assert inv.trace() == pytest.approx(np.trace(ref), rel=1e-9)


def test_an_undamped_singular_kfac_cannot_be_inverted():
    """Cross-entropy: the softmax's curvature has the all-ones null vector, so B_L and KFAC are singular."""
    net, theta, X, y = make_problem([5, 7, 3], "tanh", "cross_entropy", 0.0)
    K = KFAC(net, theta, X, y)
    with pytest.raises(ConfigError, match="pass damping > 0"):
        K.inverse()
    K.inverse(1e-3)
    with pytest.raises(ConfigError, match="not an inverse"):
        K.inverse(1e-3).inverse(1.0)


def test_top_eigenpairs_in_closed_form(small):
    net, theta, X, y = small
    for op in (KFAC(net, theta, X, y), KFAC(net, theta, X, y).inverse(1e-2)):
        dense = op.to_dense()
        values, vectors = op.eigenpairs(5)
        np.testing.assert_allclose(values, np.linalg.eigvalsh(dense)[::-1][:5], rtol=1e-12)
        np.testing.assert_allclose(vectors.T @ vectors, np.eye(5), atol=1e-13)  # orthonormal
        np.testing.assert_allclose(dense @ vectors, vectors * values, rtol=0, atol=1e-12 * values[0])


def test_kronecker_operators_refuse_batch_normalized_nets():
    import numpy as np
    import minisgd as ms
    from minisgd.curvature.operators import EKFAC, KFAC
    net = ms.MLP([4, 3, 2], batch_norm=True)
    X, y = np.random.default_rng(0).standard_normal((6, 4)), np.array([0, 1] * 3)
    for cls in (KFAC, EKFAC):
        with pytest.raises(ms.errors.UnsupportedModelError, match="batch normalization"):
            cls(net.eval_mode(net.initial_statistics()), net.init(0), X, y)
