"""The Fisher operator: exact (equal to the Gauss-Newton matrix for these losses), and Monte Carlo (unbiased,
its error falling as 1/sqrt(S))."""
import numpy as np
import pytest

from minisgd.curvature.operators import Fisher

from .conftest import check_against_dense, make_problem


def test_exact_fisher_equals_the_gauss_newton_matrix(small):
    """Expectation over the model's labels of the score's outer product (dense: explicit Jacobians) against the
    block-formula Gauss-Newton matrix: the two agree for softmax cross-entropy and the Gaussian squared error."""
    net, theta, X, y = small
    F = Fisher(net, theta, X)
    dense = F.to_dense()
    G = net.gauss_newton(theta, X, y)
    np.testing.assert_allclose(dense, G, rtol=0, atol=1e-12 * abs(G).max())
    check_against_dense(F, dense, "Fisher")


def test_monte_carlo_products_against_its_dense_matrix(small):
    net, theta, X, y = small
    F = Fisher(net, theta, X, y, mc_samples=3, seed=4)
    check_against_dense(F, F.to_dense(), "Fisher(mc_samples=3)")
    # the draws are fixed at construction: the same seed is the same matrix, another seed another one
    V = np.random.default_rng(0).standard_normal(net.num_params)
    np.testing.assert_array_equal(Fisher(net, theta, X, mc_samples=3, seed=4) @ V, F @ V)
    assert not np.allclose(Fisher(net, theta, X, mc_samples=3, seed=5) @ V, F @ V)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_monte_carlo_converges_to_the_exact_fisher(loss):
    """Relative Frobenius error of the MC Fisher against S: unbiased, so it falls as S^(-1/2); averaged over 6 seeds,
    going from S = 16 to S = 1024 (64x) divides it by 8 (checked within a factor 1.6 either way: 5 to 13)."""
    net, theta, X, y = make_problem([4, 6, 3], "tanh", loss, 0.0, n=20)
    exact = Fisher(net, theta, X).to_dense()
    norm = np.linalg.norm(exact)

    def error(S):
        return np.mean([np.linalg.norm(Fisher(net, theta, X, mc_samples=S, seed=s).to_dense() - exact) / norm
                        for s in range(6)])

    coarse, fine = error(16), error(1024)
    assert 5 < coarse / fine < 13, (coarse, fine)
    assert fine < 0.1


def test_bad_sample_count_raises(small):
    net, theta, X, y = small
    with pytest.raises(ValueError, match="mc_samples must be an integer >= 1"):
        Fisher(net, theta, X, mc_samples=0)
