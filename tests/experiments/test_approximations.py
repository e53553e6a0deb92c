"""approximations' --quick run: what must hold at any minimizer (EKFAC never farther from G's blocks than KFAC, and
with G's trace; the output layer's block of H is G's; G and KFAC positive semi-definite), and the run folder."""
import numpy as np
import pytest

from minisgd.experiments import approximations
from support import check_run_folder, needs_mnist


@needs_mnist
def test_approximations_quick(quick_run):
    config, report = quick_run
    check_run_folder(report)
    assert len(report.records) == config.seeds
    for rec in report.records:
        r = rec["result"]
        P = r["num_params"]
        assert P == 50 * config.hidden[0] + (config.hidden[0] + 1) * config.hidden[1] + (config.hidden[1] + 1) * 10
        for regime in ("sb", "lb"):
            m = r[regime]
            G, H = m["compare"]["gauss_newton"], m["compare"]["hessian"]
            assert set(G) == set(approximations.APPROXIMATIONS) - {"gauss_newton"}
            assert set(H) == set(approximations.APPROXIMATIONS)
            # EKFAC is the closest matrix to each exact block in KFAC's eigenbasis (George et al. 2018)
            assert np.all(G["ekfac"]["errors"][:-1] <= G["kfac"]["errors"][:-1] + 1e-12)
            # ... and keeps each block's trace: diag(U^T G_ll U) sums to tr G_ll
            assert G["ekfac"]["trace_ratio"] == pytest.approx(1.0, rel=1e-10)
            # the output layer is linear in its own parameters: its block of H is G's
            assert H["gauss_newton"]["errors"][-2] < 1e-10 and H["gauss_newton"]["errors"][-1] > 1e-3
            assert H["diagonal"]["trace_ratio"] == pytest.approx(1.0, rel=1e-12)
            for target in (G, H):
                for numbers in target.values():
                    assert 0 <= numbers["top_alignment"] <= 1 + 1e-12 and 0 <= numbers["overlap"] <= 1 + 1e-12
                    assert np.all(np.isfinite(numbers["errors"])) and np.all(numbers["errors"] >= 0)
                assert 0 < target["diagonal"]["errors"][-1] < 1  # dropping the off-diagonal part
            spectra = m["spectra"]
            assert all(v.shape == (P,) for v in spectra.values())
            assert spectra["gauss_newton"][-1] >= -1e-10 * spectra["gauss_newton"][0]  # PSD
            assert spectra["kfac"][-1] >= -1e-10 * spectra["kfac"][0]
            assert spectra["hessian"][-1] < 0  # the Hessian at a non-convex minimizer is indefinite
            for name, est in m["estimators"].items():
                assert est["relative_error"] < 0.5 and est["stated_error"] > 0, name
    names = {p.name for p in report.figures}
    assert names == {"errors.png", "spectra.png", "sharpness.png"}
    assert "ranks as H" in report.summary and "Trace estimators" in report.summary
