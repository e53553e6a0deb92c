"""The remedies scenario: each run's training configuration, the gap-closed arithmetic on hand-made records, and the
--quick run, checked on what quick mode makes reliable (2 seeds, 2,048 images, 16 epochs):

* Keskar's observation: the large batch ends sharper (top eigenvalue) and less accurate than the small one, per seed;
* the remedies that restore SB's number of updates (longer, noise) close at least half of the gap, and Goyal's
  linear scaling closes more than Hoffer's square-root scaling (for SGD the linear rule keeps an epoch's drift);
* matched noise injection ends flatter than plain LB, per seed;
* the summary's gap-closed numbers are what the records give, recomputed here.
"""
import math

import numpy as np
import pytest

from minisgd.errors import ConfigError
from minisgd.experiments import remedies
from minisgd.experiments.report import pm
from minisgd.training.schedules import GeometricBatch, WarmStartBatch, Warmup

from support import check_run_folder, needs_mnist


def point(run, **overrides):
    config = remedies.SCENARIO.config(quick=True, **overrides)
    return next(p for p in remedies.grid(config) if p["run"] == run)


def test_grid_pairs_each_remedy_with_its_baseline():
    config = remedies.SCENARIO.config(quick=True)
    assert remedies.runs(config) == ["sb", "lb", "sb-momentum", "lb-momentum", *remedies.REMEDIES]
    assert len(remedies.grid(config)) == 12 * config.seeds
    only = remedies.SCENARIO.config(quick=True, remedies=("noise",))
    assert remedies.runs(only) == ["sb", "lb", "noise"]  # no momentum pair without the lr-scaling remedies
    assert remedies.BASELINE["lr-linear"] == ("sb-momentum", "lb-momentum")
    assert remedies.BASELINE["noise"] == ("sb", "lb")
    with pytest.raises(ConfigError, match="remedies must be a non-empty list of values, each one of 'warm-start'"):
        remedies.SCENARIO.config(remedies=("dropout",))
    with pytest.raises(ValueError, match="small_batch < large_batch"):
        remedies.SCENARIO.config(small_batch=512, large_batch=512)


def test_train_configs_are_the_remedies():
    N, b, B = 2048, 64, 512
    sb_updates = 16 * N // b  # 512
    cfg = {run: remedies.train_config(point(run), N) for run in remedies.runs(remedies.SCENARIO.config(quick=True))}
    assert (cfg["sb"].batch_size, cfg["lb"].batch_size, cfg["sb"].optimizer, cfg["sb"].lr) == (b, B, "adam", 1e-3)
    assert cfg["longer"].max_steps == cfg["noise"].max_steps == sb_updates and cfg["longer"].epochs is None
    assert cfg["noise"].noise_batch == b and cfg["noise"].batch_size == B
    assert cfg["warm-start"].batch_size == WarmStartBatch(b, B, 4)
    assert [cfg["dynamic-sampling"].batch_size(e) for e in range(8)] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert isinstance(cfg["dynamic-sampling"].batch_size, GeometricBatch)
    assert cfg["augmentation"].augment.to_dict() == {"transform": "random_shifts", "max_shift": 1, "image_shape": [14, 14]}
    assert (cfg["proximal"].proximal, cfg["proximal"].proximal_steps) == (1.0, 4)
    warmup_steps = 2 * N // B  # 2 epochs of 4 steps
    for run, factor in (("lr-linear", B / b), ("lr-sqrt", math.sqrt(B / b))):
        lr = cfg[run].lr
        assert isinstance(lr, Warmup) and lr.steps == warmup_steps and cfg[run].optimizer == "momentum"
        assert lr(0) == pytest.approx(0.01 * factor / warmup_steps) and lr(100) == pytest.approx(0.01 * factor)
    assert cfg["lb-momentum"].lr == cfg["sb-momentum"].lr == 0.01


def fake_records(acc, lam=None):
    """Records with the test accuracies ``acc: {run: [per seed]}`` (every other measure 0)."""
    records = []
    for run, values in acc.items():
        for seed, value in enumerate(values):
            result = {k: 0.0 for k in ("train_loss", "train_acc", "test_loss", "steps", "epochs", "top_eigenvalue")}
            result.update(run=run, optimizer="adam", num_params=10, n_train=100, test_acc=value)
            if lam is not None:
                result["top_eigenvalue"] = lam[run][seed]
            records.append({"key": f"{run}-{seed}", "point": {"run": run, "seed": seed}, "result": result})
    return records


