"""Gaussian mixtures (minisgd.data.mixture): the Bayes error rate by each of its four methods against a simulation
of the Bayes classifier (within 4 standard errors of the simulated rate), the closed forms of the chi CDF, and the
checks on the means."""
import math

import numpy as np
import pytest

from minisgd.data import DataError, GaussianMixture, make_gaussian_mixture
from minisgd.data.mixture import chi_cdf, normal_cdf

Z = 4.0  # standard errors allowed


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
