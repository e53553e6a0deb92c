"""EKFAC: KFAC's eigenbasis with the eigenvalues of the exact Gauss-Newton block in that basis; never farther from
the exact block than KFAC; equal to KFAC where KFAC is exact."""
import numpy as np
import pytest

from minisgd.curvature.operators import EKFAC, KFAC

from .conftest import RTOL, blocks, check_against_dense, make_problem


@pytest.mark.parametrize("fisher_type", ["gauss_newton", "empirical"])
def test_products_diagonal_and_trace_against_its_dense_matrix(small, fisher_type):
    net, theta, X, y = small
    E = EKFAC(net, theta, X, y, fisher_type=fisher_type)
    dense = E.to_dense()
    check_against_dense(E, dense, f"EKFAC({fisher_type})")
    w = np.linalg.eigvalsh(dense)[::-1]
    np.testing.assert_allclose(E.eigenvalues(), w, rtol=0, atol=1e-12 * w[0])


def test_kfac_eigenbasis_with_the_exact_blocks_diagonal(small):
    """EKFAC's eigenvectors are KFAC's, and its eigenvalues are the diagonal of the exact Gauss-Newton block
    rotated into that basis (George et al. 2018), computed here from the dense block-formula matrix."""
    net, theta, X, y = small
    K, E = KFAC(net, theta, X, y), EKFAC(net, theta, X, y)
    G = net.gauss_newton(theta, X, y)
    for layer, block, (UA, UB, S), (UAk, UBk, Sk), (sk) in zip(net.layers, blocks(net, G), E.eigen, K.eigen,
                                                                E.kfac_eigenvalues):
        np.testing.assert_array_equal(UA, UAk)
        np.testing.assert_array_equal(UB, UBk)
        np.testing.assert_allclose(sk, Sk, rtol=0, atol=1e-15 * abs(Sk).max())
        U = np.kron(UA, UB)
        rotated = U.T @ (block - net.l2 * np.eye(layer.size)) @ U
        np.testing.assert_allclose(S.ravel(), np.diag(rotated), rtol=0, atol=RTOL * abs(rotated).max())
        # EKFAC's block in KFAC's basis is diagonal
        ek = U.T @ E.to_dense()[layer.start:layer.stop, layer.start:layer.stop] @ U
        np.testing.assert_allclose(ek - np.diag(np.diag(ek)), 0, atol=1e-12 * abs(ek).max())


def test_never_farther_from_the_exact_block_than_kfac(small):
    net, theta, X, y = small
    G = net.gauss_newton(theta, X, y)
    for exact, k, e in zip(blocks(net, G), blocks(net, KFAC(net, theta, X, y).to_dense()),
                           blocks(net, EKFAC(net, theta, X, y).to_dense())):
        # (where KFAC is exact, e.g. mse's output layer, both errors are rounding: 1e-12 of the block's norm)
        assert np.linalg.norm(e - exact) <= np.linalg.norm(k - exact) + 1e-12 * np.linalg.norm(exact)


@pytest.mark.parametrize("sizes, activation, loss, n", [([5, 7, 6, 3], "tanh", "cross_entropy", 1),
                                                        ([4, 3], "identity", "mse", 30)])
def test_equal_to_kfac_where_kfac_is_exact(sizes, activation, loss, n):
    net, theta, X, y = make_problem(sizes, activation, loss, 1e-3, n=n)
    K, E = KFAC(net, theta, X, y).to_dense(), EKFAC(net, theta, X, y).to_dense()
    np.testing.assert_allclose(E, K, rtol=0, atol=RTOL * abs(K).max())


def test_damped_inverse(small):
    net, theta, X, y = small
    E = EKFAC(net, theta, X, y)
    ref = np.linalg.inv(E.to_dense() + 1e-2 * np.eye(net.num_params))
    V = np.random.default_rng(6).standard_normal((net.num_params, 2))
    np.testing.assert_allclose(E.inverse(1e-2) @ V, ref @ V, rtol=0, atol=1e-9 * abs(ref @ V).max())
