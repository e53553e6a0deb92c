"""Figures from results: each function returns a labelled matplotlib Figure (no pyplot state, nothing shown), and
the figures draw what they are given (lines at the data, error bars of one std over seeds)."""
import numpy as np
import pytest
from matplotlib.figure import Figure

from minisgd import plotting


def _png(fig):
    data = plotting.png_bytes(fig)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return data


def _labelled(ax):
    return ax.get_xlabel() and ax.get_ylabel() and ax.get_title()


@pytest.fixture
def curves(rng):
    alphas = np.linspace(-1, 2, 13)
    bowl = 0.05 + 0.3 * (alphas - 0.3) ** 2 + 2 * np.clip(alphas - 1, 0, None) ** 2

    def seeds(v):
        return v[None] * (1 + 0.05 * rng.standard_normal((3, 1)))
    c = {"train_loss": seeds(bowl), "test_loss": seeds(bowl + 0.05),
         "train_accuracy": seeds(np.clip(1 - bowl / 3, 0, 1)), "test_accuracy": seeds(np.clip(0.98 - bowl / 3, 0, 1))}
    return alphas, c


def test_parametric_plot(curves):
    alphas, c = curves
    fig = plotting.parametric_plot(alphas, {"Adam": c, "SGD": {k: v[0] for k, v in c.items()}})
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert len(axes) == 4 and all(_labelled(ax) for ax in axes)
    assert axes[0].get_yscale() == "log"
    assert "mean ± std over 3 seeds" in axes[0].get_title() and "seeds" not in axes[2].get_title()
    # the mean curve is drawn, and the accuracy in percent
    np.testing.assert_allclose(axes[0].lines[0].get_ydata(), c["train_loss"].mean(0))
    np.testing.assert_allclose(axes[1].lines[0].get_ydata(), 100 * c["train_accuracy"].mean(0))
    assert {t.get_text() for t in axes[0].get_legend().get_texts()} == {"train", "test"}
    _png(fig)


def test_compare_regimes_error_bars_are_one_std():
    values = {"Adam": {"SB": np.array([1.0, 2.0, 3.0]), "LB": np.array([10.0, 12.0, 14.0])}}
    fig = plotting.compare_regimes({"top eigenvalue": {"ylabel": "λ", "log": True, "values": values}}, ["Adam"])
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_title() == "top eigenvalue"
    sb_marker = [ln for ln in ax.lines if ln.get_marker() == "o"][0]
    assert sb_marker.get_ydata()[0] == pytest.approx(2.0)
    caps = [ln for ln in ax.lines if ln.get_marker() == "_"]
    heights = sorted(float(y) for ln in caps for y in ln.get_ydata())
    assert heights == pytest.approx([1.0, 3.0, 10.0, 14.0])  # mean ± std (ddof=1)
    _png(fig)


def test_versus_batch_size_log2_axis_and_error_bars(rng):
    sizes = [32, 64, 128, 256]
    values = np.log2(sizes)[None] + 0.1 * rng.standard_normal((4, 4))
    fig = plotting.versus_batch_size(sizes, {"sharpness": {"ylabel": "λ", "series": {"λ_max": values}},
                                             "accuracy": {"ylabel": "%", "series": {"test": 90 + values}}},
                                     full_batch=256)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2
    assert "batch size" in ax.get_xlabel() and _labelled(ax)
    np.testing.assert_allclose(ax.lines[0].get_ydata(), values.mean(0))
    assert "4 seeds" in ax.get_legend().get_texts()[0].get_text()
    _png(fig)


def test_spectrum_histograms_counts_every_eigenvalue(rng):
    bulk = rng.standard_normal(500) * 1e-3
    sb = np.concatenate([bulk, [1.0, 2.0, 3.0], np.zeros(7)])
    lb = np.concatenate([bulk * 2, [5.0, 8.0, 9.0], np.zeros(7)])
    fig = plotting.spectrum_histograms({"SB": sb, "LB": lb}, threshold={"SB": 0.5, "LB": 4.0})
    ax_lin, ax_log = fig.axes
    assert ax_lin.get_yscale() == "log" and all(_labelled(ax) for ax in fig.axes)
    labels = [t.get_text() for t in ax_log.get_legend().get_texts()]
    n_pos, n_neg = int(np.sum(sb > 0)), int(np.sum(sb < 0))
    assert f"SB: {n_pos} > 0, 7 zero" in labels and f"SB: {n_neg} < 0" in labels
    # the step histogram of the linear panel holds all P eigenvalues
    assert plotting.color_for("SB") == plotting.SB_COLOR and plotting.color_for("LB (B = 6000)") == plotting.LB_COLOR
    _png(fig)


def test_gauss_newton_vs_residual_and_outliers(rng):
    P = 200
    parts = {"SB": {"full": rng.standard_normal(P), "gauss_newton": np.abs(rng.standard_normal(P)),
                    "residual": 0.1 * rng.standard_normal(P)}}
    fig = plotting.gauss_newton_vs_residual({**parts, "LB": parts["SB"]}, outliers={"SB": 9, "LB": 8}, top=30)
    assert len(fig.axes) == 2 and all(_labelled(ax) for ax in fig.axes)
    assert fig.axes[0].get_yscale() == "symlog" and "9 outliers" in [t.get_text() for t in fig.axes[0].texts]
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), np.sort(parts["SB"]["full"])[::-1][:30])
    _png(fig)
    fig = plotting.outliers_vs_classes([2, 5, 10], {"SB": np.array([[1, 4, 9], [1, 4, 9.0]]), "LB": [1, 4, 8]})
    ax = fig.axes[0]
    assert _labelled(ax) and {"K", "K - 1"} <= {t.get_text() for t in ax.get_legend().get_texts()}
    _png(fig)


