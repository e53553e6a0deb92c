r"""Figures from results: each function takes numbers and arrays (what the scenarios store) and returns a
``matplotlib.figure.Figure``. Nothing is shown or written here: the figures are built without ``pyplot`` (no global
state, no GUI backend), and :func:`save` writes one to a PNG.

* :func:`parametric_plot`: Keskar et al. 2017's Figure 3, loss and accuracy on train and test along
  :math:`\theta(\alpha) = \alpha\,\theta_{LB} + (1 - \alpha)\,\theta_{SB}`, one row per optimizer;
* :func:`compare_regimes`: SB against LB for each optimizer, mean and std over seeds, one panel per measure;
* :func:`versus_batch_size`: measures against the batch size (log2 axis), mean and std over seeds;
  :func:`versus_log_x` the same against any positive quantity (e.g. a rescaling factor);
* :func:`per_category`: one value per category (e.g. per remedy), mean and std over seeds, with reference lines;
* :func:`scatter_panels`: one scatter per measure, points colored by group (e.g. generalization gap against
  sharpness, by batch size);
* :func:`spectrum_histograms`: full Hessian spectra overlaid (SB, LB), on a linear and on a log scale;
* :func:`gauss_newton_vs_residual`: the ranked eigenvalues of the Hessian, its Gauss-Newton part and the residual;
* :func:`outliers_vs_classes`: the number of outlier eigenvalues against the number of classes;
* :func:`measured_vs_predicted`: measurements against closed forms on log-log axes, with slope guides;
* :func:`versus_temperature`: measures against the SGD temperature (one marker per B) and against B (one line per
  temperature).
* :func:`step_size_thresholds`: GD's top component around 2/lambda_max (model and network), SGD's threshold
  against the batch size;
* :func:`edge_of_stability`: lambda_max during training against the 2/eta lines, and the training loss.
* :func:`curvature_vs_training_loss`: Keskar et al. 2017's Figure 6, a sharpness measure against the training loss
  at snapshots along SB and LB training;
* :func:`grouped_bars`: several series over the same groups (e.g. an error per layer, one bar per approximation);
* :func:`ranked_spectra`: eigenvalues against their rank on log-log axes, one line per matrix (e.g. the exact
  Hessian against its approximations).

Series given as ``(S, n)`` arrays (S seeds) are drawn as their mean with a band or error bars of one standard
deviation; ``(n,)`` arrays as lines.
"""
import io
import warnings

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

DPI = 110  # PNG resolution: readable at page width, files of 50-200 KB
SB_COLOR, LB_COLOR = "#1f77b4", "#d62728"
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f")


def color_for(label, index=0):
    """Blue for small-batch labels, red for large-batch ones, the palette otherwise."""
    text = str(label).lower()
    if text.startswith("sb") or "small" in text:
        return SB_COLOR
    if text.startswith("lb") or "large" in text:
        return LB_COLOR
    return PALETTE[index % len(PALETTE)]


