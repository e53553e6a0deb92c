"""The reparametrization scenario's --quick run, checked against what theory fixes: the rescaled nets compute the
same function (outputs to 1e-12 of their size, identical accuracy), lambda_max moves by more than 100x across
alpha = 1e-3 .. 1e3 and stays within Ostrowski's bounds, the trace follows tr(D^-1 H D^-1) exactly, and the
measures that are invariant in theory move by less than INVARIANCE_RTOL (1e-6) while the others move by decades."""

import numpy as np
import pytest

from minisgd.errors import ConfigError
from minisgd.experiments import reparametrization as rp
from minisgd.experiments.measures import INVARIANT, KEYS

from support import needs_mnist


def test_config_checks():
    with pytest.raises(ConfigError, match="activation must be one of 'relu', 'identity'"):
        rp.SCENARIO.config(activation="tanh")
    with pytest.raises(ValueError, match="include 1.0"):
        rp.SCENARIO.config(alphas=(0.1, 10.0))
    points = rp.grid(rp.SCENARIO.config(quick=True))
    assert [(p["regime"], p["batch_size"]) for p in points] == [("sb", 32), ("lb", 256)]


def test_verdict():
    assert rp.verdict(np.array([[1.0, 1 + 1e-9, 1 - 1e-8]])).startswith("invariant")
    assert rp.verdict(np.array([[1e3, 1.0, 1e-3]])) == "moves: 6.0 orders of magnitude"


@needs_mnist
def test_reparametrization_quick(quick_run):
    config, report = quick_run
    assert report.ok, [f["error"] for f in report.failures]
    assert len(report.records) == 2 * config.seeds
    alphas = list(config.alphas)
    i1 = alphas.index(1.0)
    for rec in report.records:
        r = rec["result"]
        assert r["reached_target"]
        # the same function: outputs to 1e-12 of their size, losses to 1e-12, accuracy identical
        assert np.all(r["output_diff"] <= 1e-12 * r["output_scale"])
        np.testing.assert_allclose(r["test_loss"], r["test_loss"][i1], rtol=1e-12)
        np.testing.assert_allclose(r["train_loss"], r["train_loss"][i1], rtol=1e-12)
        assert np.all(r["test_acc"] == r["test_acc"][i1]) and 0.5 < r["test_acc"][i1] <= 1
        # lambda_max moves by more than 100x across 1e-3 .. 1e3, inside Ostrowski's interval
        lam = r["top_eigenvalue"]
        assert lam.max() / lam.min() > 100
        lo, hi = r["lambda_bounds"][:, 0], r["lambda_bounds"][:, 1]
        assert np.all((lam >= lo * (1 - 1e-6)) & (lam <= hi * (1 + 1e-6)))
        np.testing.assert_allclose(r["trace"], r["trace_law"], rtol=1e-8)  # tr(D^-1 H D^-1), exactly
        for key in KEYS:
            ratio = r[key] / r[key][i1]
            if INVARIANT[key]:
                assert np.max(np.abs(ratio - 1)) <= rp.INVARIANCE_RTOL, key
            else:
                assert ratio.max() / ratio.min() > 10, key
    checks = rp.chain_rule_checks(report.records)
    assert checks["within_bounds"] == checks["checked"] and checks["trace_law_error"] < 1e-8
    for key in KEYS:  # a rescaled SB is never sharper than LB by an invariant measure unless it already was
        flips = rp.ranking_flips(report.records)[key]
        if INVARIANT[key]:
            assert flips["flipped"] == 0
    assert flips["seeds"] == config.seeds
    assert "| measure | invariant by theory |" in report.summary and "Ostrowski" in report.summary
    assert [p.name for p in report.figures] == ["reparametrization.png"]
