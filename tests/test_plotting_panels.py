"""The panel helpers the reparametrization and flatness-measures scenarios draw with: versus_log_x (measures
against a factor on a log axis, mean and std over seeds) and scatter_panels (one scatter per measure, colored by
group); they draw the data they are given, on the scales asked for."""
import numpy as np
from matplotlib.figure import Figure

from minisgd import plotting


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
