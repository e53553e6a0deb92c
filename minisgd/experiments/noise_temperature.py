r"""noise-temperature: runs of plain SGD with the same temperature eta / B (1 - B/N) end at the same sharpness and
test accuracy, runs with different temperatures do not (Jastrzebski et al. 2017; Smith and Le 2018).

The SDE approximation of SGD (:mod:`minisgd.theory.temperature`) depends on the step eta and the batch B only through
the temperature T = eta / B (1 - B/N) (batches drawn without replacement from N examples; plain SGD, no momentum, so
mu = 0 in eta / (B (1 - mu))), and it runs in the time t = eta * steps. The grid is temperatures x batch sizes x
seeds; each point sets eta = T B / (1 - B/N) (:func:`~minisgd.theory.temperature.lr_for_temperature`) and trains from
the seed's initial parameters (the same for every T and B) with that constant step.

Two budgets (``protocols``):

* ``"time"``: every run trains for the same SDE time eta * steps = ``time``. This is the comparison the SDE
  makes: two runs at one temperature follow the same stochastic dynamics for the same span, so they should end
  alike; at another temperature the same span of time is a different process. At one temperature it is also
  (up to the 1 - B/N factor) the same number of epochs, since epochs = steps B / N = time (1 - B/N) / (T N).
* ``"epochs"``: every run trains for ``epochs`` epochs, the usual protocol. Within a temperature it nearly
  coincides with ``"time"``; between temperatures it gives the cold runs less time and the hot runs more.

At the end, on the whole training set: the top Hessian eigenvalue (Lanczos on exact HVPs), the exact Hessian trace,
the training loss and the test accuracy and loss on all 10,000 test images.

Where the SDE view is not expected to hold, the run is flagged and left out of the "SDE regime" statistics: a run
that diverged; one that collapsed (its final training loss is above half the loss at the start: a large step can
kill the ReLUs and leave the network at chance, at a loss of log 10, without diverging); and one whose step
is large against the curvature it ends at, eta lambda_max / 2 > ``edge`` (gradient descent is linearly stable at a
minimum only for eta lambda_max < 2, and the SDE is a small-step approximation).

Size: 4,096 stratified MNIST training images average-pooled to 7x7, a 49-64-10 ReLU network (P = 3,850).
"""
from dataclasses import asdict, dataclass

import numpy as np

from ..training.train import DivergenceError, train, TrainConfig
from ..curvature.landscape import evaluate
from ..curvature.eigen import hessian_trace, top_eigenvalues
from ..theory.temperature import lr_for_temperature, sde_temperature, steps_for_time, variance_fractions
from ..errors import ConfigError
from . import Scenario, one_of
from .inputs import mnist_network
from .report import markdown_table, mean_std, pm

PROTOCOLS = ("time", "epochs")
# the measures compared across the grid: (result key, label, scale, compared on a log scale)
MEASURES = (("top_eigenvalue", "λ_max", 1.0, True), ("trace", "tr H", 1.0, True),
            ("test_acc", "test acc (%)", 100.0, False), ("gap", "test - train loss", 1.0, False),
            ("train_loss", "train loss", 1.0, False))


@dataclass(frozen=True)
class Config:
    """noise-temperature; the defaults are the full-size run (2.3M SGD steps: 3.6 min with --jobs 2 on 2 quiet
    cores, 22 min on a machine at load 13)."""

    n_train: int = 4096  # stratified MNIST training subset (N)
    pool: int = 4  # average pooling: 4 gives 7x7 = 49 inputs
    hidden: tuple[int, ...] = (64,)  # hidden widths
    activation: str = "relu"  # hidden nonlinearity
    init: str = "he"  # initializer
    temperatures: tuple[float, ...] = (1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2)  # T = eta / B (1 - B/N), a 16x span
    batch_sizes: tuple[int, ...] = (16, 32, 64, 128, 256)  # B; eta = T B / (1 - B/N)
    protocols: tuple[str, ...] = PROTOCOLS  # budgets: "time" (eta * steps = time) and/or "epochs"
    time: float = 2000.0  # SDE time eta * steps of every "time" run
    epochs: int = 120  # epochs of every "epochs" run (what T = 4e-3 takes at equal time, at small B)
    edge: float = 0.5  # flag runs with eta * lambda_max / 2 above this (curvature-limited, outside the SDE regime)
    dtype: str = "float64"  # training and measurement dtype
    seed: int = 0  # first seed (initial parameters and batch order)
    seeds: int = 3  # number of seeds
    device: str = "cpu"  # "cpu" or "gpu"

    def __post_init__(self):
        if not all(1 <= b < self.n_train for b in self.batch_sizes):
            raise ConfigError(f"batch sizes must lie in [1, n_train = {self.n_train}) (the full batch has no noise "
                              f"and no temperature), got {self.batch_sizes}")


