"""Matched noise injection (minisgd.training.injection), against the dense formula ``c G^T (I - 11^T/B) z``
(1e-12), its exact covariance against ``(1/b - 1/B)`` times the sample covariance of the per-example gradients
(1e-12), and by Monte Carlo: the injected noise has that covariance, and a large batch plus the noise has the
covariance of a small batch (tolerance: 5 standard errors of the Monte Carlo mean, estimated from the draws).
"""
import numpy as np
import pytest

import minisgd as ms
from minisgd.training import injection


# ---- weighted gradient ------------------------------------------------------------------------------------------







# ---- random shifts ----------------------------------------------------------------------------------------------









# ---- the proximal step ------------------------------------------------------------------------------------------











# ---- matched noise injection ------------------------------------------------------------------------------------

def noise_problem(N=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, 3))
    y = rng.integers(0, 2, N)
    net = ms.MLP([3, 4, 2], activation="tanh", l2=1e-2)
    return net, net.init(seed=seed), X, y


@pytest.mark.parametrize("B, b", [(10, 2), (25, 5), (7, 6)])
def test_matched_noise_equals_the_dense_formula(B, b):
    net, theta, X, y = noise_problem()
    Xb, yb = X[:B], y[:B]
    G = net.per_example_grads(theta, Xb, yb)  # (B, P)
    c = np.sqrt((1 / b - 1 / B) / (B - 1))
    z = np.random.default_rng([injection.STREAM, 3, 8]).standard_normal(B)  # the documented draw
    centering = np.eye(B) - np.ones((B, B)) / B
    xi = injection.matched_noise(net, theta, Xb, yb, b, seed=[injection.STREAM, 3, 8])
    np.testing.assert_allclose(xi, c * G.T @ centering @ z, rtol=1e-12, atol=1e-14)
    # the exact covariance of the linear map z -> xi is (1/b - 1/B) x the unbiased covariance of the rows of G
    M = c * G.T @ centering  # (P, B)
    np.testing.assert_allclose(M @ M.T, (1 / b - 1 / B) * np.cov(G, rowvar=False), rtol=1e-12, atol=1e-16)
    assert injection.matched_noise_scale(B, B) == 0.0 and injection.matched_noise_scale(B, B + 3) == 0.0


def assert_covariance(samples, mean, target, num_directions=6, seed=0, z=5.0):
    """The second moments of ``samples: (M, P)`` about the known ``mean`` equal ``target: (P, P)`` along the
    trace and random unit directions, within ``z`` standard errors of the Monte Carlo average."""
    D = samples - mean
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((samples.shape[1], num_directions))
    U /= np.linalg.norm(U, axis=0)
    for name, q, expected in [("trace", np.sum(D * D, axis=1), np.trace(target))] + [
            (f"direction {j}", (D @ U[:, j]) ** 2, U[:, j] @ target @ U[:, j]) for j in range(num_directions)]:
        error = q.std(ddof=1) / np.sqrt(len(q))
        assert abs(q.mean() - expected) <= z * error, (name, q.mean(), expected, error)


def test_injected_noise_has_the_stated_covariance_over_draws():
    net, theta, X, y = noise_problem()
    B, b, M = 16, 4, 4000
    Xb, yb = X[:B], y[:B]
    xi = np.stack([injection.matched_noise(net, theta, Xb, yb, b, seed=[injection.STREAM, 0, t]) for t in range(M)])
    G = net.per_example_grads(theta, Xb, yb)
    assert_covariance(xi, 0.0, (1 / b - 1 / B) * np.cov(G, rowvar=False))


@pytest.mark.parametrize("replace", [True, False])
def test_large_batch_plus_noise_has_the_small_batch_covariance(replace):
    """Over random batches of B (with or without replacement) and noise draws, g_B + xi has mean g and the
    covariance of a batch of b drawn the same way: sigma^2 / b with replacement, S^2 (1/b - 1/N) without."""
    net, theta, X, y = noise_problem(N=30, seed=1)
    N, B, b, M = 30, 15, 3, 6000
    G = net.per_example_grads(theta, X, y)  # the population's per-example gradients
    S2 = np.cov(G, rowvar=False)  # 1/(N - 1)
    target = (N - 1) / N * S2 / b if replace else S2 * (1 / b - 1 / N)
    rng = np.random.default_rng(5)
    draws = []
    for t in range(M):
        idx = rng.integers(0, N, B) if replace else rng.choice(N, B, replace=False)
        _, g = net.loss_and_grad(theta, X[idx], y[idx])
        draws.append(g + injection.matched_noise(net, theta, X[idx], y[idx], b, seed=[injection.STREAM, 1, t]))
    assert_covariance(np.stack(draws), G.mean(axis=0), target)


# ---- the trainer's options ----------------------------------------------------------------------------------------