def save(fig, path, dpi=DPI):
    """Write ``fig`` to ``path`` as a PNG (returns the bytes written)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    data = buffer.getvalue()
    with open(path, "wb") as fh:
        fh.write(data)
    return len(data)


def png_bytes(fig, dpi=DPI):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def _mean_std(values):
    """``(mean, std, n)`` over the seed axis of ``(S, n)`` (std 0 when S = 1); ``(n,)`` passes with std 0."""
    a = np.asarray(values, dtype=float)
    if a.ndim == 1:
        return a, np.zeros_like(a), 1
    mean = np.nanmean(a, axis=0)
    std = np.nanstd(a, axis=0, ddof=1) if a.shape[0] > 1 else np.zeros_like(mean)
    return mean, std, a.shape[0]


def panel_grid(count, width, height, columns=3):
    """A figure with ``count`` panels of ``width`` x ``height`` inches, at most ``columns`` a row: ``(fig, axes)``,
    axes flattened (:func:`finish` hides the spare ones)."""
    cols = min(columns, count)
    rows = -(-count // cols)
    fig = Figure(figsize=(width * cols + 0.5, height * rows + 0.5), layout="constrained")
    return fig, np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()


def finish(fig, spare_axes, title):
    """Hide the panels left unused, title the figure, return it."""
    for ax in spare_axes:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=11)
    return fig


def _line(ax, x, values, band=True, **style):
    mean, std, n = _mean_std(values)
    line, = ax.plot(x, mean, **style)
    if band and n > 1:
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)
    return line


def _seeds_note(values):
    a = np.asarray(values)
    return f" (mean ± std over {a.shape[0]} seeds)" if a.ndim == 2 and a.shape[0] > 1 else ""


# ---- Keskar's parametric plot --------------------------------------------------------------------------------

def parametric_plot(alphas, curves, title="Loss and accuracy along the line from the SB to the LB minimizer"):
    r"""Keskar et al.'s parametric plot: one row per entry of ``curves`` (e.g. ``{"Adam": c, "SGD": c}``), each
    ``c`` a dict with ``train_loss``, ``test_loss``, ``train_accuracy``, ``test_accuracy``, each ``(A,)`` or
    ``(S, A)`` over ``alphas: (A,)``. Left panel: cross-entropy (log scale); right panel: accuracy in percent.
    ``alpha = 0`` is the small-batch minimizer, ``alpha = 1`` the large-batch one."""
    alphas = np.asarray(alphas, dtype=float)
    rows = len(curves)
    fig = Figure(figsize=(10.5, 3.3 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False)
    for (name, c), (ax_loss, ax_acc) in zip(curves.items(), axes):
        note = _seeds_note(c["train_loss"])
        for split, style in (("train", "-"), ("test", "--")):
            _line(ax_loss, alphas, c[f"{split}_loss"], color="#444444", linestyle=style, label=f"{split}")
            _line(ax_acc, alphas, 100 * np.asarray(c[f"{split}_accuracy"]), color="#444444", linestyle=style,
                  label=f"{split}")
        ax_loss.set_yscale("log")
        ax_loss.set_ylabel("cross-entropy loss (nats)")
        ax_acc.set_ylabel("accuracy (%)")
        ax_acc.set_ylim(-2, 102)
        for ax in (ax_loss, ax_acc):
            ax.axvline(0.0, color=SB_COLOR, linewidth=1.2, alpha=0.8)
            ax.axvline(1.0, color=LB_COLOR, linewidth=1.2, alpha=0.8)
            ax.set_xlabel(r"$\alpha$ in $\theta = \alpha\,\theta_{LB} + (1-\alpha)\,\theta_{SB}$")
            ax.grid(True, which="major", alpha=0.3)
            ax.set_xlim(alphas[0], alphas[-1])
        y_text = 0.04
        ax_acc.text(0.0, y_text, " SB", color=SB_COLOR, transform=ax_acc.get_xaxis_transform(), fontsize=9)
        ax_acc.text(1.0, y_text, " LB", color=LB_COLOR, transform=ax_acc.get_xaxis_transform(), fontsize=9)
        ax_loss.set_title(f"{name}: loss{note}", fontsize=10)
        ax_acc.set_title(f"{name}: accuracy{note}", fontsize=10)
        ax_loss.legend(loc="upper left", fontsize=8, title="split", title_fontsize=8)
        ax_acc.legend(loc="lower left", fontsize=8, title="split", title_fontsize=8)
    fig.suptitle(title, fontsize=11)
    return fig


# ---- SB against LB ---------------------------------------------------------------------------------------------

def compare_regimes(measures, groups, title="Small batch (SB) against large batch (LB)"):
    """SB against LB for each group (e.g. optimizer), one panel per measure: the mean over seeds with an error bar
    of one standard deviation, and every seed as a small dot beside it. ``measures``: ``{panel title: {"ylabel":
    str, "log": bool, "values": {group: {"SB": (S,), "LB": (S,)}}}}``; ``groups`` orders the groups."""
    panels = list(measures.items())
    fig, axes = panel_grid(len(panels), 3.6, 3.1)
    offset = 0.18
    for ax, (panel, spec) in zip(axes, panels):
        x = np.arange(len(groups))
        for j, regime in enumerate(("SB", "LB")):
            vals = [np.asarray(spec["values"][g][regime], float) for g in groups]
            means = np.array([np.nanmean(v) for v in vals])
            stds = np.array([np.nanstd(v, ddof=1) if v.size > 1 else 0.0 for v in vals])
            pos = x + (2 * j - 1) * offset
            ax.errorbar(pos, means, yerr=stds, fmt="o", markersize=6, capsize=5, color=color_for(regime),
                        label=regime)
            for p, v in zip(pos, vals):
                ax.plot(np.full(v.size, p + 0.09), v, ".", color=color_for(regime), markersize=3, alpha=0.6)
        ax.set_xticks(x, [str(g) for g in groups])
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_ylabel(spec["ylabel"])
        if spec.get("log"):
            ax.set_yscale("log")
        ax.set_title(panel, fontsize=10)
        ax.grid(True, axis="y", which="major", alpha=0.3)
        ax.legend(fontsize=8)
    return finish(fig, axes[len(panels):], title)


# ---- against the batch size -------------------------------------------------------------------------------------

def versus_batch_size(batch_sizes, panels, title="Against the batch size", full_batch=None):
    """One panel per entry of ``panels``: ``{title: {"ylabel": str, "log": bool, "series": {label: (S, n) or
    (n,)}}}`` over ``batch_sizes: (n,)``, drawn as mean with error bars of one std over seeds, on a log2 x axis.
    ``full_batch`` marks the training-set size."""
    fig = versus_log_x(batch_sizes, panels, title + (f"   (dotted line: full batch, N = {full_batch})"
                                                     if full_batch else ""),
                       xlabel="batch size B (examples, log2 scale)", base=2, mark=full_batch)
    for ax in fig.axes:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(round(v))}" if v >= 1 else f"{v:g}"))
        ax.tick_params(axis="x", labelrotation=45, labelsize=8)
    return fig


def versus_log_x(x, panels, title, xlabel, base=10, mark=None, cols=3):
    """One panel per entry of ``panels`` (as :func:`versus_batch_size` takes them, plus an optional ``"ylim"``)
    over ``x: (n,)`` on a log x axis of ``base``: mean with error bars of one std over seeds; ``mark`` draws a
    dotted vertical line there; ``cols`` panels a row."""
    x = np.asarray(x, dtype=float)
    items = list(panels.items())
    fig, axes = panel_grid(len(items), 3.8, 3.3, columns=cols)
    for ax, (name, spec) in zip(axes, items):
        for i, (label, values) in enumerate(spec["series"].items()):
            mean, std, n = _mean_std(values)
            ax.errorbar(x, mean, yerr=std if n > 1 else None, marker="o", markersize=4, capsize=3,
                        color=PALETTE[i % len(PALETTE)], label=label + (f" ({n} seeds)" if n > 1 else ""))
        ax.set_xscale("log", base=base)
        ax.xaxis.set_major_locator(LogLocator(base=base))
        if spec.get("log"):
            ax.set_yscale("log")
        if spec.get("ylim"):
            ax.set_ylim(*spec["ylim"])
        if mark is not None:
            ax.axvline(mark, color="#888888", linestyle=":", linewidth=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(spec["ylabel"])
        ax.set_title(name, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    return finish(fig, axes[len(items):], title)


def scatter_panels(panels, ylabel, title, group_label="B"):
    """One scatter per entry of ``panels``: ``{title: {"x": (n,), "y": (n,), "groups": (n,), "log": bool}}``, the
    points colored by their group (e.g. the batch size), one legend entry per group; ``log`` puts x on a log
    scale (only positive values are then drawn)."""
    items = list(panels.items())
    fig, axes = panel_grid(len(items), 3.5, 3.1, columns=4)
    for ax, (name, spec) in zip(axes, items):
        x, y, groups = (np.asarray(spec[k]) for k in ("x", "y", "groups"))
        for i, g in enumerate(sorted(set(groups.tolist()))):
            pick = groups == g
            if spec.get("log"):
                pick &= x > 0
            ax.scatter(x[pick], y[pick], s=16, color=PALETTE[i % len(PALETTE)], label=f"{group_label} = {g}")
        if spec.get("log"):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide within a decade
        ax.set_xlabel(spec.get("xlabel", name), fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.set_title(name, fontsize=9)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    return finish(fig, axes[len(items):], title)


# ---- one value per category ------------------------------------------------------------------------------------

def per_category(categories, panels, title="Per category"):
    """One panel per entry of ``panels``: ``{title: {"ylabel": str, "log": bool, "values": {category: (S,)},
    "colors": {category: color}, "references": {label: value}}}``, each category (in the order of
    ``categories``, those a panel lacks left out) drawn as its mean over seeds with an error bar of one standard
    deviation and every seed as a small dot beside it; each reference value as a dashed horizontal line."""
    items = list(panels.items())
    fig = Figure(figsize=(max(6.0, 0.7 * len(categories) + 1.5), 3.6 * len(items) + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(items), 1, squeeze=False)).ravel()
    for ax, (name, spec) in zip(axes, items):
        present = [c for c in categories if c in spec["values"]]
        for i, category in enumerate(present):
            v = np.asarray(spec["values"][category], float)
            color = spec.get("colors", {}).get(category, "#444444")
            mean, std = np.nanmean(v), (np.nanstd(v, ddof=1) if np.sum(np.isfinite(v)) > 1 else 0.0)
            ax.errorbar([i], [mean], yerr=[std], fmt="o", markersize=6, capsize=5, color=color)
            ax.plot(np.full(v.size, i + 0.15), v, ".", color=color, markersize=3, alpha=0.6)
        for j, (label, value) in enumerate(spec.get("references", {}).items()):
            ax.axhline(value, color=color_for(label, j + 2), linestyle="--", linewidth=1, label=label)
        ax.set_xticks(np.arange(len(present)), present, rotation=30, ha="right", fontsize=9)
        ax.set_xlim(-0.6, len(present) - 0.4)
        ax.set_ylabel(spec["ylabel"])
        if spec.get("log"):
            ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.grid(True, axis="y", which="major", alpha=0.3)
        if spec.get("references"):
            ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    return fig


# ---- Hessian spectra -----------------------------------------------------------------------------------------

def _zero_tolerance(values):
    """Eigenvalues below ``1e-10 max|lambda|`` in magnitude are zero up to rounding (e.g. weights of an input that
    is always 0); they are counted, not drawn on a log axis."""
    return 1e-10 * max(np.abs(v).max() for v in values)


def spectrum_histograms(spectra, title="Hessian eigenvalues", bins=80, threshold=None):
    """The eigenvalue histograms of ``spectra`` (``{label: (P,)}``, e.g. SB and LB), overlaid.

    Left: linear eigenvalue axis, counts on a log scale (the bulk at 0 and the outliers far right).
    Right: :math:`\\log_{10}|\\lambda|`, positive eigenvalues solid and negative ones dashed (counts linear), so the
    bulk's decades and the negative mass show; eigenvalues that are zero up to rounding (``|lambda| < 1e-10
    max|lambda|``) are counted in the legend instead. ``threshold`` draws the outlier cut-off (one value, or one per
    label as a dict)."""
    fig = Figure(figsize=(11, 3.9), layout="constrained")
    ax_lin, ax_log = fig.subplots(1, 2)
    values = [np.asarray(v, float) for v in spectra.values()]
    tol = _zero_tolerance(values)
    edges = np.linspace(min(v.min() for v in values), max(v.max() for v in values), bins + 1)
    mags = np.concatenate([np.abs(v[np.abs(v) > tol]) for v in values])
    log_edges = np.linspace(np.floor(np.log10(mags.min()) * 2) / 2, np.ceil(np.log10(mags.max()) * 2) / 2, bins + 1)
    for i, (label, v) in enumerate(spectra.items()):
        v = np.asarray(v, float)
        color = color_for(label, i)
        ax_lin.hist(v, bins=edges, histtype="step", color=color, linewidth=1.4, label=f"{label}, P = {v.size}")
        pos, neg = v[v > tol], v[v < -tol]
        zeros = v.size - pos.size - neg.size
        ax_log.hist(np.log10(pos), bins=log_edges, histtype="step", color=color, linewidth=1.4,
                    label=f"{label}: {pos.size} > 0" + (f", {zeros} zero" if zeros else ""))
        if neg.size:
            ax_log.hist(np.log10(-neg), bins=log_edges, histtype="step", color=color, linewidth=1.2,
                        linestyle="--", label=f"{label}: {neg.size} < 0")
        t = threshold.get(label) if isinstance(threshold, dict) else threshold
        if t is not None:
            ax_lin.axvline(t, color=color, linestyle=":", linewidth=1)
    ax_lin.set_yscale("log")
    ax_lin.set_xlabel("eigenvalue λ (loss / parameter², linear scale)")
    ax_lin.set_ylabel("number of eigenvalues (log scale)")
    ax_lin.set_title("linear scale: the outliers against the bulk", fontsize=10)
    ax_log.set_xlabel(r"$\log_{10}|\lambda|$ (solid: λ > 0, dashed: λ < 0)")
    ax_log.set_ylabel("number of eigenvalues")
    ax_log.set_title("log scale: the bulk and the negative eigenvalues", fontsize=10)
    for ax in (ax_lin, ax_log):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper left" if ax is ax_log else "upper right")
    fig.suptitle(title, fontsize=11)
    return fig


def gauss_newton_vs_residual(parts, outliers=None, top=60, title="Hessian = Gauss-Newton + residual"):
    """Ranked eigenvalues (largest first, the top ``top``) of the Hessian, its Gauss-Newton part and the residual,
    one panel per minimizer, and the 5 most negative of H and of the residual beside them. ``parts``: ``{label:
    {"full": (P,), "gauss_newton": (P,), "residual": (P,)}}``. A symmetric-log y axis shows the negative
    eigenvalues; ``outliers`` (an int, or one per label as a dict) draws a line after that many eigenvalues."""
    fig = Figure(figsize=(5.4 * len(parts) + 0.4, 4.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(parts), squeeze=False)).ravel()
    styles = {"full": ("Hessian H", "k", "-", "o"), "gauss_newton": ("Gauss-Newton G", "#2ca02c", "--", "s"),
              "residual": ("residual H - G", "#9467bd", ":", "^")}
    for ax, (label, p) in zip(axes, parts.items()):
        smallest = np.inf
        for key, (name, color, ls, marker) in styles.items():
            v = np.sort(np.asarray(p[key], float))[::-1]
            lo = np.sort(np.asarray(p[key], float))[: min(5, v.size)]
            ranks = np.arange(1, min(top, v.size) + 1)
            ax.plot(ranks, v[: ranks.size], color=color, linestyle=ls, marker=marker, markersize=3, label=name,
                    linewidth=1.2)
            mag = np.abs(v[: ranks.size])
            smallest = min(smallest, mag[mag > 0].min() if np.any(mag > 0) else 1.0)
            if key in ("full", "residual"):
                ax.plot(np.full(lo.size, top + (2 if key == "full" else 4)), lo, color=color, marker="v",
                        linestyle="none", markersize=4, label=f"{name.split()[0]}: 5 most negative")
        ax.set_yscale("symlog", linthresh=max(smallest, 1e-6))
        n_out = outliers.get(label) if isinstance(outliers, dict) else outliers
        if n_out:
            ax.axvline(n_out + 0.5, color="#888888", linestyle=":", linewidth=1)
            ax.text(n_out + 0.8, 0.97, f"{n_out} outliers", transform=ax.get_xaxis_transform(), fontsize=8,
                    va="top", color="#555555")
        ax.set_xlabel("rank (1 = largest)")
        ax.set_ylabel("eigenvalue (symmetric log scale)")
        ax.set_title(str(label), fontsize=10, color=color_for(label))
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(title, fontsize=11)
    return fig


def outliers_vs_classes(classes, counts, title="Outlier eigenvalues against the number of classes"):
    """``counts``: ``{label: (S, n) or (n,)}``, the number of outliers found for each number of classes in
    ``classes: (n,)``; mean and std over seeds, with the lines ``K`` and ``K - 1`` for reference."""
    k = np.asarray(classes, dtype=float)
    fig = Figure(figsize=(5.2, 4.0), layout="constrained")
    ax = fig.subplots()
    grid = np.linspace(k.min() - 0.5, k.max() + 0.5, 10)
    ax.plot(grid, grid, color="#888888", linestyle="-", linewidth=1, label="K")
    ax.plot(grid, grid - 1, color="#888888", linestyle=":", linewidth=1, label="K - 1")
    offsets = np.linspace(-0.12, 0.12, max(len(counts), 1))
    for i, (label, values) in enumerate(counts.items()):
        mean, std, n = _mean_std(values)
        ax.errorbar(k + offsets[i], mean, yerr=std if n > 1 else None, marker="o", capsize=3, linestyle="none",
                    color=color_for(label, i), label=label + (f" ({n} seeds)" if n > 1 else ""))
    ax.set_xticks(k)
    ax.set_xlabel("number of classes K")
    ax.set_ylabel("number of outlier eigenvalues")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# ---- measured against predicted, on log-log axes -------------------------------------------------------------

def measured_vs_predicted(panels, title):
    """One log-log panel per entry of ``panels``: ``{title: {"xlabel": str, "ylabel": str, "series": [series,
    ...], "slope": (s, x0, y0) or None}}``. A series is ``{"label": str, "x": (n,), "y": (n,) or (S, n)}`` with
    ``"predicted": True`` for a closed form (a line) or measurements otherwise (markers with error bars of one
    std over the S rows, or ``"yerr": (n,)`` given). ``slope`` draws a dotted guide of slope s through (x0, y0).
    Non-positive values are left out (a log axis cannot show them)."""
    items = list(panels.items())
    fig, axes = panel_grid(len(items), 4.2, 3.6)
    for ax, (name, spec) in zip(axes, items):
        xs = np.concatenate([np.asarray(s["x"], dtype=float) for s in spec["series"]])
        xs = xs[xs > 0]
        for i, s in enumerate(spec["series"]):
            x = np.asarray(s["x"], dtype=float)
            mean, std, _ = _mean_std(s["y"])
            std = np.asarray(s.get("yerr", std), dtype=float)
            ok = (x > 0) & (mean > 0)
            color = s.get("color", PALETTE[i % len(PALETTE)])
            if s.get("predicted"):
                ax.plot(x[ok], mean[ok], color=color, linewidth=1.4, label=s["label"])
            else:
                ax.errorbar(x[ok], mean[ok], yerr=np.minimum(std[ok], 0.999 * mean[ok]) if std.any() else None,
                            marker=s.get("marker", "o"), markersize=4, linestyle="none", capsize=2, color=color,
                            label=s["label"])
        if spec.get("slope"):
            slope, x0, y0 = spec["slope"]
            ends = np.array([xs.min(), xs.max()]) if xs.size else np.array([x0, 10 * x0])
            ax.plot(ends, y0 * (ends / x0) ** slope, color="#555555", linestyle=":", linewidth=1,
                    label=f"slope {slope:g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(spec["xlabel"])
        ax.set_ylabel(spec["ylabel"])
        ax.set_title(name, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    return finish(fig, axes[len(items):], title)


# ---- step sizes and curvature -------------------------------------------------------------------------------------

def step_size_thresholds(curves, batch_sizes, sgd_thresholds, gd_threshold, num_examples,
                         title="Step sizes around the stability threshold"):
    """Left: ``curves`` ``{label: {"model": (T + 1,), "network": (T', )}}``, the size of the top component
    against the step (log scale), the quadratic model dashed and the network solid. Right: SGD's threshold
    ``sgd_thresholds: (n,)`` against ``batch_sizes: (n,)`` (log2 axis) with GD's ``gd_threshold`` as a line."""
    fig = Figure(figsize=(11.0, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    for i, (label, c) in enumerate(curves.items()):
        color = PALETTE[i % len(PALETTE)]
        left.plot(np.arange(len(c["model"])), c["model"], color=color, linestyle="--", linewidth=1)
        left.plot(np.arange(len(c["network"])), c["network"], color=color, linewidth=1.6, label=label)
    left.set_yscale("log")
    left.set_xlabel("GD step")
    left.set_ylabel("|u₁ᵀ(θ − θ*)| / δ")
    left.set_title("GD from θ* + δu₁: network (solid), quadratic model (dashed)\n(the network's floor near "
                   "1e-12 is float64 rounding of θ; its runs stop beyond 1000 δ)", fontsize=9)
    left.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    b = np.asarray(batch_sizes, dtype=float)
    right.plot(b, sgd_thresholds, marker="o", color=PALETTE[0], label="SGD's mean-square threshold η*_B")
    right.axhline(gd_threshold, color="#888888", linestyle=":", label="GD's 2/λ_max")
    right.set_ylim(0, 1.1 * max(gd_threshold, np.max(sgd_thresholds)))
    right.set_xscale("log", base=2)
    right.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{int(round(v))}" if v >= 1 else f"{v:g}"))
    right.set_xlabel(f"batch size B (i.i.d. with replacement, N = {num_examples})")
    right.set_ylabel("largest stable step η")
    right.set_title("SGD's exact threshold (Wu et al. 2018) against B", fontsize=10)
    right.grid(True, alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    return fig


# ---- against the temperature eta / B ------------------------------------------------------------------------

def versus_temperature(temperatures, batch_sizes, panels, flagged=None, title="Against the temperature η/B"):
    r"""Two views of measures taken on a grid of temperatures :math:`T = \eta/B\,(1 - B/N)` and batch sizes, one row
    per entry of ``panels`` (``{label: {"values": (nT, nB, S), "log": bool}}``, NaN where a run is missing):
    left, against T (log axis), one marker per batch size; right, against B (log2 axis), one line per temperature.
    Mean and std over the S seeds. ``flagged: (nT, nB)`` bool draws those cells with open markers (runs outside
    the regime the comparison is about). If the temperature alone decides a measure, the markers of the left panel
    collapse onto one curve and the lines of the right panel are flat."""
    T, Bs = np.asarray(temperatures, float), np.asarray(batch_sizes, float)
    flagged = np.zeros((T.size, Bs.size), bool) if flagged is None else np.asarray(flagged, bool)
    markers = "osD^v<>p*h"
    fig = Figure(figsize=(10.5, 3.0 * len(panels) + 0.6), layout="constrained")
    axes = fig.subplots(len(panels), 2, squeeze=False)
    for (label, spec), (ax_t, ax_b) in zip(panels.items(), axes):
        values = np.asarray(spec["values"], float)
        with warnings.catch_warnings():  # cells without a finite run are NaN and not drawn
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(values, axis=2)
            std = np.nanstd(values, axis=2, ddof=1) if values.shape[2] > 1 else np.zeros_like(mean)
        std = np.where(np.isfinite(std), std, 0.0)
        for j, b in enumerate(Bs):
            color, marker = PALETTE[j % len(PALETTE)], markers[j % len(markers)]
            for i in range(T.size):
                if np.isfinite(mean[i, j]):
                    ax_t.errorbar(T[i] * 1.04 ** (j - (Bs.size - 1) / 2), mean[i, j], yerr=std[i, j], capsize=2,
                                  marker=marker, markersize=5, color=color,
                                  markerfacecolor="none" if flagged[i, j] else color)
            ax_t.plot([], [], marker=marker, color=color, linestyle="none", label=f"B = {int(b)}")
        for i, t in enumerate(T):
            color = PALETTE[i % len(PALETTE)]
            ok = np.isfinite(mean[i])
            ax_b.plot(Bs[ok], mean[i, ok], color=color, linewidth=1.2, label=f"T = {t:.2g}")
            for j in np.flatnonzero(ok):
                ax_b.errorbar(Bs[j], mean[i, j], yerr=std[i, j], capsize=2, marker="o", markersize=4, color=color,
                              markerfacecolor="none" if flagged[i, j] else color)
        ax_t.set_xscale("log")
        ax_b.set_xscale("log", base=2)
        ax_t.set_xticks(T, [f"{t:.2g}" for t in T], fontsize=8)  # the grid's own values, no minor labels
        ax_b.set_xticks(Bs, [f"{int(b)}" for b in Bs], fontsize=8)
        ax_t.xaxis.set_minor_formatter(NullFormatter())
        ax_b.xaxis.set_minor_formatter(NullFormatter())
        ax_t.set_xlabel("temperature T = η/B (1 - B/N) (log scale)")
        ax_b.set_xlabel("batch size B (log2 scale)")
        for ax in (ax_t, ax_b):
            if spec.get("log"):
                ax.set_yscale("log")
                # labelled ticks at 1, 1.25, 1.5, 2, ... per decade: these measures span less than a decade
                ax.yaxis.set_minor_locator(LogLocator(base=10, subs=(1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)))
                for axis_formatter in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
                    axis_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
                ax.tick_params(axis="y", which="both", labelsize=7)
            ax.set_ylabel(label)
            ax.grid(True, which="major", alpha=0.3)
            ax.legend(fontsize=7, ncol=2)
        ax_t.set_title(f"{label} against T, one marker per B", fontsize=10)
        ax_b.set_title(f"{label} against B, one line per T", fontsize=10)
    note = "\n(open markers: flagged runs)" if flagged.any() else ""
    fig.suptitle(title + note, fontsize=10)
    return fig


def edge_of_stability(runs, title="Edge of stability"):
    """``runs``: ``{(eta, label): {"steps", "lambda_max", "eval_steps", "train_loss"}}``, e.g. label "GD" and
    "SGD (B = 8)". Left: lambda_max against the step with a dotted line at 2/eta per eta (one colour per eta; GD
    solid, SGD dashed). Right: the training loss (log scale)."""
    fig = Figure(figsize=(11.0, 4.4), layout="constrained")
    left, right = fig.subplots(1, 2)
    etas = sorted({eta for eta, _ in runs})
    labels = list(dict.fromkeys(label for _, label in runs))
    styles = ("-", "--", "-.", ":")
    for (eta, label), r in runs.items():
        color = PALETTE[etas.index(eta) % len(PALETTE)]
        style = styles[labels.index(label) % len(styles)]
        left.plot(r["steps"], r["lambda_max"], color=color, linestyle=style, label=f"{label}, η = {eta:g}")
        right.plot(r["eval_steps"], r["train_loss"], color=color, linestyle=style, label=f"{label}, η = {eta:g}")
    for eta in etas:
        left.axhline(2 / eta, color=PALETTE[etas.index(eta) % len(PALETTE)], linestyle=":", linewidth=1)
    left.set_xlabel("step")
    left.set_ylabel("λ_max of the training loss")
    left.set_title("top Hessian eigenvalue (dotted: 2/η)", fontsize=10)
    right.set_yscale("log")
    right.set_xlabel("step")
    right.set_ylabel("training loss (MSE)")
    right.set_title("training loss", fontsize=10)
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    return fig


# ---- Keskar's Figure 6 --------------------------------------------------------------------------------------------

def curvature_vs_training_loss(panels, title="Sharpness against the training loss along training"):
    """Keskar et al.'s Figure 6: ``panels = {panel title: (ylabel, {label: [(train_loss: (n,), measure: (n,)),
    ...]})}``, one line per run (e.g. per seed) through its snapshots, colored by label (SB blue, LB red); log-log axes
    with the loss axis reversed, so that training runs from left to right. Non-positive values are left out (log
    axes)."""
    fig, axes = panel_grid(len(panels), 5.0, 3.8)
    for ax, (name, (ylabel, runs)) in zip(axes, panels.items()):
        for i, (label, lines) in enumerate(runs.items()):
            for j, (loss, measure) in enumerate(lines):
                loss, measure = np.asarray(loss, dtype=float), np.asarray(measure, dtype=float)
                keep = (loss > 0) & (measure > 0)
                ax.plot(loss[keep], measure[keep], marker="o", markersize=3, color=color_for(label, i),
                        label=label if j == 0 else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("training loss (at the snapshot)")
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return finish(fig, axes[len(panels):], title)


# ---- approximations against the exact matrices -----------------------------------------------------------------

def grouped_bars(groups, panels, title):
    """One panel per entry of ``panels``: ``{title: {"ylabel": str, "log": bool, "values": {series: (S, n) or
    (n,)}, "colors": {series: color}}}`` ("colors" optional: the palette in order otherwise): for each of the n
    ``groups`` one bar per series (its mean over the S seeds, an error bar of one std), the series side by side."""
    items = list(panels.items())
    fig, axes = panel_grid(len(items), 4.6, 3.4, columns=2)
    for ax, (name, spec) in zip(axes, items):
        series = list(spec["values"].items())
        width = 0.8 / max(len(series), 1)
        x = np.arange(len(groups))
        for i, (label, values) in enumerate(series):
            mean, std, n = _mean_std(values)
            ax.bar(x + (i - (len(series) - 1) / 2) * width, mean, width, yerr=std if n > 1 else None, capsize=2,
                   color=spec.get("colors", {}).get(label, PALETTE[i % len(PALETTE)]), label=label,
                   error_kw={"linewidth": 0.8})
        ax.set_xticks(x, [str(g) for g in groups])
        ax.set_ylabel(spec["ylabel"])
        if spec.get("log"):
            ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.grid(True, axis="y", which="major", alpha=0.3)
        ax.legend(fontsize=7)
    return finish(fig, axes[len(items):], title)


def ranked_spectra(panels, top=None, title="Eigenvalues against their rank"):
    """One log-log panel per entry of ``panels``: ``{title: {label: (P,) eigenvalues}}``, each matrix's positive
    eigenvalues in descending order against their rank (the first ``top``; those below ``1e-10 max|lambda|``, zero
    up to rounding, are left out); a label starting with "exact" is drawn black and thick, the others in the
    palette."""
    items = list(panels.items())
    fig, axes = panel_grid(len(items), 5.2, 4.0, columns=2)
    for ax, (name, spectra) in zip(axes, items):
        others = 0
        for label, values in spectra.items():
            v = np.sort(np.asarray(values, float))[::-1]
            v = v[v > _zero_tolerance([v])][:top]
            exact = str(label).startswith("exact")
            style = {"color": "k", "linewidth": 2.0} if exact else {"color": PALETTE[others % len(PALETTE)],
                                                                    "linewidth": 1.1}
            others += 0 if exact else 1
            ax.plot(np.arange(1, v.size + 1), v, label=label, linestyle="--" if "Gauss" in str(label) and exact
                    else "-", **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("rank (1 = largest)")
        ax.set_ylabel("eigenvalue (positive ones)")
        ax.set_title(name, fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    return finish(fig, axes[len(items):], title)