CHECKS = {"protocols": one_of(*PROTOCOLS)}

QUICK = dict(n_train=2048, hidden=(32,), temperatures=(2e-3, 6e-3, 1.8e-2), batch_sizes=(16, 64), protocols=("time",),
             time=600.0, seeds=2)


def grid(config):
    base = {k: v for k, v in asdict(config).items()
            if k not in ("seeds", "seed", "temperatures", "batch_sizes", "protocols")}
    return [{**base, "protocol": protocol, "temperature": t, "batch_size": b, "seed": config.seed + s}
            for protocol in config.protocols for s in range(config.seeds) for t in config.temperatures
            for b in config.batch_sizes]


def run_point(point):
    """Train with plain SGD at the point's temperature and batch size for its budget; measure at the end."""
    p = point
    net, theta0, (X, y, Xt, yt) = mnist_network(p)
    N, B = X.shape[0], p["batch_size"]
    lr = lr_for_temperature(p["temperature"], B, N)
    budget = ({"max_steps": steps_for_time(p["time"], lr)} if p["protocol"] == "time" else {"epochs": p["epochs"]})
    cfg = TrainConfig(optimizer="sgd", lr=lr, batch_size=B, sampling="shuffle", eval_every=None, seed=p["seed"],
                      log_grad_norm=False, **budget)
    out = {"lr": lr, "temperature_check": sde_temperature(lr, B, N), "initial_loss": float(net.loss(theta0, X, y)),
           "initial_top_eigenvalue": float(top_eigenvalues(net, theta0, X, y, seed=p["seed"]).values[0])}
    try:
        result = train(net, theta0, (X, y), cfg, progress=False)
    except DivergenceError as exc:
        nan = float("nan")
        return {**out, "diverged": True, "collapsed": False, "steps": exc.step, "epochs": exc.step * B / N,
                "sde_time": lr * exc.step, "train_seconds": nan, **{k: nan for k in (
                    "train_loss", "train_acc", "test_loss", "test_acc", "gap", "top_eigenvalue", "trace",
                    "stability")}}
    theta = result.theta
    train_loss, train_acc = evaluate(net, theta, X, y)
    test_loss, test_acc = evaluate(net, theta, Xt, yt)
    lam = float(top_eigenvalues(net, theta, X, y, seed=p["seed"]).values[0])
    return {**out, "diverged": False, "collapsed": collapsed(train_loss, out["initial_loss"]), "steps": result.step,
            "epochs": result.step * B / N, "sde_time": lr * result.step, "train_seconds": result.wall_time,
            "train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss, "test_acc": test_acc,
            "gap": test_loss - train_loss, "top_eigenvalue": lam, "trace": hessian_trace(net, theta, X, y),
            "stability": lr * lam / 2}


def collapsed(train_loss, initial_loss):
    """A run that did not learn: its final training loss is above half the loss at the start."""
    return bool(train_loss > initial_loss / 2)


def in_sde_regime(result, edge):
    """A run the SDE view speaks for: it did not diverge or collapse, and eta lambda_max / 2 <= ``edge``."""
    return flags(result, edge) == ""


def cells(config, records, protocol, key, scale=1.0, sde_only=False):
    """The measure ``key`` of one protocol as a ``(temperatures, batch sizes, seeds)`` array, NaN where a point is
    missing, diverged or collapsed (a network at chance says nothing about the temperature), or, with ``sde_only``,
    flagged for any reason."""
    seeds = sorted({r["point"]["seed"] for r in records})
    out = np.full((len(config.temperatures), len(config.batch_sizes), max(len(seeds), 1)), np.nan)
    for r in records:
        p = r["point"]
        why = flags(r["result"], config.edge)
        if p["protocol"] != protocol or why in ("diverged", "collapsed") or (sde_only and why):
            continue
        out[config.temperatures.index(p["temperature"]), config.batch_sizes.index(p["batch_size"]),
            seeds.index(p["seed"])] = r["result"][key] * scale
    return out


def seed_means(values):
    """The mean over the last (seed) axis of the finite values, NaN where there are none: ``(T, B, S) -> (T, B)``."""
    finite = np.isfinite(values)
    count = finite.sum(axis=-1)
    return np.where(count > 0, np.where(finite, values, 0.0).sum(axis=-1) / np.maximum(count, 1), np.nan)


