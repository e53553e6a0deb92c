"""batch-sweep's --quick run: every batch size reaches the target loss, and the full batch ends sharper than B = 32."""
import numpy as np

from minisgd.experiments import batch_sweep
from support import check_run_folder, needs_mnist


@needs_mnist
def test_batch_sweep_quick(quick_run):
    config, report = quick_run
    check_run_folder(report)
    sizes = batch_sweep.batch_sizes(config)
    assert sizes[0] == 32 and sizes[-1] == config.n_train
    assert len(report.records) == len(sizes) * config.seeds
    for rec in report.records:
        r = rec["result"]
        assert r["reached_target"] and r["train_loss"] <= config.target_loss * 1.001
        assert 0.5 < r["test_acc"] <= 1
        assert r["top_eigenvalue"] > 0 and np.isfinite(r["sharpness"]) and r["sharpness"] >= 0
        assert r["trace"] > r["top_eigenvalue"]
    _, lam = batch_sweep._by_batch(config, report.records, "top_eigenvalue")
    _, steps = batch_sweep._by_batch(config, report.records, "steps")
    assert np.all(lam[:, -1] > lam[:, 0])  # full batch sharper than B = 32, every seed, at the same loss
    assert np.all(np.diff(steps.mean(0)) < 0)  # larger batches need fewer updates to the same loss
    assert "| B | seeds | updates" in report.summary