def test_no_pyplot_figures_are_left_open(tmp_path, curves):
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    fig = plotting.parametric_plot(*curves[:1], {"Adam": curves[1]})
    assert plt.get_fignums() == before
    assert plotting.save(fig, tmp_path / "f.png") == (tmp_path / "f.png").stat().st_size > 0


def test_versus_log_x_draws_the_means_on_log_axes(rng):
    x = np.array([1e-3, 1.0, 1e3])
    values = np.array([[1e6, 1.0, 1e5], [3e6, 1.0, 3e5]])  # (S = 2, n = 3)
    fig = plotting.versus_log_x(x, {"moves": {"ylabel": "ratio", "log": True, "ylim": (0.1, 1e7),
                                              "series": {"λ_max": values}},
                                    "flat": {"ylabel": "ratio", "series": {"invariant": np.ones(3)}}},
                                title="t", xlabel="α", mark=1.0, cols=2)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log" and ax.get_ylim() == (0.1, 1e7)
    line = ax.lines[0]
    np.testing.assert_allclose(line.get_xdata(), x)
    np.testing.assert_allclose(line.get_ydata(), values.mean(axis=0))
    assert fig.axes[1].get_yscale() == "linear" and ax.get_xlabel() == "α"
    assert "2 seeds" in ax.get_legend().get_texts()[0].get_text()


def test_batch_size_axis_is_unchanged():
    fig = plotting.versus_batch_size([32, 64, 128], {"p": {"ylabel": "y", "series": {"a": np.arange(3.0)}}},
                                     full_batch=128)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "batch size B (examples, log2 scale)"
    assert "full batch, N = 128" in fig._suptitle.get_text()


def test_scatter_panels_color_by_group_and_drop_nonpositive_on_log(rng):
    x = np.array([0.5, 2.0, -1.0, 4.0])
    y = np.array([1.0, 2.0, 3.0, 4.0])
    groups = np.array([32, 32, 512, 512])
    fig = plotting.scatter_panels({"m": {"x": x, "y": y, "groups": groups, "log": True},
                                   "lin": {"x": x, "y": y, "groups": groups}}, ylabel="gap", title="t")
    log_ax, lin_ax = fig.axes[:2]
    assert log_ax.get_xscale() == "log" and lin_ax.get_xscale() == "linear"
    drawn = [c.get_offsets() for c in log_ax.collections]
    assert [len(d) for d in drawn] == [2, 1]  # x = -1 cannot sit on a log axis
    np.testing.assert_allclose(drawn[1], [[4.0, 4.0]])
    assert [t.get_text() for t in log_ax.get_legend().get_texts()] == ["B = 32", "B = 512"]
    assert sum(len(c.get_offsets()) for c in lin_ax.collections) == 4
    plotting.png_bytes(fig)


def test_grouped_bars_draw_the_means_with_one_std(rng):
    errors = rng.uniform(0.1, 1.0, (3, 4))  # 3 seeds x 4 groups
    fig = plotting.grouped_bars(["layer 1", "layer 2", "layer 3", "all"],
                                {"against G": {"ylabel": "relative error", "log": True,
                                               "values": {"KFAC": errors, "EKFAC": errors[0] / 2}}}, title="errors")
    ax = fig.axes[0]
    assert ax.get_ylabel() and ax.get_title() and ax.get_yscale() == "log"
    heights = [patch.get_height() for patch in ax.patches]
    np.testing.assert_allclose(heights[:4], errors.mean(axis=0))  # the first series' bars are its means
    np.testing.assert_allclose(heights[4:], errors[0] / 2)
    _png(fig)


def test_ranked_spectra_draw_positive_eigenvalues_by_rank(rng):
    values = np.r_[rng.uniform(0.1, 10, 50), -rng.uniform(0, 1, 10)]
    fig = plotting.ranked_spectra({"SB": {"exact Hessian": values, "KFAC": values / 2}}, top=30)
    ax = fig.axes[0]
    assert _labelled(ax) and ax.get_xscale() == "log" and ax.get_yscale() == "log"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.sort(values)[::-1][:30])
    np.testing.assert_allclose(ax.lines[0].get_xdata(), np.arange(1, 31))
    _png(fig)


def test_curvature_vs_training_loss_draws_each_run_on_log_axes_with_the_loss_reversed():
    loss = np.array([2.3, 0.5, 0.1, 0.02])
    panels = {"Adam": ("eps-sharpness", {"SB": [(loss, [1.0, 2.0, 3.0, 4.0]), (loss, [1.5, 2.5, 3.5, 4.5])],
                                         "LB": [(loss, [1.0, 10.0, 0.0, 100.0])]}),
              "Adam, top eigenvalue": ("top eigenvalue", {"SB": [(loss, [0.1, 0.2, 0.3, 0.4])]})}
    fig = plotting.curvature_vs_training_loss(panels)
    ax = fig.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log" and _labelled(ax)
    assert ax.get_ylabel() == "eps-sharpness" and fig.axes[1].get_ylabel() == "top eigenvalue"
    assert ax.xaxis_inverted()
    lines = ax.get_lines()
    assert len(lines) == 3
    assert lines[0].get_color() == plotting.SB_COLOR and lines[2].get_color() == plotting.LB_COLOR
    np.testing.assert_array_equal(lines[2].get_ydata(), [1.0, 10.0, 100.0])  # the zero is left out
    _png(fig)