def flags(result, edge):
    """A short note of why a run is outside the SDE regime ("" when it is inside)."""
    if result["diverged"]:
        return "diverged"
    if collapsed(result["train_loss"], result["initial_loss"]):
        return "collapsed"
    return f"ηλ/2 = {result['stability']:.2f} > {edge:g}" if result["stability"] > edge else ""


def scaling_statistics(config, records, protocol, key, scale, log, sde_only):
    """How well the temperature alone predicts a measure (``key`` times ``scale``, or its log), over the runs of
    one protocol: the nested variance fractions (between temperatures, between batch sizes at one temperature,
    between seeds), Kendall's tau of the measure with T and with B, and the least-squares slopes a, b of
    ``measure ~ c + a log T + b log B``; the SDE view predicts b = 0."""
    from scipy.stats import kendalltau
    values = cells(config, records, protocol, key, scale, sde_only=sde_only)
    T, Bs, _ = np.meshgrid(config.temperatures, config.batch_sizes, range(values.shape[2]), indexing="ij")
    ok = np.isfinite(values)
    x = np.log(values[ok]) if log else values[ok]
    if x.size < 3:
        return None
    fractions = variance_fractions(x, T[ok], Bs[ok])
    design = np.column_stack([np.ones(x.size), np.log(T[ok]), np.log(Bs[ok])])  # (n, 3)
    coef, *_ = np.linalg.lstsq(design, x, rcond=None)
    return {**fractions, "tau_T": float(kendalltau(T[ok], x).statistic),
            "tau_B": float(kendalltau(Bs[ok], x).statistic), "slope_T": float(coef[1]),
            "slope_B": float(coef[2]), "runs": int(x.size)}


def monotone_in_temperature(config, records, protocol, key="top_eigenvalue", sde_only=False):
    """For each batch size, whether the seed mean of ``key`` falls with every step up in temperature."""
    means = seed_means(cells(config, records, protocol, key, sde_only=sde_only))  # (T, B)
    return {b: bool(np.all(np.diff(means[:, j][np.isfinite(means[:, j])]) < 0))
            for j, b in enumerate(config.batch_sizes)}


def _table(config, records, protocol):
    rows = []
    for t in config.temperatures:
        for b in config.batch_sizes:
            rs = [r for r in records if r["point"]["protocol"] == protocol and r["point"]["temperature"] == t
                  and r["point"]["batch_size"] == b]
            if not rs:
                continue
            res = [r["result"] for r in rs]
            get = lambda key, scale=1.0: [x[key] * scale for x in res]  # noqa: E731
            notes = sorted({flags(x, config.edge).split(" = ")[0].replace("ηλ/2", f"ηλ/2 > {config.edge:g}")
                            for x in res} - {""})
            rows.append({"T": f"{t:.2g}", "B": b, "η": f"{res[0]['lr']:.3g}",
                         "steps": f"{mean_std(get('steps'))[0]:.0f}", "epochs": f"{mean_std(get('epochs'))[0]:.1f}",
                         "train loss": pm(get("train_loss"), digits=4), "test acc (%)": pm(get("test_acc", 100)),
                         "gap": pm(get("gap"), digits=4), "λ_max": pm(get("top_eigenvalue"), digits=3),
                         "tr H": pm(get("trace"), digits=1), "ηλ/2": pm(get("stability")),
                         "flags": f"{len([x for x in res if flags(x, config.edge)])}/{len(res)}: " + "; ".join(notes)
                         if notes else ""})
    return rows


