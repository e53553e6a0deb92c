"""keskar-mnist's --quick run: both regimes trained, every measure finite, the parametric plot's shape, and
with Adam the large-batch minimizer sharper."""
import numpy as np
import pytest

from support import check_run_folder, needs_mnist


@needs_mnist
def test_keskar_mnist_quick(quick_run):
    config, report = quick_run
    check_run_folder(report)
    assert len(report.records) == len(config.optimizers) * config.seeds
    eps_keys = [f"{space}_{eps:g}" for space in ("full", "subspace") for eps in config.eps]
    for rec in report.records:
        r = rec["result"]
        assert r["lb"]["batch_size"] == round(0.1 * config.n_train) and r["sb"]["batch_size"] == 256
        for regime in ("sb", "lb"):
            m = r[regime]
            assert m["steps"] == config.epochs * -(-config.n_train // m["batch_size"])
            assert 0.5 < m["test_acc"] <= 1 and 0.5 < m["train_acc"] <= 1  # chance is 0.1
            assert np.isfinite(m["train_loss"]) and m["train_loss"] < np.log(10)
            assert m["top_eigenvalue"] > 0 and m["trace"] > m["top_eigenvalue"]
            for key in eps_keys:
                assert np.isfinite(m[key]) and m[key] >= 0
            assert m[f"full_{config.eps[0]:g}"] >= m[f"full_{config.eps[1]:g}"]  # a larger box rises higher
        par = r["parametric"]
        assert par["alphas"].shape == par["train_loss"].shape == par["test_accuracy"].shape == (config.alphas,)
        assert np.all((par["test_accuracy"] >= 0) & (par["test_accuracy"] <= 1))
        i0 = int(np.argmin(np.abs(par["alphas"])))
        assert par["test_accuracy"][i0] == pytest.approx(r["sb"]["test_acc"], abs=2e-3)  # alpha = 0 is SB (float32)
    # robust even in quick mode: with Adam the LB minimizer is sharper, and the line rises faster beyond it
    adam = [rec["result"] for rec in report.records if rec["point"]["optimizer"] == "adam"]
    assert all(r["lb"]["top_eigenvalue"] > r["sb"]["top_eigenvalue"] for r in adam)
    for r in adam:
        a, loss = r["parametric"]["alphas"], r["parametric"]["train_loss"]
        beyond_lb = loss[np.argmin(np.abs(a - 1.5))] - loss[np.argmin(np.abs(a - 1))]
        beyond_sb = loss[np.argmin(np.abs(a + 0.5))] - loss[np.argmin(np.abs(a))]
        assert beyond_lb > beyond_sb
    for table in ("Accuracy (layout of the paper's Table 2)", "Epsilon-sharpness", "Top Hessian eigenvalue"):
        assert table in report.summary
    assert {p.name for p in report.figures} == {"parametric.png", "sb_vs_lb.png"}
