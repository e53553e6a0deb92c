"""What the summaries say: means and spreads over seeds, Markdown tables, and picking records by their point."""
import numpy as np


def epoch_means(history, key="loss"):
    """The per-step history ``key`` averaged over each epoch: ``(E,)``."""
    values, epochs = np.asarray(history[key], float), np.asarray(history["epoch"])
    return np.array([values[epochs == e].mean() for e in np.unique(epochs)])


def mean_std(values):
    """``(mean, sample std)`` of the finite values (std 0 for one value, NaN for none)."""
    v = np.asarray([x for x in values if x is not None], float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def pm(values, scale=1.0, digits=2, significant=False):
    """``"m ± s"`` of ``values * scale``, e.g. ``pm(accs, 100)`` for percentages; ``digits`` decimals, or
    significant digits with ``significant=True`` (for values that span decades)."""
    m, s = mean_std(np.asarray(values, float) * scale)
    if not np.isfinite(m):
        return "n/a"
    kind = "g" if significant else "f"
    return f"{m:.{digits}{kind}} ± {s:.{digits}{kind}}"


def fmt(value, digits=3):
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def markdown_table(rows, columns=None):
    """A Markdown table of ``rows`` (dicts); ``columns`` picks and orders the keys (default: the first row's)."""
    if not rows:
        return "(no rows)"
    columns = list(rows[0]) if columns is None else list(columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def where(records, **match):
    """The records whose point has every ``key == value`` of ``match``."""
    return [r for r in records if all(r["point"].get(k) == v for k, v in match.items())]
