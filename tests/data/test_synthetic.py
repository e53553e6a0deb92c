"""Synthetic problems: closed forms against Monte Carlo, Bayes errors against simulation, samplers.

Monte Carlo tolerances: an estimate from n independent draws is within 4 standard errors of its mean with
probability > 0.9999 (Gaussian limit); the seeds are fixed, so each test is deterministic, and 4 SE says how
far off a correct implementation could plausibly land with other seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from minisgd.data import (Dataset, DataError, GaussianMixture, estimate_mean, make_gaussian_mixture,
                          make_linear_gaussian, make_two_spirals)
from minisgd.data.mixture import chi_cdf, normal_cdf

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


# ---- Gaussian mixture ------------------------------------------------------------------------------------
def simulated_error(pop: GaussianMixture, n: int, seed: int) -> tuple[float, float]:
    X, y = pop.sample(n, seed)
    p = float(np.mean(pop.bayes_classifier(X) != y))
    return p, math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize(
    "K, d, method",
    [(2, 3, "closed form"), (3, 1, "exact 1-d"), (3, 4, "quadrature"), (4, 6, "monte carlo")],
)
def test_bayes_error_against_simulation(K, d, method):
    pop = make_gaussian_mixture(K=K, d=d, separation=3.0, seed=K * 10 + d).population
    exact = pop.bayes_error(n_directions=200_000, rng=5)
    assert exact.method == method
    p, se = simulated_error(pop, 400_000, seed=6)
    assert abs(exact.value - p) <= Z * math.hypot(se, exact.stderr), (exact, p, se)


def test_bayes_error_two_classes_closed_form():
    pop = GaussianMixture([[0.0, 0.0], [3.0, 4.0]], sigma=2.0)  # distance 5, so Phi(-5/4)
    assert pop.bayes_error().value == pytest.approx(0.10564977366685535, rel=1e-12)
    ds = make_gaussian_mixture(K=2, d=7, separation=2.0, sigma=1.0, seed=0)
    assert ds.population.bayes_error().value == pytest.approx(float(normal_cdf(-1.0)), rel=1e-12)


def test_bayes_classifier_is_nearest_mean():
    pop = GaussianMixture(np.random.default_rng(0).standard_normal((5, 3)), sigma=0.5)
    X, _ = pop.sample(1000, 1)
    nearest = np.argmin(((X[:, None, :] - pop.means[None]) ** 2).sum(axis=2), axis=1)
    np.testing.assert_array_equal(pop.bayes_classifier(X), nearest)


def test_chi_cdf_closed_forms():
    R = np.array([0.0, 0.3, 1.0, 2.5, 6.0, np.inf])
    np.testing.assert_allclose(chi_cdf(R, 1), [0, math.erf(0.3 / math.sqrt(2)), math.erf(1 / math.sqrt(2)),
                                             math.erf(2.5 / math.sqrt(2)), math.erf(6 / math.sqrt(2)), 1], rtol=1e-14)
    np.testing.assert_allclose(chi_cdf(R, 2), 1 - np.exp(-R**2 / 2), rtol=1e-14)
    stats = pytest.importorskip("scipy.stats")  # an independent implementation, when present
    for r in range(1, 9):
        np.testing.assert_allclose(chi_cdf(R, r), stats.chi.cdf(R, r), rtol=1e-12, atol=1e-15)


def test_mixture_rejects_bad_means():
    with pytest.raises(DataError, match="share a mean"):
        GaussianMixture([[0.0, 1.0], [0.0, 1.0]])
    with pytest.raises(DataError, match="K >= 2"):
        GaussianMixture([[0.0, 1.0]])






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


# ---- two spirals and the dataset object ------------------------------------------------------------------
def test_two_spirals_geometry():
    ds = make_two_spirals(n_train=2000, noise=0.0, turns=1.0, seed=0)
    X, y = ds.X_train, ds.y_train
    assert X.shape == (2000, 2) and set(np.unique(y)) == {0, 1}
    # Noiseless: the radius is t and the angle 2 pi t (class 1 rotated by pi), so the points lie on the curve.
    r = np.linalg.norm(X, axis=1)
    angle = np.where(y == 1, np.arctan2(-X[:, 1], -X[:, 0]), np.arctan2(X[:, 1], X[:, 0]))
    np.testing.assert_allclose(np.cos(angle), np.cos(2 * np.pi * r), atol=1e-9)
    assert abs(np.mean(y) - 0.5) <= Z * 0.5 / math.sqrt(2000)


def test_dataset_checks_and_description():
    X = np.zeros((4, 3))
    with pytest.raises(DataError, match=r"labels y_train span \[0, 5\], outside \[0, 3\)"):
        Dataset("bad", X, np.array([0, 1, 2, 5]), X, np.zeros(4, dtype=np.int64), num_classes=3)
    with pytest.raises(DataError, match="X_test has 2 inputs"):
        Dataset("bad", X, np.zeros(4, dtype=np.int64), np.zeros((4, 2)), np.zeros(4, dtype=np.int64), num_classes=3)
    with pytest.raises(DataError, match="regression targets y_train must be"):
        Dataset("bad", X, np.zeros(4), X, np.zeros((4, 1)), task="regression")
    with pytest.raises(DataError, match="2-D floating"):
        Dataset("bad", X.astype(np.uint8), np.zeros(4, dtype=np.int64), X, np.zeros(4, dtype=np.int64), num_classes=3)
    ds = make_gaussian_mixture(seed=0)
    text = ds.describe()
    assert "gaussian-mixture: classification, 2 classes, d=2" in text and "GaussianMixture" in text
    assert ds.metadata()["has_population"] is True
    moved = ds.to("cpu")
    assert moved.device == "cpu" and isinstance(moved.X_train, np.ndarray)
    np.testing.assert_array_equal(moved.X_train, ds.X_train)


@pytest.mark.gpu  # runs everywhere: on a GPU it moves, elsewhere it explains
def test_to_gpu_moves_or_explains():
    from minisgd.errors import BackendUnavailableError

    ds = make_two_spirals(n_train=10, n_test=5, seed=0)
    try:
        import cupy

        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, or no driver
        has_gpu = False
    if not has_gpu:
        with pytest.raises(BackendUnavailableError, match=r"minisgd\[gpu\]"):
            ds.to("gpu")
        return
    on_gpu = ds.to("gpu")
    assert on_gpu.device == "gpu" and type(on_gpu.X_train).__module__.startswith("cupy")
    back = on_gpu.to("cpu")
    np.testing.assert_array_equal(back.X_train, ds.X_train)
    np.testing.assert_array_equal(back.y_train, ds.y_train)
