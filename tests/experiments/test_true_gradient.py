"""true-gradient --quick: the training-set gradient's distance from the population gradient.

The linear-Gaussian prediction is exact (closed-form population gradient and covariance); the teacher-student
one uses a 262,144-draw estimate whose own error is in the prediction. Means of 60 training sets per N: the
relative standard error of each mean is ~5-20% (d = 20 degrees of freedom or more), so z-scores of a correct
formula stay below 5 and the fitted slope within 0.06 of -1/2; the minibatch comparisons average 15 training
sets, within 25%.
"""
import numpy as np
import pytest

from minisgd.errors import ConfigError
from minisgd import sweep
from minisgd.experiments import true_gradient


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    config = true_gradient.SCENARIO.config(quick=True)
    return sweep.run_sweep(true_gradient.SCENARIO, config, tmp_path_factory.mktemp("tg"), progress=False)


def test_distance_falls_as_inverse_sqrt_n(report):
    assert report.ok and {r["point"]["problem"] for r in report.records} == set(true_gradient.PROBLEMS)
    for r in (r["result"] for r in report.records):
        assert true_gradient.distance_slope(r) == pytest.approx(-0.5, abs=0.06)
        assert np.abs(true_gradient.z_scores(r)).max() < 5
        np.testing.assert_allclose(r["batch_to_true"], r["batch_to_true_predicted"], rtol=0.25)
        np.testing.assert_allclose(r["batch_to_train"], r["batch_to_train_predicted"], rtol=0.25)
        # the full training set is never the true gradient: its distance stays well above rounding
        assert r["measured"][-1] > 1e-6 * r["true_grad_norm_sq"]


def test_linear_gaussian_prediction_is_the_closed_form(report):
    r = next(r["result"] for r in report.records if r["point"]["problem"] == "linear-gaussian")
    assert r["reference_error"] == 0
    np.testing.assert_allclose(r["predicted"], r["trace"] / r["sizes"], rtol=1e-15)
    assert "linear-gaussian" in report.summary and [p.name for p in report.figures] == ["true_gradient.png"]


def test_bad_config():
    with pytest.raises(ConfigError, match="problems must be a non-empty list of values, each one of"):
        true_gradient.SCENARIO.config(problems=("mnist",))
    with pytest.raises(ConfigError, match="min_examples"):
        true_gradient.SCENARIO.config(min_examples=100, max_examples=10)
    assert true_gradient.set_sizes(true_gradient.Config(min_examples=16, max_examples=1000)) == [16, 64, 256, 1000]