def summarize(config, records):
    arch = "-".join(map(str, [28 * 28 // config.pool ** 2, *config.hidden, 10]))
    lines = [f"MNIST, {config.n_train} training images (stratified), {arch} {config.activation}, plain SGD (no "
             f"momentum), constant step η = T B / (1 - B/{config.n_train}) for each temperature T and batch B, "
             f"the same start for every (T, B) of a seed. Budgets: " + "; ".join(
                 {"time": f"'time': η × steps = {config.time:g}", "epochs": f"'epochs': {config.epochs} epochs"}[p]
                 for p in config.protocols) + ". Measured at the end on the whole training set (λ_max, tr H, "
             f"train loss) and the 10,000 test images. Mean ± std over seeds. Flagged runs (diverged, collapsed "
             f"or ηλ_max/2 > {config.edge:g}) are left out of the SDE-regime statistics; diverged and collapsed "
             f"ones (at chance) out of all statistics and figures.", ""]
    tables = {}
    for protocol in config.protocols:
        if not [r for r in records if r["point"]["protocol"] == protocol]:
            continue
        rows = _table(config, records, protocol)
        tables[f"{protocol}_cells"] = rows
        lines += [f"### Budget '{protocol}'", "", markdown_table(rows), ""]
        stat_rows = []
        for key, label, scale, log in MEASURES:
            for sde_only in (True, False):
                s = scaling_statistics(config, records, protocol, key, scale, log, sde_only)
                if s is None:
                    continue
                stat_rows.append({"measure": ("log " if log else "") + label,
                                  "runs": f"{s['runs']} ({'SDE regime' if sde_only else 'all trained'})",
                                  "between T": f"{s['between']:.3f}", "B within T": f"{s['within']:.3f}",
                                  "seeds": f"{s['residual']:.3f}", "τ with T": f"{s['tau_T']:+.2f}",
                                  "τ with B": f"{s['tau_B']:+.2f}", "a (log T)": f"{s['slope_T']:+.3f}",
                                  "b (log B)": f"{s['slope_B']:+.3f}"})
        tables[f"{protocol}_scaling"] = stat_rows
        lines += ["Fractions of the variance (nested: between temperatures, between batch sizes at one temperature, "
                  "between seeds), Kendall's τ, and the least-squares coefficients a, b of "
                  "measure ~ c + a log T + b log B (for log λ_max and log tr H: exponents; the SDE view: b = 0):",
                  "", markdown_table(stat_rows), ""]
        for sde_only in (True, False):
            mono = monotone_in_temperature(config, records, protocol, sde_only=sde_only)
            which = "SDE regime" if sde_only else "all trained runs"
            lines.append(f"- λ_max falls with every step up in T ({which}): {sum(mono.values())}/{len(mono)} "
                         "batch sizes"
                         + (f" (not at B = {', '.join(str(b) for b, v in mono.items() if not v)})"
                            if not all(mono.values()) else "") + ".")
        lam = seed_means(cells(config, records, protocol, "top_eigenvalue"))  # (T, B), trained runs
        lines.append("- At one temperature, λ_max at the largest trained B over λ_max at B = "
                     f"{config.batch_sizes[0]} (the SDE view: 1): " + ", ".join(
                         f"T = {t:g}: {row[np.isfinite(row)][-1] / row[0]:.2f} (B = "
                         f"{config.batch_sizes[np.flatnonzero(np.isfinite(row))[-1]]})"
                         for t, row in zip(config.temperatures, lam) if np.isfinite(row[0])) + ".")
        flagged = [row for row in rows if row["flags"]]
        if flagged:
            lines.append("- Flagged (runs of the cell flagged: why): " + ", ".join(
                f"T = {row['T']}, B = {row['B']}, η = {row['η']} ({row['flags']})" for row in flagged) + ".")
        lines.append("")
    return tables, "\n".join(lines) + "\n"


def figures(config, records):
    from ..plotting import versus_temperature
    out = {}
    for protocol in config.protocols:
        if not [r for r in records if r["point"]["protocol"] == protocol]:
            continue
        flagged = np.zeros((len(config.temperatures), len(config.batch_sizes)), dtype=bool)  # any seed flagged
        for r in records:
            if r["point"]["protocol"] == protocol and flags(r["result"], config.edge):
                flagged[config.temperatures.index(r["point"]["temperature"]),
                        config.batch_sizes.index(r["point"]["batch_size"])] = True
        panels = {label: {"values": cells(config, records, protocol, key, scale), "log": log}
                  for key, label, scale, log in MEASURES[:4]}
        budget = f"η × steps = {config.time:g}" if protocol == "time" else f"{config.epochs} epochs"
        arch = "-".join(map(str, [28 * 28 // config.pool ** 2, *config.hidden, 10]))
        out[f"temperature_{protocol}"] = versus_temperature(
            config.temperatures, config.batch_sizes, panels, flagged=flagged,
            title=f"Plain SGD, MNIST {config.n_train} images, {arch} {config.activation}, each run {budget}")
    return out


SCENARIO = Scenario(
    name="noise-temperature",
    description="plain SGD at temperatures eta/B (1 - B/N) x batch sizes (MNIST subset): sharpness and test accuracy "
                "set by the ratio, equal SDE time and equal epochs",
    config_class=Config, quick=QUICK, grid=grid, run_point=run_point, summarize=summarize, figures=figures,
    checks=CHECKS)
