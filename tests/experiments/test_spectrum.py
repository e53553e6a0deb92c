"""spectrum's --quick run: exact spectra with K - 1 outliers, a PSD Gauss-Newton part, traces that add up."""
import pytest

from minisgd.experiments import spectrum
from support import check_run_folder, needs_mnist


@needs_mnist
def test_spectrum_quick(quick_run):
    config, report = quick_run
    check_run_folder(report)
    assert len(report.records) == len(config.classes) * config.seeds
    for rec in report.records:
        K, r = rec["point"]["num_classes"], rec["result"]
        P = r["num_params"]
        assert P == (49 + 1) * config.hidden[0] + (config.hidden[0] + 1) * K
        for regime in ("sb", "lb"):
            m = r[regime]
            eig = m["eigenvalues"]
            assert all(eig[part].shape == (P,) for part in spectrum.PARTS)
            # Gauss-Newton is PSD; H = G + R, so the traces add up
            assert eig["gauss_newton"].min() > -1e-10 * eig["gauss_newton"].max()
            assert eig["full"].sum() == pytest.approx(eig["gauss_newton"].sum() + eig["residual"].sum(), rel=1e-8)
            assert m["full"]["outliers"] == K - 1  # the class structure: K - 1 outliers
            assert m["full"]["outlier_gap"] > 1.5
            assert 0 <= m["full"]["negative_mass"] < 0.5 and m["full"]["negative_count"] > 0
            assert m["gauss_newton"]["negative_count"] == 0
            assert 0.5 < m["test_acc"] <= 1
    names = {p.name for p in report.figures}
    assert {"spectrum_K10.png", "gauss_newton_vs_residual_K10.png", "outliers_vs_classes.png"} == names
