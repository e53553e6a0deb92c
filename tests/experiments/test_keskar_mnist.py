"""keskar-mnist: the --quick run shows the paper's finding (both regimes trained to the same training loss, LB
sharper by the top eigenvalue and the epsilon-sharpness, SB testing higher, in each seed), every measure finite, the
parametric plot's shape; and what the summary says, from made-up records."""
import numpy as np
import pytest

from minisgd.experiments import keskar_mnist
from minisgd.training.checkpoint import load_state
from support import check_run_folder, needs_mnist


@needs_mnist
def test_keskar_mnist_quick(quick_run):
    config, report = quick_run
    check_run_folder(report)
    assert config.optimizers == ("adam",) and config.target_loss == 1e-3
    assert len(report.records) == config.seeds
    eps_keys = [f"{space}_{eps:g}" for space in ("full", "subspace") for eps in config.eps]
    full = f"full_{config.eps[0]:g}"
    for rec in report.records:
        r = rec["result"]
        assert r["lb"]["batch_size"] == round(0.1 * config.n_train) and r["sb"]["batch_size"] == config.small_batch
        for regime in ("sb", "lb"):
            m = r[regime]
            # trained to a minimizer: stopped by the target loss, not by the cap
            assert m["stop_reason"] == "target_loss" and m["epochs"] < config.epochs
            assert m["train_loss"] <= config.target_loss and m["train_acc"] >= 0.99
            assert m["steps"] == m["epochs"] * -(-config.n_train // m["batch_size"])
            assert 0.9 < m["test_acc"] <= 1  # chance is 0.1
            assert m["top_eigenvalue"] > 0 and m["trace"] > m["top_eigenvalue"]
            for key in eps_keys:
                assert np.isfinite(m[key]) and m[key] >= 0
            assert m[full] >= m[f"full_{config.eps[1]:g}"]  # a larger box rises higher
        par = r["parametric"]
        assert par["alphas"].shape == par["train_loss"].shape == par["test_accuracy"].shape == (config.alphas,)
        assert np.all((par["test_accuracy"] >= 0) & (par["test_accuracy"] <= 1))
        i0 = int(np.argmin(np.abs(par["alphas"])))
        assert par["test_accuracy"][i0] == pytest.approx(r["sb"]["test_acc"], abs=2e-3)  # alpha = 0 is SB (float32)
        # the finding, in each seed (the runs are deterministic: seeded, one BLAS thread per worker)
        assert r["lb"]["top_eigenvalue"] > r["sb"]["top_eigenvalue"] and r["lb"][full] > r["sb"][full]
        assert r["sb"]["test_acc"] > r["lb"]["test_acc"]
        a, loss = par["alphas"], par["train_loss"]
        beyond_lb = loss[np.argmin(np.abs(a - 1.5))] - loss[np.argmin(np.abs(a - 1))]
        beyond_sb = loss[np.argmin(np.abs(a + 0.5))] - loss[np.argmin(np.abs(a))]
        assert beyond_lb > beyond_sb
    for table in ("Accuracy (layout of the paper's Table 2)", "Epsilon-sharpness", "Top Hessian eigenvalue",
                  "Each seed"):
        assert table in report.summary
    assert f"in each of the {config.seeds} seeds LB is sharper" in report.summary
    assert "205.14 ± 69.52" in report.summary and "Tables 2-4" in report.summary
    assert {p.name for p in report.figures} == {"parametric.png", "sb_vs_lb.png"}


# ---- the summary's words, from made-up records -----------------------------------------------------------------

def _record(seed, sb, lb, rise_sb=0.01, rise_lb=0.1):
    """A finished point whose SB and LB results are ``sb`` / ``lb`` (dicts of overrides) and whose training loss
    changes by ``rise_sb`` / ``rise_lb`` half a segment beyond SB / LB."""
    config = keskar_mnist.SCENARIO.config(quick=True)
    base = {"epochs": 30, "steps": 300, "stop_reason": "target_loss", "train_loss": 1e-3, "train_acc": 1.0,
            "test_acc": 0.95, "top_eigenvalue": 1.0, "trace": 5.0, "batch_size": 32,
            **{f"{s}_{e:g}": 1.0 for s in ("full", "subspace") for e in config.eps}}
    alphas = np.linspace(-1, 2, 13)
    loss = np.full(13, 1e-3)
    loss[np.argmin(np.abs(alphas + 0.5))] += rise_sb
    loss[np.argmin(np.abs(alphas - 1.5))] += rise_lb
    parametric = {"alphas": alphas, "train_loss": loss, "test_loss": loss, "train_accuracy": 1 - loss,
                  "test_accuracy": 1 - loss}
    return {"key": f"seed={seed}", "point": {"optimizer": "adam", "seed": seed},
            "result": {"num_params": 43018, "n_train": 6000, "sb": {**base, **sb},
                       "lb": {**base, "batch_size": 600, **lb}, "parametric": parametric}}


def test_summary_says_where_the_finding_holds_and_where_not():
    config = keskar_mnist.SCENARIO.config(quick=True)
    sharp = {"top_eigenvalue": 2.0, "full_0.001": 3.0, "test_acc": 0.94}
    holds = [_record(0, {}, sharp), _record(1, {}, sharp)]
    _, text = keskar_mnist.summarize(config, holds)
    assert "in each of the 2 seeds LB is sharper by the top eigenvalue and by epsilon-sharpness" in text
    assert "training loss <= 0.001 in both" in text and "the paper's finding." in text
    assert "SB 30 ± 0, LB 30 ± 0 epochs" in text
    _, text = keskar_mnist.summarize(config, [holds[0], _record(1, {}, {**sharp, "top_eigenvalue": 0.5})])
    assert ("in 1 of the 2 seeds only (not in seed 1: LB is not sharper by the top eigenvalue): here the paper's "
            "finding does not hold in every seed") in text
    _, text = keskar_mnist.summarize(config, [holds[0], _record(1, {}, {**sharp, "full_0.001": 0.5, "test_acc": 0.96})])
    assert ("(not in seed 1: LB is not sharper by epsilon-sharpness, SB does not test higher)") in text


def test_summary_flags_an_lb_that_is_not_at_a_minimizer():
    config = keskar_mnist.SCENARIO.config(quick=True)
    _, text = keskar_mnist.summarize(config, [_record(0, {}, {"train_acc": 0.944})])
    assert "LB reaches only 94.4% training accuracy" in text and "not at a minimizer" in text
    assert "the paper's finding" not in text.split("The paper's F1 rows")[0]


def test_parametric_line_never_rises_by_a_negative_amount():
    config = keskar_mnist.SCENARIO.config(quick=True)
    _, text = keskar_mnist.summarize(config, [_record(0, {}, {}, rise_sb=-0.02, rise_lb=0.05)])
    assert "rises by -" not in text
    assert "beyond SB (alpha = -0.50) the training loss falls by 0.02" in text
    assert "beyond LB (alpha = 1.50) it rises by 0.05" in text and "the LB side is the steep one" in text


def test_paper_values_are_the_papers():
    """The F1 rows of Tables 2-4 as printed in Keskar et al. 2017 (../shared/notes/keskar-paper.md)."""
    line = keskar_mnist._paper_line()
    for value in ("99.66 ± 0.05", "99.92 ± 0.01", "98.03 ± 0.07", "97.81 ± 0.07", "1.23 ± 0.83", "205.14 ± 69.52",
                  "0.61 ± 0.27", "42.90 ± 17.14", "0.11 ± 0.00", "9.22 ± 0.56", "0.05 ± 0.00", "9.17 ± 0.14"):
        assert value in line
    assert "232.25" not in line and "ICLR 2017" in line


def test_config_rules_between_keys():
    sc = keskar_mnist.SCENARIO
    with pytest.raises(ValueError, match="decay_epochs needs a fixed budget"):
        sc.config(quick=True, decay_epochs=2)
    with pytest.raises(ValueError, match="small_batch must be at most n_train = 6000"):
        sc.config(quick=True, small_batch=8000)
    with pytest.raises(ValueError, match="alpha_min must be below alpha_max"):
        sc.config(alpha_min=2.0, alpha_max=1.0)
    assert sc.config(alpha_min=-3.0).alpha_min == -3.0  # any finite value


def test_f1_is_five_batch_normalized_layers_of_512():
    config = keskar_mnist.SCENARIO.config(quick=True, network="f1")
    point = keskar_mnist.grid(config)[0]
    assert point["hidden"] == (512,) * 5 and point["batch_norm"]
    with pytest.raises(Exception, match="network"):
        keskar_mnist.SCENARIO.config(quick=True, network="f2")


@needs_mnist
def test_a_batch_normalized_point_trains_to_a_plateau_and_measures_in_eval_mode():
    """The F1 code path (BN training, eval-mode measurements, recalibrated parametric plot) on a small BN net."""
    config = keskar_mnist.SCENARIO.config(quick=True, batch_norm=True, hidden=(32, 32), n_train=600, epochs=12,
                                          target_loss=None, plateau_patience=2, small_batch=32,
                                          sharpness_examples=200, subspace_dim=5, alphas=3,
                                          interp_train_examples=300, seeds=1, sharpness_maxiter=3)
    r = keskar_mnist.run_point(keskar_mnist.grid(config)[0])
    assert r["num_params"] == 197 * 32 + 33 * 32 + 33 * 10 + 4 * 32
    for regime in ("sb", "lb"):
        m = r[regime]
        assert m["stop_reason"] in ("plateau", "epochs") and m["train_acc"] > 0.7 and 0.6 < m["test_acc"] <= 1
        assert m["top_eigenvalue"] > 0 and np.isfinite(m["full_0.001"]) and m["full_0.001"] >= 0
    assert r["sb"]["epochs"] <= 12 and r["lb"]["epochs"] <= 12
    par = r["parametric"]
    i0 = int(np.argmin(np.abs(par["alphas"])))
    # at alpha = 0 the statistics are recomputed on a training subset, not SB's running ones: close, not equal
    assert par["test_accuracy"][i0] == pytest.approx(r["sb"]["test_acc"], abs=0.05)


@needs_mnist
def test_train_checkpoints_resume_each_regime_where_it_stopped(tmp_path):
    """A point stopped after 2 epochs and rerun with 4 continues from its checkpoints: the same training as 4 epochs
    in one go (the trainer resumes bit-identically on the CPU)."""
    small = dict(quick=True, batch_norm=True, hidden=(16,), n_train=300, target_loss=None, small_batch=30,
                 sharpness_examples=50, subspace_dim=2, alphas=2, interp_train_examples=50, seeds=1,
                 sharpness_maxiter=1, eps=(1e-3,))
    point = keskar_mnist.grid(keskar_mnist.SCENARIO.config(epochs=4, **small))[0]
    stored = {**point, "train_checkpoints": str(tmp_path)}
    keskar_mnist.run_point({**stored, "epochs": 2})
    for regime in ("sb", "lb"):
        assert load_state(tmp_path / "adam-seed0" / regime)["counters"]["epoch"] == 2
    resumed, fresh = keskar_mnist.run_point(stored), keskar_mnist.run_point(point)
    for regime in ("sb", "lb"):
        assert load_state(tmp_path / "adam-seed0" / regime)["counters"]["epoch"] == 4
        assert resumed[regime]["epochs"] == fresh[regime]["epochs"] == 4
        assert resumed[regime]["train_loss"] == fresh[regime]["train_loss"]
        assert resumed[regime]["theta_norm"] == fresh[regime]["theta_norm"]


@needs_mnist
@pytest.mark.parametrize("spacing, epochs, expected", [("even", 2, [0, 1, 2]), ("doubling", 5, [0, 1, 2, 4, 5])])
def test_snapshots_give_the_sharpness_along_training(tmp_path, spacing, epochs, expected):
    """snapshot_every=1: snapshots at the start and at epochs 1, 2 (even) or 1, 2, 4 (doubling), and the trained
    point closing the curve (epoch 5 is no doubling); at each the whole training set's loss, metric 2.1 and the top
    eigenvalue, the same as measured directly from the stored snapshot; Figure 6 drawn; the equal-loss table."""
    config = keskar_mnist.SCENARIO.config(quick=True, batch_norm=True, hidden=(16,), n_train=300, target_loss=None,
                                          epochs=epochs, small_batch=30, large_fraction=0.05,  # "LB" 15: deeper
                                          sharpness_examples=50, subspace_dim=2,
                                          alphas=2, interp_train_examples=50, seeds=1, sharpness_maxiter=2, eps=(1e-3,),
                                          snapshot_every=1, snapshot_spacing=spacing, train_checkpoints=str(tmp_path))
    point = keskar_mnist.grid(config)[0]
    r = keskar_mnist.run_point(point)
    net, _, (X, y, _, _) = keskar_mnist.mnist_network(point, batch_norm=True)
    Xs, ys = keskar_mnist.take(X, keskar_mnist.subset_indices(300, 50)).astype("float64"), \
        keskar_mnist.take(y, keskar_mnist.subset_indices(300, 50))
    for regime in ("sb", "lb"):
        snap = r[regime]["snapshots"]
        np.testing.assert_array_equal(snap["epoch"], expected)
        assert snap["train_loss"][0] > snap["train_loss"][-1] > 0 and np.all(snap["sharpness"] >= 0)
        assert snap["train_loss"][-1] == pytest.approx(r[regime]["train_loss"], rel=1e-5)  # the final state
        assert snap["sharpness"][-1] == r[regime]["full_0.001"]
        assert snap["top_eigenvalue"][-1] == r[regime]["top_eigenvalue"]
        stored = np.load(tmp_path / "adam-seed0" / regime / "snapshots" / f"{int(snap['step'][1]):09d}.npz")
        direct = keskar_mnist.measure_snapshots(net, [(stored["theta"], stored["stats"])], Xs, ys, 1e-3,
                                                maxiter=2, seed=0)
        assert direct["sharpness"][0] == snap["sharpness"][1]
        assert direct["top_eigenvalue"][0] == snap["top_eigenvalue"][1]
    records = [{"point": point, "result": r}]
    figs = keskar_mnist.figures(config, records)
    assert [len(ax.get_lines()) for ax in figs["sharpness_along_training"].axes[:2]] == [2, 2]
    tables, text = keskar_mnist.summarize(config, records)
    row, = tables["equal_loss"]
    snap = r["lb"]["snapshots"]
    assert np.isfinite(row["top eig. LB there"])  # batch 15 ran deeper than batch 30, through SB's final loss
    assert row["top eig. LB there"] == keskar_mnist.at_training_loss(snap["train_loss"], snap["top_eigenvalue"],
                                                                     r["sb"]["train_loss"])
    assert row["full_0.001 LB there"] == keskar_mnist.at_training_loss(snap["train_loss"], snap["sharpness"],
                                                                        r["sb"]["train_loss"])
    assert row["top eig. SB"] == r["sb"]["top_eigenvalue"] and "## At equal training loss" in text


def test_at_training_loss_interpolates_log_log_at_the_first_crossing():
    """A power law value = 3 loss^-0.7 is a line on log-log axes, so the interpolation is exact between any two
    snapshots; a non-positive value falls back to linear in log loss; NaN where the run never reached the loss or began
    below it; the first crossing counts when the loss rises again."""
    loss = np.array([2.0, 0.5, 0.1, 0.01])
    for target in (2.0, 1.3, 0.5, 0.2, 0.0123):
        assert keskar_mnist.at_training_loss(loss, 3 * loss ** -0.7, target) == pytest.approx(3 * target ** -0.7,
                                                                                              rel=1e-12)
    assert np.isnan(keskar_mnist.at_training_loss(loss, loss, 1e-3))
    assert np.isnan(keskar_mnist.at_training_loss(loss, loss, 5.0))
    assert keskar_mnist.at_training_loss(loss, [0.0, 4.0, 1.0, 1.0], 1.0) == pytest.approx(2.0, rel=1e-12)
    rising = np.array([1.0, 0.1, 0.5, 0.01])
    assert keskar_mnist.at_training_loss(rising, rising ** 2, 0.3) == pytest.approx(0.09, rel=1e-12)


@needs_mnist
def test_a_regime_that_reached_its_stopping_rule_is_not_trained_again(tmp_path):
    """Rerunning a point whose trainings stopped at their target loss reads them back: no step more, same result."""
    config = keskar_mnist.SCENARIO.config(quick=True, batch_norm=True, hidden=(16,), n_train=300, target_loss=2.0,
                                          epochs=6, small_batch=30, sharpness_examples=50, subspace_dim=2, alphas=2,
                                          interp_train_examples=50, seeds=1, sharpness_maxiter=1, eps=(1e-3,),
                                          train_checkpoints=str(tmp_path))
    point = keskar_mnist.grid(config)[0]
    first = keskar_mnist.run_point(point)
    steps = {g: load_state(tmp_path / "adam-seed0" / g)["counters"]["step"] for g in ("sb", "lb")}
    assert first["sb"]["stop_reason"] == "target_loss" and first["sb"]["epochs"] < 6
    again = keskar_mnist.run_point(point)
    for g in ("sb", "lb"):
        assert load_state(tmp_path / "adam-seed0" / g)["counters"]["step"] == steps[g]
        for key in ("stop_reason", "epochs", "train_loss", "test_acc", "theta_norm", "top_eigenvalue"):
            assert again[g][key] == first[g][key]
