"""The noise-temperature scenario: its grid and budgets, and its --quick run checked against the SDE view of SGD
(Jastrzebski et al. 2017, Smith and Le 2018): the sharpness falls as the temperature eta / B (1 - B/N) rises, at
every batch size, and at one temperature the batch size barely matters. MNIST comes from $MINISGD_DATA."""
import math

import numpy as np
import pytest

from minisgd.errors import ConfigError
from minisgd import sweep
from minisgd import experiments
from minisgd.experiments import noise_temperature as nt
from minisgd.theory.temperature import sde_temperature

from support import needs_mnist


def test_grid_and_full_mode():
    sc = experiments.get("noise-temperature")
    full, quick = sc.config(), sc.config(quick=True)
    assert (full.n_train, full.pool, full.hidden, full.seeds) == (4096, 4, (64,), 3)
    assert full.temperatures[-1] / full.temperatures[0] == pytest.approx(16)  # the brief's 10-30x span
    assert full.protocols == ("time", "epochs")
    for config in (full, quick):
        points = sc.grid(config)
        assert len(points) == len(config.protocols) * len(config.temperatures) * len(config.batch_sizes) \
            * config.seeds
        assert len(set(sweep.point_keys(points))) == len(points)
    with pytest.raises(ConfigError, match="protocols must be a non-empty list of values, each one of 'time', 'epochs'"):
        sc.config(protocols=("steps",))
    with pytest.raises(ValueError, match="the full batch has no noise"):
        sc.config(batch_sizes=(16, 4096))


def test_seed_means():
    values = np.array([[[1.0, 3.0], [np.nan, 5.0]], [[np.nan, np.nan], [2.0, 2.0]]])  # (T=2, B=2, S=2)
    np.testing.assert_array_equal(nt.seed_means(values), [[2.0, 5.0], [np.nan, 2.0]])


def test_flags():
    ok = {"diverged": False, "train_loss": 0.1, "initial_loss": 2.3, "stability": 0.3}
    assert nt.in_sde_regime(ok, 0.5) and nt.flags(ok, 0.5) == ""
    assert not nt.in_sde_regime({**ok, "stability": 0.7}, 0.5) and nt.flags({**ok, "stability": 0.7}, 0.5) == \
        "ηλ/2 = 0.70 > 0.5"
    assert nt.flags({**ok, "diverged": True, "stability": math.nan}, 0.5) == "diverged"
    dead = {**ok, "train_loss": 2.30}  # at chance: log 10
    assert not nt.in_sde_regime(dead, 0.5) and nt.flags(dead, 0.5) == "collapsed"
    assert nt.collapsed(1.2, 2.3) and not nt.collapsed(1.1, 2.3)


@needs_mnist
def test_quick_run_budgets_and_training(quick_run):
    config, report = quick_run
    assert report.ok, [f["error"] for f in report.failures]
    assert len(report.records) == len(nt.grid(config))
    for rec in report.records:
        p, r = rec["point"], rec["result"]
        N, B = config.n_train, p["batch_size"]
        # the step size gives the point's temperature, and the run covers the SDE time eta * steps
        assert r["temperature_check"] == pytest.approx(p["temperature"], rel=1e-12)
        assert r["lr"] == pytest.approx(p["temperature"] * B / (1 - B / N), rel=1e-12)
        assert sde_temperature(r["lr"], B, N) == pytest.approx(p["temperature"], rel=1e-12)
        assert abs(r["sde_time"] - config.time) <= r["lr"] / 2
        assert r["epochs"] == pytest.approx(r["steps"] * B / N, rel=1e-12)
        # every quick run learns (chance is 10%) and none diverges or collapses
        assert not r["diverged"] and not r["collapsed"]
        assert r["train_loss"] < 0.5 * r["initial_loss"] and r["test_acc"] > 0.8
        assert r["top_eigenvalue"] > 0 and r["trace"] > r["top_eigenvalue"]
        # where SGD can stay: below the linear-stability edge of gradient descent, eta lambda_max < 2
        assert r["stability"] < 1
    # at one temperature the equal-time budget is the same number of epochs up to the factor 1 - B/N
    for t in config.temperatures:
        rs = [rec["result"] for rec in report.records if rec["point"]["temperature"] == t]
        scaled = [r["epochs"] / (1 - rec["point"]["batch_size"] / config.n_train)
                  for r, rec in zip(rs, [x for x in report.records if x["point"]["temperature"] == t])]
        assert max(scaled) == pytest.approx(min(scaled), rel=5e-3)


@needs_mnist
def test_quick_run_sharpness_is_set_by_the_temperature(quick_run):
    """The SDE view's predictions, where quick mode makes them reliable (2 seeds, 3 temperatures over 9x, B = 16
    and 64; the seeds differ by about 10% in lambda_max, the temperatures by about 50%)."""
    config, report = quick_run
    # lambda_max (seed mean) falls with every step up in temperature, at every batch size
    assert all(nt.monotone_in_temperature(config, report.records, "time").values())
    assert all(nt.monotone_in_temperature(config, report.records, "time", key="trace").values())
    for key in ("top_eigenvalue", "trace"):
        s = nt.scaling_statistics(config, report.records, "time", key, 1.0, log=True, sde_only=True)
        # the temperature explains most of the variance; the batch size at one temperature little of it
        assert s["between"] > 0.6 and s["within"] < 0.1 and s["between"] > 10 * s["within"]
        assert s["tau_T"] < -0.5
        # log measure ~ a log T + b log B: clearly falling in T, and |b| small against |a| (the SDE view: b = 0)
        assert s["slope_T"] < -0.08 and abs(s["slope_B"]) < 0.25 * abs(s["slope_T"])
    # within a temperature, the spread of log lambda_max over B is smaller than the step to the next temperature
    lam = nt.seed_means(nt.cells(config, report.records, "time", "top_eigenvalue", sde_only=True))  # (T, B)
    log_lam = np.log(lam)
    within = np.nanmax(np.nanmax(log_lam, axis=1) - np.nanmin(log_lam, axis=1))
    between = np.min(-np.diff(np.nanmean(log_lam, axis=1)))
    assert within < between


@needs_mnist
def test_quick_run_summary_and_figure(quick_run):
    _, report = quick_run
    assert "| T | B | η | steps | epochs" in report.summary
    assert "| measure | runs | between T | B within T | seeds" in report.summary
    assert "λ_max falls with every step up in T (all trained runs): 2/2 batch sizes" in report.summary
    assert [p.name for p in report.figures] == ["temperature_time.png"]
    assert report.figures[0].read_bytes()[:4] == b"\x89PNG"
