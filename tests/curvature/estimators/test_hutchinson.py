"""Hutchinson's trace and diagonal estimators: within their stated standard errors of the exact values, and with the
closed-form variance of Rademacher probes."""
import numpy as np
import pytest

from minisgd.curvature import eigen
from minisgd.curvature.estimators import hutchinson_diagonal, hutchinson_trace
from minisgd.errors import ShapeError

from .conftest import exact, spectrum_matrix


def test_trace_within_its_stated_error(matrix):
    tr, _ = exact(matrix)
    est = hutchinson_trace(matrix, 60, seed=4, batch=25)
    assert est.samples.shape == (60,) and est.stderr > 0
    # unbiased, standard error stderr: 4 standard errors fail with probability < 1e-4
    assert abs(est.mean - tr) <= 4 * est.stderr


def test_the_stated_error_is_the_actual_error():
    """Over 200 seeds the RMS error equals the RMS stated error (within 20%), and the sample variance of v^T A v is
    the closed form 2 (|A|_F^2 - sum A_ii^2) for Rademacher probes (within 10%, 8,000 samples: sd ~2%)."""
    A = spectrum_matrix(np.random.default_rng(3).standard_normal(100))
    tr = np.trace(A)
    runs = [hutchinson_trace(A, 40, seed=s) for s in range(200)]
    rms_error = np.sqrt(np.mean([(r.mean - tr) ** 2 for r in runs]))
    rms_stated = np.sqrt(np.mean([r.stderr ** 2 for r in runs]))
    assert rms_error == pytest.approx(rms_stated, rel=0.2)
    samples = np.concatenate([r.samples for r in runs])
    assert samples.var(ddof=1) == pytest.approx(2 * (np.sum(A * A) - np.sum(np.diag(A) ** 2)), rel=0.1)


@pytest.mark.parametrize("distribution", ["rademacher", "normal"])
def test_diagonal_within_its_stated_error(matrix, distribution):
    _, diag = exact(matrix)
    est = hutchinson_diagonal(matrix, 100, distribution=distribution, seed=5)
    z = (est.values - diag) / est.stderr
    # per entry a standard error; the errors' RMS in units of it is ~1 (at most 1.5 allowed) and no entry beyond 5
    assert np.sqrt(np.mean(z ** 2)) < 1.5 and np.abs(z).max() < 5


def test_the_old_entry_point_uses_it(dense_problem):
    net, theta, X, y, H = dense_problem
    est = eigen.hutchinson_trace(net, theta, X, y, num_probes=100, batch=30, seed=2)
    assert abs(est.mean - np.trace(H)) <= 4 * est.stderr


def test_bad_arguments():
    with pytest.raises(ShapeError, match="square"):
        hutchinson_trace(np.ones((3, 4)), 2)
    with pytest.raises(ValueError, match="positive multiple"):
        hutchinson_trace(np.eye(3), 0)
    with pytest.raises(ValueError, match="distribution must be one of"):
        hutchinson_trace(np.eye(3), 2, distribution="uniform")
