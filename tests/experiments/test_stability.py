"""The stability scenario's --quick run, checked against the theory it illustrates (minisgd.theory.linear_stability):

* GD at an interpolating minimizer: on the quadratic model the top component is multiplied by exactly
  |1 - eta lambda_max| per step (to rounding, 1e-12), so it shrinks below eta* = 2 / lambda_max and grows above;
  on the network the same factor shows to 1e-3 relative. Why 1e-3: started delta = 1e-4 from the minimizer, the
  factor differs from the quadratic model's by the third-order term, O(delta |d^3 L| / lambda_max), measured at
  about 1e-5; 1e-3 leaves a 100x margin and still separates 0.96 from 1.04 by a factor of 40.
* SGD: the exact mean-square threshold grows with the batch size and stays below GD's; the operator's radius is
  below 1 below it and above 1 above it; SGD runs started near the minimizer stay at half the threshold and all
  escape at twice it.
* Edge of stability (Cohen et al. 2021): full-batch GD's lambda_max over the last quarter of training within
  [0.9, 1.15] x 2/eta; SGD with B = 8 at the same eta below 0.75 x 2/eta (measured: 1.02 and 0.55).
"""

import numpy as np
import pytest

from minisgd import sweep
from minisgd.experiments import stability
from support import needs_mnist



def test_grid_and_config():
    config = stability.Config()
    points = stability.grid(config)
    assert len(points) == config.seeds * (1 + len(stability.METHODS) * len(config.etas))
    assert len(set(sweep.point_keys(points))) == len(points)
    with pytest.raises(ValueError, match="sgd_batches must not exceed ts_examples"):
        stability.Config(ts_examples=4)


@needs_mnist
def test_gd_threshold_on_the_model_and_the_network(quick_run):
    config, report = quick_run
    assert report.ok, [f["error"] for f in report.failures]
    thr = [r["result"] for r in report.records if r["point"]["part"] == "thresholds"]
    assert len(thr) == config.seeds
    for r in thr:
        assert r["grad_norm"] < 1e-10 and r["loss"] < 1e-18  # a true (interpolating) minimizer
        assert r["lambda_min"] > -1e-10 * r["lambda_max"]  # PSD Hessian there
        assert r["eta_star"] == pytest.approx(2 / r["lambda_max"], rel=1e-12)
        assert [g["ratio"] for g in r["gd"]] == list(config.ratios)
        for g in r["gd"]:
            assert g["predicted"] == pytest.approx(abs(1 - g["ratio"] * 2), rel=1e-12)
            assert g["model_rate"] == pytest.approx(g["predicted"], rel=1e-12)
            assert g["net_rate"] == pytest.approx(g["predicted"], rel=1e-3)
            model_end, net_end = abs(g["model_top"][-1]) / config.delta, g["net_final_distance"]
            if g["ratio"] < 1:
                assert model_end < 1 and net_end < 1  # shrinks
            else:
                assert model_end > 1 and net_end > 1  # grows


@needs_mnist
def test_sgd_mean_square_threshold(quick_run):
    config, report = quick_run
    assert report.ok, [f["error"] for f in report.failures]
    for r in (rec["result"] for rec in report.records if rec["point"]["part"] == "thresholds"):
        assert r["curved_dim"] <= r["num_examples"]  # rank of sum_i J_i^T J_i with K = 1
        by_b = {s["B"]: s["eta_star_B"] for s in r["sgd"]}
        etas = [by_b[b] for b in sorted(by_b)]
        assert np.all(np.diff(etas) > 0) and etas[-1] < r["eta_star"]
        for s in r["sgd"]:
            assert (s["radius"] < 1) == (s["ratio"] < 1)
            if s["ratio"] <= 0.5:
                assert s["escaped"] == 0 and s["median_rate"] < 1
            if s["ratio"] >= 2:
                assert s["escaped"] == s["runs"] and s["median_rate"] > 1


@needs_mnist
def test_edge_of_stability(quick_run):
    config, report = quick_run
    assert report.ok, [f["error"] for f in report.failures]
    eos = [rec for rec in report.records if rec["point"]["part"] == "eos"]
    assert len(eos) == config.seeds * len(stability.METHODS) * len(config.etas)
    for rec in eos:
        p, r = rec["point"], rec["result"]
        assert r["lambda_max"].shape == r["steps"].shape == (config.eos_steps // config.eig_every + 1,)
        ratio = stability.tail_ratio(r, p["eta"], config.tail)
        if p["method"] == "gd":
            assert 0.9 <= ratio <= 1.15, ratio
        else:
            assert ratio < 0.75, ratio
    assert "Edge of stability" in report.summary and "η*_B (exact)" in report.summary
    assert {p.name for p in report.figures} == {"thresholds.png", "edge_of_stability.png"}
