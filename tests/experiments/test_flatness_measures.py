"""The flatness-measures scenario: Kendall's tau and Jiang et al.'s granulated Psi against a brute-force count of
concordant and discordant pairs (an independent O(n^2) route), and the --quick run: every run at the target loss,
positive generalization gaps, the scores recomputed from the records by brute force, and the one ordering quick mode
makes reliable: at equal training loss and learning rate, the larger batch ends sharper (lambda_max), in every seed."""
import itertools
import math

import numpy as np
import pytest

from minisgd.experiments import flatness_measures as fm
from minisgd.experiments.measures import KEYS

from support import needs_mnist


def brute_force_tau_b(x, y):
    """Kendall's tau-b by counting pairs: (C - D) / sqrt((n0 - n1)(n0 - n2)), n1 and n2 the pairs tied in x, y."""
    C = D = tied_x = tied_y = 0
    pairs = list(itertools.combinations(range(len(x)), 2))
    for i, j in pairs:
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        tied_x += dx == 0
        tied_y += dy == 0
        if dx and dy:
            C += dx == dy
            D += dx != dy
    n0 = len(pairs)
    return (C - D) / math.sqrt((n0 - tied_x) * (n0 - tied_y))


@pytest.mark.parametrize("n, ties", [(7, False), (30, False), (30, True), (3, True)])
def test_kendall_tau_against_a_pair_count(n, ties):
    rng = np.random.default_rng(n + ties)
    for _ in range(5):
        x = rng.integers(0, 4, n).astype(float) if ties else rng.standard_normal(n)
        y = 0.5 * x + (rng.integers(0, 3, n) if ties else rng.standard_normal(n))
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        assert fm.kendall_tau(x, y) == pytest.approx(brute_force_tau_b(x, y), abs=1e-12)
    assert fm.kendall_tau([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == -1.0
    assert math.isnan(fm.kendall_tau([1.0], [2.0]))


def brute_force_psi(records, measure, gap, hyperparameter):
    """psi by definition: every pair of records equal in all but ``hyperparameter`` belongs to one group."""
    others = [h for h in ("batch_size", "lr", "seed") if h != hyperparameter]
    keys = sorted({tuple(r["point"][h] for h in others) for r in records})
    taus = []
    for key in keys:
        group = [r["result"] for r in records if tuple(r["point"][h] for h in others) == key]
        if len(group) > 1:
            taus.append(brute_force_tau_b([g[measure] for g in group], [g[gap] for g in group]))
    return float(np.mean(taus))


def fake_records(seed=0):
    rng = np.random.default_rng(seed)
    records = []
    for b, lr, s in itertools.product((32, 128, 512), (0.01, 0.1), (0, 1)):
        result = {k: float(rng.standard_normal()) for k in KEYS}
        result["error_gap"] = 0.01 * np.log2(b) + 0.001 * rng.standard_normal()
        result["loss_gap"] = float(rng.standard_normal())
        records.append({"point": {"batch_size": b, "lr": lr, "seed": s}, "result": result})
    return records


def test_scores_against_brute_force():
    records = fake_records()
    for r in records:  # a measure that follows the gap exactly: tau = psi = 1
        r["result"]["top_eigenvalue"] = r["result"]["error_gap"]
    score = fm.scores(records)
    assert score["top_eigenvalue"]["tau"] == pytest.approx(1.0) and score["top_eigenvalue"]["psi_batch_size"] == 1.0
    for key in ("trace", "fisher_rao"):
        x = [r["result"][key] for r in records]
        g = [r["result"]["error_gap"] for r in records]
        assert score[key]["tau"] == pytest.approx(brute_force_tau_b(x, g), abs=1e-12)
        for h in fm.HYPERPARAMETERS:
            assert score[key][f"psi_{h}"] == pytest.approx(brute_force_psi(records, key, "error_gap", h), abs=1e-12)
        assert score[key]["Psi"] == pytest.approx(np.mean([score[key]["psi_batch_size"], score[key]["psi_lr"]]))


def test_config_checks():
    with pytest.raises(ValueError, match="two values or more"):
        fm.SCENARIO.config(lrs=(0.1,))
    with pytest.raises(ValueError, match="<= n_train"):
        fm.SCENARIO.config(batch_sizes=(32, 4096))
    config = fm.SCENARIO.config()
    assert len(fm.grid(config)) == len(config.batch_sizes) * len(config.lrs) * config.seeds == 75


@needs_mnist
def test_flatness_measures_quick(quick_run):
    config, report = quick_run
    assert report.ok, [f["error"] for f in report.failures]
    records = report.records
    assert len(records) == len(config.batch_sizes) * len(config.lrs) * config.seeds
    for rec in records:
        r = rec["result"]
        assert r["reached_target"] and r["train_loss"] <= config.target_loss * 1.001
        assert r["error_gap"] > 0 and r["loss_gap"] > 0 and 0.5 < r["test_acc"] <= 1
        assert all(np.isfinite(r[k]) for k in KEYS)
    # the scores, recomputed from the records by counting pairs
    for gap in fm.GAPS:
        score = fm.scores(records, gap)
        for key in KEYS:
            x, g = [r["result"][key] for r in records], [r["result"][gap] for r in records]
            assert score[key]["tau"] == pytest.approx(brute_force_tau_b(x, g), abs=1e-12)
            for h in fm.HYPERPARAMETERS:
                assert score[key][f"psi_{h}"] == pytest.approx(brute_force_psi(records, key, gap, h), abs=1e-12)
    # at the same training loss and learning rate, the larger batch is sharper, in every seed
    small, large = min(config.batch_sizes), max(config.batch_sizes)
    for lr, seed in itertools.product(config.lrs, range(config.seed, config.seed + config.seeds)):
        by_batch = {r["point"]["batch_size"]: r["result"] for r in records
                    if r["point"]["lr"] == lr and r["point"]["seed"] == seed}
        assert by_batch[large]["top_eigenvalue"] > by_batch[small]["top_eigenvalue"]
    assert "| measure | rescaling-invariant | τ (error gap)" in report.summary
    assert [p.name for p in report.figures] == ["flatness_measures.png"]
