"""noise-scaling --quick: the measured minibatch noise against the closed forms, and the exact enumeration.

Tolerances: the slopes are fitted to means of 150 draws per batch size (relative standard error ~10% at m = 1,
less above), so a fitted slope lies within 0.05 of -1/2; z-scores of correct formulas stay below 5 over ~50
comparisons; the enumeration is exact, so its errors are rounding (< 1e-12).
"""
import numpy as np
import pytest

from minisgd.errors import ConfigError
from minisgd import sweep
from minisgd.experiments import noise_scaling
from support import needs_mnist


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    config = noise_scaling.SCENARIO.config(quick=True)
    return config, sweep.run_sweep(noise_scaling.SCENARIO, config, tmp_path_factory.mktemp("ns"), progress=False)


@needs_mnist
def test_noise_falls_as_inverse_sqrt_batch(report):
    config, rep = report
    assert rep.ok and len(rep.records) == len(noise_scaling.grid(config))
    for r in (r["result"] for r in rep.records if r["point"]["part"] == "noise"):
        for scheme in ("with", "without"):
            assert noise_scaling.noise_slope(r, scheme) == pytest.approx(-0.5, abs=0.05)
            assert np.abs(noise_scaling.z_scores(r, scheme)).max() < 5
        N = r["num_examples"]
        sizes = list(r["batch_sizes"])
        half = sizes.index(N // 2)
        # the finite-population bend: (N - m)/(N - 1) = 0.5 at m = N/2, 1/16 at m = 15N/16, 0 at m = N
        assert r["measured_without"][half] / r["measured_with"][half] == pytest.approx(0.5, abs=0.1)
        near = sizes.index(N - N // 16)
        assert r["measured_without"][near] / r["measured_with"][near] == pytest.approx(1 / 16, rel=0.35)
        assert r["measured_without"][-1] < 1e-20 * r["trace"]
        assert r["predicted_without"][-1] == 0
        assert r["noise_scale"] == pytest.approx(r["trace"] / r["grad_norm_sq"])


@needs_mnist
def test_enumeration_is_exact_and_loss_error_third_order(report):
    _, rep = report
    for r in (r["result"] for r in rep.records if r["point"]["part"] == "exact"):
        for scheme in ("with", "without"):
            assert r[f"mean_error_{scheme}"].max() < 1e-12
            assert r[f"cov_error_{scheme}"].max() < 1e-12 * max(1.0, r["sigma_max"])
            assert noise_scaling.loss_error_slope(r, scheme) == pytest.approx(3.0, abs=0.2)
            # the second-order prediction beats the first-order one at every step size
            second = np.abs(r[f"loss_exact_{scheme}"] - r[f"loss_predicted_{scheme}"])
            first = np.abs(r[f"loss_exact_{scheme}"] - r[f"loss_first_order_{scheme}"])
            assert np.all(second < first)


@needs_mnist
def test_timing_summary_and_figure(report):
    config, rep = report
    t = next(r["result"] for r in rep.records if r["point"]["part"] == "timing")
    assert np.all(t["seconds"] > 0) and list(t["batch_sizes"])[-1] == config.timing_max_batch
    # the cost grows with m: the largest batch costs more than the smallest (the slope itself is load-dependent)
    assert t["seconds"][-1] > 2 * t["seconds"][0]
    assert "Diminishing returns" in rep.summary and "Exact enumeration" in rep.summary
    assert [p.name for p in rep.figures] == ["noise_scaling.png"]


def test_batch_sizes_and_bad_config():
    assert noise_scaling.batch_sizes(16) == [1, 2, 4, 8, 16]
    assert noise_scaling.batch_sizes(16, near_full=True) == [1, 2, 4, 8, 12, 14, 15, 16]
    sc = noise_scaling.SCENARIO
    with pytest.raises(ConfigError, match="CPU only"):
        sc.config(device="gpu")
    with pytest.raises(ConfigError, match="states must be a non-empty list of values, each one of 'init', 'trained'"):
        sc.config(states=("later",))
    with pytest.raises(ConfigError, match=r"exact_examples must be an integer in \[2, 14\], got 30"):
        sc.config(exact_examples=30)
