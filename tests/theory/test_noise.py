"""minisgd.theory.noise: minibatch gradient moments and the one-step loss change, checked by exact enumeration.

Every closed form is compared with a computation that does not use it: the covariance of a minibatch gradient
against the mean over all subsets / all ordered tuples (enumerated by brute force with itertools here, not with
the library's enumerator), the norm-based trace against the dense covariance, the second-order loss prediction
against the exact expectation over every batch (its error must shrink as eta^3), and the linear-Gaussian
population covariance against Monte Carlo.
"""
import dataclasses
import itertools
import math

import numpy as np
import pytest

from cases import CASES
from minisgd import MLP
from minisgd.theory import noise
from minisgd.data import make_linear_gaussian

# Smooth cases (depths 1-4, both losses, with and without L2), each with 12 examples to enumerate batches of.
SMOOTH = [dataclasses.replace(c, n=12) for c in CASES if c.activation not in ("relu", "identity")]
SMOOTH = [SMOOTH[i] for i in (0, 1, 4, 6, 8, 9)]


def _brute_force_moments(G, m, replacement):
    """Mean and covariance of the batch mean over every ordered m-tuple (with replacement) or every m-subset."""
    N = G.shape[0]
    batches = (itertools.product(range(N), repeat=m) if replacement else itertools.combinations(range(N), m))
    means = np.array([G[list(b)].mean(axis=0) for b in batches])  # (number of batches, P)
    centered = means - means.mean(axis=0)
    return means.mean(axis=0), centered.T @ centered / len(means)


def _per_example_grads(case, n):
    p = case.problem()
    return p.net.per_example_grads(p.theta, p.X[:n], p.y[:n])


