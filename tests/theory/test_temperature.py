"""minisgd.theory.temperature: the SDE temperature against the covariance of every minibatch (brute-force enumeration) and
against the momentum rule's steady step, its inverse, and the nested variance fractions against least squares."""
import doctest
import itertools

import numpy as np
import pytest

from minisgd.theory import temperature
from minisgd.training.optim import Momentum
from minisgd.theory.temperature import lr_for_temperature, sde_temperature, steps_for_time, variance_fractions


@pytest.mark.parametrize("N, B", [(8, 1), (8, 3), (9, 4), (10, 9)])
def test_temperature_is_the_noise_of_every_minibatch(rng, N, B):
    """eta times the covariance of the minibatch gradient, over all C(N, B) batches drawn without replacement,
    is sde_temperature(eta, B, N) * N / (N - 1) times the per-example covariance Sigma (normalized by N)."""
    grads = rng.normal(size=(N, 3))  # (N, P) per-example gradients
    lr = 0.37
    sigma = np.cov(grads.T, bias=True)  # (P, P)
    means = np.array([grads[list(c)].mean(0) for c in itertools.combinations(range(N), B)])  # (C(N,B), P)
    batch_cov = np.cov(means.T, bias=True)
    np.testing.assert_allclose(means.mean(0), grads.mean(0), rtol=0, atol=1e-13)
    np.testing.assert_allclose(lr * batch_cov, sde_temperature(lr, B, N) * N / (N - 1) * sigma, rtol=1e-12,
                               atol=1e-14)


def test_momentum_multiplies_the_step_by_one_over_one_minus_mu():
    """Under a constant gradient, heavy-ball momentum's steady step is eta / (1 - mu) times the gradient: the same
    temperature as plain SGD at step eta / (1 - mu)."""
    mu, lr, g = 0.9, 0.01, np.array([1.0, -2.0])
    rule = Momentum(mu=mu)
    theta = np.zeros(2)
    state = rule.init(theta)
    for _ in range(600):  # mu^600 ~ 1e-28: the velocity has converged
        before = theta.copy()
        theta, state = rule.update(theta, g, state, lr)
    np.testing.assert_allclose(before - theta, lr / (1 - mu) * g, rtol=1e-12)
    assert sde_temperature(lr, 32, 1024, momentum=mu) == pytest.approx(sde_temperature(lr / (1 - mu), 32, 1024),
                                                                       rel=1e-14)


@pytest.mark.parametrize("N", [None, 1000, 4096])
@pytest.mark.parametrize("mu", [0.0, 0.5, 0.9])
def test_lr_for_temperature_inverts_it(N, mu):
    for B in (1, 16, 128, 999):
        for T in (1e-5, 3e-3, 0.2):
            lr = lr_for_temperature(T, B, N, momentum=mu)
            assert sde_temperature(lr, B, N, momentum=mu) == pytest.approx(T, rel=1e-14)
            # the closed form, term by term
            assert lr == pytest.approx(T * B * (1 - mu) / (1 - B / N if N else 1), rel=1e-14)


def test_equal_temperature_without_the_finite_population_factor_is_eta_over_b():
    assert sde_temperature(0.1, 10) == pytest.approx(0.01, rel=1e-15)
    assert lr_for_temperature(0.01, 20) == pytest.approx(0.2, rel=1e-15)


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="smaller than num_examples = 100"):
        sde_temperature(0.1, 100, 100)
    with pytest.raises(ValueError, match="lr must be a positive"):
        sde_temperature(-0.1, 10)
    with pytest.raises(ValueError, match="temperature must be a positive"):
        lr_for_temperature(float("nan"), 10)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        sde_temperature(0.1, 2.5)
    with pytest.raises(ValueError, match=r"momentum must lie in \[0, 1\)"):
        lr_for_temperature(1e-3, 10, momentum=1.0)
    with pytest.raises(ValueError, match="time and lr must be positive"):
        steps_for_time(10.0, 0.0)


def test_steps_for_time():
    assert steps_for_time(100.0, 0.5) == 200
    assert steps_for_time(100.0, 0.3) == 333  # rounded: 333 steps cover 99.9 units of time
    assert steps_for_time(0.1, 1.0) == 1


def _r_squared(values, labels):
    """R^2 of the least-squares fit of ``values`` on one indicator column per distinct label (a second route to
    the fraction of variance that the labels explain)."""
    distinct = sorted(set(labels), key=repr)
    A = np.array([[lab == d for d in distinct] for lab in labels], dtype=float)  # (n, groups)
    coef, *_ = np.linalg.lstsq(A, values, rcond=None)
    resid = values - A @ coef
    return 1 - resid @ resid / np.sum((values - values.mean()) ** 2)


@pytest.mark.parametrize("balanced", [True, False])
def test_variance_fractions_against_least_squares(rng, balanced):
    temps = np.repeat([1e-3, 2e-3, 4e-3], 12)
    batches = np.tile(np.repeat([16, 64, 256], 4), 3)
    values = 3 * np.log(temps) + 0.2 * np.log(batches) + rng.normal(scale=0.3, size=temps.size)
    if not balanced:
        keep = rng.random(temps.size) > 0.3
        temps, batches, values = temps[keep], batches[keep], values[keep]
    f = variance_fractions(values, temps, batches)
    assert f["between"] + f["within"] + f["residual"] == pytest.approx(1, abs=1e-12)
    assert f["between"] == pytest.approx(_r_squared(values, list(temps)), abs=1e-12)
    assert f["between"] + f["within"] == pytest.approx(_r_squared(values, list(zip(temps, batches))), abs=1e-12)
    assert f["between"] > 0.9 and f["residual"] > 0  # the temperature dominates this made-up measure


def test_variance_fractions_edge_cases():
    same = variance_fractions([2.0, 2.0, 2.0], ["a", "b", "b"], [1, 1, 2])
    assert all(np.isnan(v) for v in same.values())
    exact = variance_fractions([1.0, 1.0, 3.0, 3.0], ["a", "a", "b", "b"], [1, 2, 1, 2])
    assert exact == pytest.approx({"between": 1.0, "within": 0.0, "residual": 0.0}, abs=1e-15)
    with pytest.raises(ValueError, match="one length"):
        variance_fractions([1.0, 2.0], ["a"], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        variance_fractions([1.0, np.nan], ["a", "b"], [1, 2])


def test_docstring_examples():
    result = doctest.testmod(temperature)
    assert result.attempted == 2 and result.failed == 0
