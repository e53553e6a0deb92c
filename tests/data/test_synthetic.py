"""Synthetic problems (minisgd.data.synthetic): closed forms against Monte Carlo, seeded samplers, two spirals.

Monte Carlo tolerances: an estimate from n independent draws is within 4 standard errors of its mean with
probability > 0.9999 (Gaussian limit); the seeds are fixed, so each test is deterministic, and 4 SE says how
far off a correct implementation could plausibly land with other seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from minisgd.data import (DataError, estimate_mean, make_gaussian_mixture,
                          make_linear_gaussian, make_two_spirals)

Z = 4.0  # standard errors allowed


# ---- linear-Gaussian -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def linear():
    return make_linear_gaussian(d=5, noise_std=0.7, condition_number=20.0, n_train=200, seed=11)


def test_linear_gaussian_population_gradient_against_monte_carlo(linear):
    pop = linear.population
    w = pop.w_star + np.random.default_rng(0).standard_normal(5)
    exact = pop.population_gradient(w)
    np.testing.assert_allclose(exact, pop.Sigma @ (w - pop.w_star), rtol=1e-15)
    n = 400_000
    est = estimate_mean(pop, lambda X, y: pop.per_example_gradients(w, X, y), n, rng=1)
    assert np.all(np.abs(est.value - exact) <= Z * est.stderr), (est.value - exact) / est.stderr
    # The same, jointly: Hotelling's n (g - G)^T S^-1 (g - G) is chi-square with d = 5 degrees of freedom;
    # 30 is beyond its 0.99999 quantile (28.4).
    X, y = pop.sample(n, 2)
    G = pop.per_example_gradients(w, X, y)
    diff = G.mean(axis=0) - exact
    assert n * diff @ np.linalg.solve(np.cov(G.T), diff) < 30.0


def test_linear_gaussian_population_loss_against_monte_carlo(linear):
    pop = linear.population
    wb = np.append(pop.w_star + 0.3, -0.4)  # with a bias
    est = estimate_mean(pop, lambda X, y: 0.5 * (X @ wb[:5] + wb[5] - y[:, 0]) ** 2, 400_000, rng=3)
    assert abs(est.value - pop.population_loss(wb)) <= Z * est.stderr
    assert pop.population_loss(pop.w_star) == pytest.approx(0.7**2 / 2, rel=1e-15)  # the noise floor
    np.testing.assert_allclose(pop.population_gradient(wb)[5], -0.4)
    with pytest.raises(DataError, match=r"params must have shape \(5,\) or \(6,\)"):
        pop.population_loss(np.zeros(7))


def test_linear_gaussian_matches_the_mlp(linear):
    """The closed form is what MLP([d, 1], identity, mse) computes in expectation, bias included."""
    from minisgd.core.mlp import MLP

    pop = linear.population
    net = MLP([5, 1], activation="identity", loss="mse")
    theta = np.append(pop.w_star + 0.5, 0.25)  # layout [W[:, 0], b]
    X, y = pop.sample(200_000, 4)
    G = np.asarray(net.per_example_grads(theta, X, y))  # (n, 6)
    np.testing.assert_allclose(G, pop.per_example_gradients(theta, X, y), rtol=1e-10, atol=1e-12)
    se = G.std(axis=0, ddof=1) / math.sqrt(len(G))
    assert np.all(np.abs(G.mean(axis=0) - pop.population_gradient(theta)) <= Z * se)
    losses = np.asarray(net.per_example_losses(theta, X, y))
    assert abs(losses.mean() - pop.population_loss(theta)) <= Z * losses.std(ddof=1) / math.sqrt(len(losses))
    np.testing.assert_allclose(pop.population_hessian(with_bias=True)[:5, :5], pop.Sigma)


def test_linear_gaussian_dataset(linear):
    assert linear.task == "regression" and linear.y_train.shape == (200, 1) and linear.output_dim == 1
    lam = np.linalg.eigvalsh(linear.population.Sigma)
    np.testing.assert_allclose([lam.max(), lam.min()], [1.0, 1 / 20], rtol=1e-12)  # condition number 20
    again = make_linear_gaussian(d=5, noise_std=0.7, condition_number=20.0, n_train=300, seed=11)
    np.testing.assert_array_equal(again.X_test, linear.X_test)  # test set independent of n_train
    np.testing.assert_array_equal(again.population.w_star, linear.population.w_star)


















def test_samplers_are_seeded():
    for ds in (make_linear_gaussian(seed=3), make_two_spirals(seed=3),
               make_gaussian_mixture(K=3, d=4, seed=3)):
        X1, y1 = ds.population.sample(50, 9)
        X2, y2 = ds.population.sample(50, np.random.default_rng(9))
        np.testing.assert_array_equal(X1, X2)
        np.testing.assert_array_equal(y1, y2)
        assert ds.preprocessing[0]["op"] == "synthetic"
        with pytest.raises(DataError, match="irreproducible"):
            ds.population.sample(5, None)


# ---- two spirals ---------------------------------------------------------------------------------------
def test_two_spirals_geometry():
    ds = make_two_spirals(n_train=2000, noise=0.0, turns=1.0, seed=0)
    X, y = ds.X_train, ds.y_train
    assert X.shape == (2000, 2) and set(np.unique(y)) == {0, 1}
    # Noiseless: the radius is t and the angle 2 pi t (class 1 rotated by pi), so the points lie on the curve.
    r = np.linalg.norm(X, axis=1)
    angle = np.where(y == 1, np.arctan2(-X[:, 1], -X[:, 0]), np.arctan2(X[:, 1], X[:, 0]))
    np.testing.assert_allclose(np.cos(angle), np.cos(2 * np.pi * r), atol=1e-9)
    assert abs(np.mean(y) - 0.5) <= Z * 0.5 / math.sqrt(2000)