@pytest.mark.parametrize("replacement", [False, True])
@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_minibatch_covariance_equals_enumeration_random(rng, m, replacement):
    N, P = (12, 7) if not replacement else (7, 5)
    G = rng.standard_normal((N, P)) * rng.uniform(0.1, 3.0, size=P)
    mean, cov = _brute_force_moments(G, m, replacement)
    np.testing.assert_allclose(mean, G.mean(axis=0), rtol=0, atol=1e-12)
    predicted = noise.minibatch_covariance(noise.gradient_covariance(G), m, N, replacement)
    np.testing.assert_allclose(cov, predicted, rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", SMOOTH[:4], ids=lambda c: c.id)
@pytest.mark.parametrize("replacement", [False, True])
def test_minibatch_covariance_equals_enumeration_mlp(case, replacement):
    """Per-example gradients of real MLPs; every batch size up to half the set, both sampling schemes."""
    G = _per_example_grads(case, 12 if not replacement else 6)
    N = G.shape[0]
    Sigma = noise.gradient_covariance(G)
    for m in range(1, N // 2 + 1):
        mean, cov = _brute_force_moments(G, m, replacement)
        np.testing.assert_allclose(mean, G.mean(axis=0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(cov, noise.minibatch_covariance(Sigma, m, N, replacement), rtol=0, atol=1e-12)


def test_library_enumeration_equals_brute_force(rng):
    """The multiset shortcut with multinomial probabilities gives the same moments as all N^m tuples."""
    G = rng.standard_normal((6, 4))
    for m in (1, 2, 3, 4):
        for replacement in (False, True):
            mean, cov = noise.minibatch_moments(G, m, replacement)
            ref_mean, ref_cov = _brute_force_moments(G, m, replacement)
            np.testing.assert_allclose(mean, ref_mean, rtol=0, atol=1e-13)
            np.testing.assert_allclose(cov, ref_cov, rtol=0, atol=1e-13)


@pytest.mark.parametrize("N,m", [(5, 3), (6, 4), (12, 2), (4, 6)])
def test_enumerate_batches_counts(N, m):
    batches = list(noise.enumerate_batches(N, m, replacement=True))
    assert len(batches) == math.comb(N + m - 1, m)
    assert math.isclose(sum(p for _, p in batches), 1.0, rel_tol=1e-12)
    # each multiset's probability = (number of ordered tuples that sort to it) / N^m, counted by brute force
    counts = {}
    for t in itertools.product(range(N), repeat=m):
        counts[tuple(sorted(t))] = counts.get(tuple(sorted(t)), 0) + 1
    for idx, p in batches:
        assert math.isclose(p, counts[tuple(idx)] / N ** m, rel_tol=1e-12)
    if m <= N:
        subsets = list(noise.enumerate_batches(N, m, replacement=False))
        assert len(subsets) == math.comb(N, m) and len({tuple(s) for s, _ in subsets}) == len(subsets)
        assert math.isclose(sum(p for _, p in subsets), 1.0, rel_tol=1e-12)


def test_finite_population_limits(rng):
    G = rng.standard_normal((9, 3))
    Sigma = noise.gradient_covariance(G)
    np.testing.assert_allclose(Sigma, np.cov(G.T, bias=True), rtol=1e-12, atol=1e-14)
    assert np.all(noise.minibatch_covariance(Sigma, 9, 9, replacement=False) == 0)  # the full batch: no noise
    np.testing.assert_allclose(noise.minibatch_covariance(Sigma, 1, 9, replacement=False), Sigma, rtol=1e-15)
    assert noise.finite_population_factor(3, 9, replacement=False) == pytest.approx(6 / 8, rel=1e-15)
    assert noise.finite_population_factor(30, 9, replacement=True) == 1.0


@pytest.mark.parametrize("case", CASES[:8], ids=lambda c: c.id)
def test_gradient_noise_trace_equals_dense(case):
    """tr Sigma from the per-example gradient norms equals the trace of the dense covariance (float64)."""
    p = case.problem()
    G = p.net.per_example_grads(p.theta, p.X, p.y)
    stats = noise.gradient_noise(p.net, p.theta, p.X, p.y)
    dense = noise.gradient_covariance(G)
    assert stats.trace == pytest.approx(np.trace(dense), rel=1e-9, abs=1e-13)
    assert stats.grad_norm_sq == pytest.approx(float(G.mean(axis=0) @ G.mean(axis=0)), rel=1e-12, abs=1e-15)
    assert stats.num_examples == p.X.shape[0]
    m = max(1, p.X.shape[0] // 3)
    assert stats.minibatch_variance(m) == pytest.approx(
        np.trace(noise.minibatch_covariance(dense, m, p.X.shape[0], replacement=False)), rel=1e-9, abs=1e-13)


@pytest.mark.parametrize("case", SMOOTH[:3], ids=lambda c: c.id)
@pytest.mark.parametrize("replacement", [False, True])
def test_expected_loss_change_error_is_third_order(case, replacement):
    """E L(theta - eta g_B) by enumeration against the second-order prediction: the error falls as eta^3.

    Over eta in [1e-3, 1e-2] the log-log slope of |error| must lie in [2.8, 3.2]: a missing tr(H C) term
    would leave an eta^2 error (slope 2), a wrong |g|^2 term an eta error (slope 1). The errors (~1e-9 and up)
    are far above float64 rounding of the loss (~1e-16).
    """
    p = case.problem()
    n = 10 if not replacement else 7
    X, y = p.X[:n], p.y[:n]
    m = 3
    etas = np.geomspace(1e-3, 1e-2, 5)
    exact = noise.expected_loss_after_step(p.net, p.theta, X, y, m, etas, replacement)
    loss, g = p.net.loss_and_grad(p.theta, X, y)
    H = p.net.hessian(p.theta, X, y)
    C = noise.minibatch_covariance(noise.gradient_covariance(p.net.per_example_grads(p.theta, X, y)), m, n,
                                   replacement)
    error = np.abs(exact - (loss + noise.expected_loss_change(g, H, C, etas)))
    slope = np.polyfit(np.log(etas), np.log(error), 1)[0]
    assert 2.8 <= slope <= 3.2, (slope, error)
    # and the prediction is not trivially close: the second-order term itself is much larger than the error
    second = np.abs(noise.expected_loss_change(g, H, C, etas) + etas * float(g @ g))
    assert np.all(error < 0.1 * second)


def test_expected_loss_after_step_single_eta_matches_array():
    net = MLP([3, 4, 2], activation="tanh")
    theta = net.init(seed=1)
    X = np.random.default_rng(2).standard_normal((6, 3))
    y = np.array([0, 1, 1, 0, 1, 0])
    both = noise.expected_loss_after_step(net, theta, X, y, 2, np.array([0.01, 0.1]), False)
    assert noise.expected_loss_after_step(net, theta, X, y, 2, 0.1, False) == pytest.approx(both[1], rel=1e-14)


@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_gaussian_population_covariance_monte_carlo(with_bias):
    """The Isserlis closed form against 10^6 draws; each entry within 5 standard errors (computed from the draws)."""
    ds = make_linear_gaussian(d=3, noise_std=0.7, seed=4)
    pop = ds.population
    params = np.random.default_rng(5).standard_normal(4 if with_bias else 3)
    X, y = pop.sample(1_000_000, 6)
    G = pop.per_example_gradients(params, X, y)
    D = G - G.mean(axis=0)
    products = D[:, :, None] * D[:, None, :]  # (n, P, P)
    sample = products.mean(axis=0)
    stderr = products.std(axis=0) / math.sqrt(len(G))
    closed = pop.population_gradient_covariance(params)
    assert np.all(np.abs(sample - closed) < 5 * stderr), np.max(np.abs(sample - closed) / stderr)
    np.testing.assert_allclose(closed, closed.T, rtol=0, atol=1e-14)


def test_bad_input():
    with pytest.raises(ValueError, match="m <= N"):
        noise.minibatch_covariance(1.0, 5, N=4, replacement=False)
    with pytest.raises(ValueError, match="needs N"):
        noise.minibatch_covariance(1.0, 2, replacement=False)
    with pytest.raises(ValueError, match="positive integer"):
        noise.finite_population_factor(0, 4, replacement=True)
    with pytest.raises(ValueError, match=r"\(N, P\)"):
        noise.gradient_covariance(np.zeros(5))
    with pytest.raises(ValueError, match="m <= N"):
        list(noise.enumerate_batches(3, 4, replacement=False))