def test_gap_closed_is_paired_by_seed():
    acc = {"sb": [0.90, 0.92, 0.91], "lb": [0.80, 0.86, 0.85], "noise": [0.85, 0.92, 0.82],
           "sb-momentum": [0.9, 0.9, 0.9], "lb-momentum": [0.7, 0.8, 0.6], "lr-linear": [0.9, 0.7, 0.75]}
    closed, gain, gap = remedies.gap_closed(fake_records(acc), "noise")
    np.testing.assert_allclose(closed, [0.5, 1.0, -0.5], rtol=1e-12)
    np.testing.assert_allclose(gap, [0.10, 0.06, 0.06], rtol=1e-12)
    assert remedies.pooled(gain, gap) == pytest.approx(0.08 / 0.22)  # mean gain / mean gap
    closed, _, _ = remedies.gap_closed(fake_records(acc), "lr-linear")  # against the momentum pair
    np.testing.assert_allclose(closed, [1.0, -1.0, 0.5], rtol=1e-12)
    config = remedies.SCENARIO.config(remedies=("lr-linear", "noise"), eps=None)
    tables, text = remedies.summarize(config, fake_records(acc))
    row = {r["run"]: r for r in tables["remedies"]}
    assert row["noise"]["gap closed"] == pm([0.5, 1.0, -0.5]) and row["noise"]["vs"] == "sb/lb"
    assert row["noise"]["pooled"] == f"{0.08 / 0.22:.2f}"
    assert row["lr-linear"]["vs"] == "sb-momentum/lb-momentum"
    assert "best first: lr-linear 0.42, noise 0.36" in text


@needs_mnist
def test_remedies_quick(quick_run):
    config, report = quick_run
    check_run_folder(report)
    records = report.records
    assert len(records) == 12 * config.seeds
    value = lambda run, key: np.array([r["result"][key] for r in sorted(remedies.where(records, run=run),  # noqa
                                                                        key=lambda r: r["point"]["seed"])])
    N, b, B = config.n_train, config.small_batch, config.large_batch
    for rec in records:
        r = rec["result"]
        assert 0.5 < r["test_acc"] <= 1 and 0.5 < r["train_acc"] <= 1  # chance is 0.1
        assert r["top_eigenvalue"] > 0 and np.isfinite(r["train_loss"])
    assert np.all(value("sb", "steps") == config.epochs * N // b)
    assert np.all(value("longer", "steps") == value("sb", "steps"))
    assert np.all(value("noise", "steps") == value("sb", "steps"))
    assert np.all(value("lb", "steps") == config.epochs * N // B)
    assert np.all(value("proximal", "gradient_evaluations") == 4 * value("lb", "steps"))
    warm = remedies.where(records, run="warm-start")[0]["result"]["batch_sizes"]
    first = config.warm_start_epochs * N // b
    assert np.all(warm[:first] == b) and np.all(warm[first:] == B)
    # Keskar et al.: LB ends sharper and less accurate than SB, every seed (Adam)
    assert np.all(value("lb", "top_eigenvalue") > value("sb", "top_eigenvalue"))
    assert np.all(value("sb", "test_acc") > value("lb", "test_acc") + 0.01)
    # matched noise gives LB's updates SB's noise: flatter than plain LB, every seed
    assert np.all(value("noise", "top_eigenvalue") < value("lb", "top_eigenvalue"))
    # SB's number of updates closes at least half the gap; the linear rule beats the square root for SGD
    closed = {r: remedies.pooled(*remedies.gap_closed(records, r)[1:]) for r in remedies.REMEDIES}
    assert closed["longer"] > 0.5 and closed["noise"] > 0.5, closed
    assert closed["lr-linear"] > closed["lr-sqrt"], closed
    # the summary's numbers are the records', recomputed
    rows = {row["run"]: row for row in remedies.summarize(config, records)[0]["remedies"]}
    for run in remedies.REMEDIES:
        sb_run, lb_run = remedies.BASELINE[run]
        per_seed = (value(run, "test_acc") - value(lb_run, "test_acc")) / (value(sb_run, "test_acc")
                                                                           - value(lb_run, "test_acc"))
        assert rows[run]["gap closed"] == pm(per_seed)
        assert rows[run]["pooled"] == f"{closed[run]:.2f}"
    assert {p.name for p in report.figures} == {"remedies.png"}
