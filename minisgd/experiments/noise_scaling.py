r"""noise-scaling: a batch of m costs O(m) but cuts the gradient noise only by O(sqrt(m)).

Three kinds of point (the ``part`` of each):

* ``noise`` (one per state and seed): at a network's parameters (``init``, or after ``train_steps`` SGD steps,
  ``trained``) on N MNIST images, the exact :math:`\operatorname{tr}\Sigma` of the per-example gradients
  (:func:`minisgd.theory.noise.gradient_noise`), then for every m = 1, 2, 4, ..., N the measured mean of
  :math:`\lVert g_B - g\rVert^2` over ``draws`` random batches, drawn without and with replacement, against the
  closed forms :math:`\operatorname{tr}\Sigma\,(N - m) / (m (N - 1))` and :math:`\operatorname{tr}\Sigma / m`. Each
  comparison carries a z-score (measured minus predicted, over the standard error of the mean of the draws).
* ``timing`` (one): the wall time of one minibatch gradient of a larger network (``timing_sizes``, float32)
  against m: the cost side, which grows as m once m is large enough to fill the machine.
* ``exact`` (one per seed): N = ``exact_examples`` images and a small network, every batch enumerated
  (:func:`minisgd.theory.noise.enumerate_batches`): the batch mean equals g and the batch covariance equals the formula
  (both schemes, every m up to N/2), and the expected loss after one SGD step against the second-order
  prediction :math:`L - \eta\lVert g\rVert^2 + \frac{\eta^2}{2}(g^\top H g + \operatorname{tr}(H C_m))`, whose
  error must fall as :math:`\eta^3`.

The summary gives the fitted slopes (-1/2 for the noise, 1 for the cost, 3 for the error of the loss
prediction), the largest z-score, and Goodfellow's diminishing returns as a table: what each doubling of m costs
and what it buys.
"""
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..core.mlp import MLP
from ..training.train import train, TrainConfig
from ..theory import noise
from ..errors import ConfigError
from . import Scenario, between, one_of
from .inputs import arrays, geometric_sizes, mnist
from .report import markdown_table, pm, where

PARTS = ("noise", "timing", "exact")


@dataclass(frozen=True)
class Config:
    """noise-scaling; the defaults are the full-size run (about 3 min with --jobs 2 on 2 cores)."""

    n_train: int = 4096  # N, stratified MNIST training subset (a power of 2: the largest batch is all of it)
    pool: int = 4  # average pooling: 4 gives 7x7 = 49 inputs
    hidden: tuple[int, ...] = (64,)  # hidden widths of the network whose noise is measured
    activation: str = "tanh"  # hidden nonlinearity
    states: tuple[str, ...] = ("init", "trained")  # where the noise is measured: at init and/or after training
    train_steps: int = 300  # SGD steps (lr 0.1, batch 64) from init to the "trained" state
    draws: int = 400  # random batches per batch size and scheme
    timing_sizes: tuple[int, ...] = (784, 512, 512, 10)  # the network timed (float32, random inputs)
    timing_max_batch: int = 8192  # largest batch timed
    timing_seconds: float = 0.3  # time spent timing each batch size (median of the repeats)
    exact_examples: int = 12  # N of the enumeration (924 subsets of 6 at N = 12)
    exact_hidden: tuple[int, ...] = (8,)  # the small network of the enumeration (P = 490 with 49 inputs)
    exact_loss_batch: int = 3  # m of the one-step loss check
    etas: tuple[float, ...] = (1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2, 3.2e-2)  # step sizes of the one-step loss check
    seed: int = 0  # first seed (initial parameters, data of the exact part, batch draws)
    seeds: int = 3  # number of seeds
    device: str = "cpu"  # only "cpu": the timing and the enumeration are CPU measurements

    def __post_init__(self):
        if self.device != "cpu":
            raise ConfigError("noise-scaling runs on the CPU only (device='cpu'): it times CPU steps and enumerates")


CHECKS = {"states": one_of("init", "trained"), "exact_examples": between(2, 14)}

QUICK = dict(n_train=1024, hidden=(32,), train_steps=100, draws=150, timing_sizes=(196, 256, 10),
             timing_max_batch=2048, timing_seconds=0.05, exact_examples=10, seeds=1)


def batch_sizes(n, near_full=False):
    """1, 2, 4, ... below n, then n; with ``near_full`` also 3n/4, 7n/8, 15n/16 (where the finite-population
    factor bends the noise down to zero at n)."""
    sizes = geometric_sizes(1, n)
    if near_full:
        sizes += [n - n // 4, n - n // 8, n - n // 16]
    return sorted(set(s for s in sizes if 1 <= s < n)) + [n]


def grid(config):
    base = {k: v for k, v in asdict(config).items() if k not in ("seeds", "seed", "states")}
    seeds = range(config.seed, config.seed + config.seeds)
    return ([{**base, "part": "noise", "state": s, "seed": seed} for seed in seeds for s in config.states]
            + [{**base, "part": "timing", "state": None, "seed": config.seed}]
            + [{**base, "part": "exact", "state": None, "seed": seed} for seed in seeds])


def _network(p, hidden):
    ds = mnist(n_train=p["n_train"], pool=p["pool"])
    X, y, _, _ = arrays(ds)
    net = MLP([ds.input_dim, *hidden, ds.num_classes], activation=p["activation"], loss="cross_entropy")
    return net, net.init(seed=p["seed"]), X, y


def _noise_point(p):
    net, theta, X, y = _network(p, p["hidden"])
    if p["state"] == "trained":
        cfg = TrainConfig(optimizer="sgd", lr=0.1, batch_size=64, max_steps=p["train_steps"], eval_every=None,
                          seed=p["seed"], log_grad_norm=False)
        theta = train(net, theta, (X, y), cfg, progress=False).theta
    N = X.shape[0]
    stats = noise.gradient_noise(net, theta, X, y)
    g = net.loss_and_grad(theta, X, y)[1]
    rng = np.random.default_rng([p["seed"], 7])
    sizes = batch_sizes(N, near_full=True)
    out = {"batch_sizes": np.array(sizes), "trace": stats.trace, "grad_norm_sq": stats.grad_norm_sq,
           "noise_scale": stats.noise_scale, "num_examples": N, "num_params": net.num_params}
    for scheme, replacement in (("without", False), ("with", True)):
        measured, stderr = [], []
        for m in sizes:
            d2 = np.empty(p["draws"])  # |g_B - g|^2 of each draw
            for r in range(p["draws"]):
                idx = rng.choice(N, m, replace=replacement)
                d2[r] = np.sum((net.loss_and_grad(theta, X[idx], y[idx])[1] - g) ** 2)
            measured.append(d2.mean())
            stderr.append(d2.std(ddof=1) / np.sqrt(p["draws"]))
        out[f"measured_{scheme}"] = np.array(measured)
        out[f"stderr_{scheme}"] = np.array(stderr)
        out[f"predicted_{scheme}"] = np.array([stats.minibatch_variance(m, replacement) for m in sizes])
    return out


def _timing_point(p):
    sizes = list(p["timing_sizes"])
    net = MLP(sizes, activation="relu", loss="cross_entropy")
    theta = net.init(seed=p["seed"], dtype="float32")
    rng = np.random.default_rng(p["seed"])
    ms, seconds = batch_sizes(p["timing_max_batch"]), []
    for m in ms:
        X = rng.standard_normal((m, sizes[0])).astype(np.float32)
        y = rng.integers(0, sizes[-1], m)
        net.loss_and_grad(theta, X, y)  # warm-up (first-call allocations)
        times, spent = [], 0.0
        while spent < p["timing_seconds"] or len(times) < 3:
            start = time.perf_counter()
            net.loss_and_grad(theta, X, y)
            times.append(time.perf_counter() - start)
            spent += times[-1]
        seconds.append(float(np.median(times)))
    return {"batch_sizes": np.array(ms), "seconds": np.array(seconds), "num_params": net.num_params}


def _exact_point(p):
    ds = mnist(n_train=p["n_train"], pool=p["pool"])
    X, y, _, _ = arrays(ds)
    idx = np.random.default_rng([p["seed"], 11]).choice(X.shape[0], p["exact_examples"], replace=False)
    X, y = X[idx], y[idx]
    N = X.shape[0]
    net = MLP([ds.input_dim, *p["exact_hidden"], ds.num_classes], activation=p["activation"], loss="cross_entropy")
    theta = net.init(seed=p["seed"])
    G = net.per_example_grads(theta, X, y)  # (N, P)
    loss, g = net.loss_and_grad(theta, X, y)
    Sigma = noise.gradient_covariance(G)
    scale = float(np.abs(Sigma).max())
    out = {"num_params": net.num_params, "num_examples": N, "sigma_max": scale}
    for scheme, replacement in (("without", False), ("with", True)):
        mean_err, cov_err = [], []
        for m in range(1, N // 2 + 1):
            mean, cov = noise.minibatch_moments(G, m, replacement)
            mean_err.append(float(np.abs(mean - g).max()))
            cov_err.append(float(np.abs(cov - noise.minibatch_covariance(Sigma, m, N, replacement)).max()))
        out[f"mean_error_{scheme}"] = np.array(mean_err)
        out[f"cov_error_{scheme}"] = np.array(cov_err)
    etas = np.array(p["etas"])
    m = p["exact_loss_batch"]
    H = net.hessian(theta, X, y)
    for scheme, replacement in (("without", False), ("with", True)):
        exact = noise.expected_loss_after_step(net, theta, X, y, m, etas, replacement)
        C = noise.minibatch_covariance(Sigma, m, N, replacement)
        predicted = loss + noise.expected_loss_change(g, H, C, etas)
        out[f"loss_exact_{scheme}"] = exact
        out[f"loss_predicted_{scheme}"] = predicted
        out[f"loss_first_order_{scheme}"] = loss - etas * float(g @ g)
    out["etas"] = etas
    return out


def run_point(point):
    """One part (see the module docstring) at one state and seed."""
    return {"noise": _noise_point, "timing": _timing_point, "exact": _exact_point}[point["part"]](point)


# ---- summary ---------------------------------------------------------------------------------------------

def _slope(x, y):
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def noise_slope(result, scheme="with", upto=None):
    """Slope of ``log sqrt(measured |g_B - g|^2)`` against log m over m <= ``upto`` (default N/16: before the bend)."""
    m = result["batch_sizes"]
    keep = m <= (upto or result["num_examples"] // 16)
    return _slope(m[keep], np.sqrt(result[f"measured_{scheme}"][keep]))


def timing_slope(result, from_batch=None):
    """Slope of log time against log m over the upper half of the batch sizes (m >= ``from_batch``)."""
    m = result["batch_sizes"]
    keep = m >= (from_batch or m[len(m) // 2])
    return _slope(m[keep], result["seconds"][keep])


def z_scores(result, scheme):
    """(measured - predicted) / stderr for every m < N (at m = N without replacement both are 0 up to rounding)."""
    keep = result["predicted_" + scheme] > 0
    return ((result["measured_" + scheme] - result["predicted_" + scheme]) / result["stderr_" + scheme])[keep]


def loss_error_slope(result, scheme):
    """Slope of ``log |exact - second-order prediction|`` against ``log eta``."""
    return _slope(result["etas"], np.abs(result[f"loss_exact_{scheme}"] - result[f"loss_predicted_{scheme}"]))


def summarize(config, records):
    lines, tables = [], {}
    noise_recs = where(records, part="noise")
    rows = []
    for state in config.states:
        rs = where(noise_recs, state=state)
        if not rs:
            continue
        res = [r["result"] for r in rs]
        zs = np.concatenate([np.abs(z_scores(r, s)) for r in res for s in ("with", "without")])
        half = [r["measured_without"][list(r["batch_sizes"]).index(r["num_examples"] // 2)]
                / r["measured_with"][list(r["batch_sizes"]).index(r["num_examples"] // 2)] for r in res]
        rows.append({"state": state, "seeds": len(rs), "tr Σ": pm([r["trace"] for r in res], digits=3),
                     "‖g‖²": pm([r["grad_norm_sq"] for r in res], digits=4),
                     "noise scale tr Σ / ‖g‖²": pm([r["noise_scale"] for r in res], digits=1),
                     "slope (with repl.)": pm([noise_slope(r, "with") for r in res], digits=3),
                     "slope (without)": pm([noise_slope(r, "without") for r in res], digits=3),
                     "largest z (abs)": f"{zs.max():.2f} of {zs.size}",
                     "without/with at m = N/2": pm(half, digits=3),
                     "at m = N (without)": f"{max(r['measured_without'][-1] for r in res):.1e}"})
    r0 = noise_recs[0]["result"] if noise_recs else None
    if r0 is not None:
        N = r0["num_examples"]
        lines += [f"**Noise against batch size** (MNIST, N = {N} images pooled to {28 // config.pool}x"
                  f"{28 // config.pool}, {'-'.join(map(str, [28 * 28 // config.pool ** 2, *config.hidden, 10]))} "
                  f"{config.activation}, P = {r0['num_params']:,}; {config.draws} random batches per size and "
                  "scheme). Slopes of log std(g_B - g) against log m over m <= N/16 (theory: -0.5); z-scores of "
                  "the measured mean |g_B - g|² against the closed form (theory: |z| < 3 or so); at m = N/2 the "
                  f"finite-population factor predicts without/with = (N - m)/(N - 1) = {(N / 2) / (N - 1):.3f}.",
                  "", markdown_table(rows), ""]
        tables["noise"] = rows
    timing = where(records, part="timing")
    if timing:
        t = timing[0]["result"]
        lines.append(f"**Cost per step**: one minibatch gradient of a {'-'.join(map(str, config.timing_sizes))} ReLU "
                     f"network (float32, P = {t['num_params']:,}): slope of log time against log m over the upper "
                     f"half of the sizes = {timing_slope(t):.2f} (theory: 1 once the machine is busy).")
        if r0 is not None:
            rows = diminishing_returns(t, r0)
            lines += ["", "**Diminishing returns** (Goodfellow et al. 2016, 8.1.3): each doubling of m doubles the "
                      "cost of a step but divides the noise's std by only sqrt 2 (until the finite-population bend "
                      "near N); the noise std is the measured one at the first seed's first state, relative to "
                      "m = 1.", "", markdown_table(rows), ""]
            tables["diminishing_returns"] = rows
    exact = where(records, part="exact")
    if exact:
        res = [r["result"] for r in exact]
        worst = lambda key: max(float(np.max(r[key])) for r in res)  # noqa: E731
        lines += [f"**Exact enumeration** (N = {res[0]['num_examples']} images, P = {res[0]['num_params']}, every "
                  f"batch of m = 1 ... {res[0]['num_examples'] // 2}, {len(res)} seed(s)): largest |E g_B - g| "
                  f"{max(worst('mean_error_without'), worst('mean_error_with')):.1e}; largest |Cov g_B - formula| "
                  f"{max(worst('cov_error_without'), worst('cov_error_with')):.1e} (entries of Σ up to "
                  f"{max(r['sigma_max'] for r in res):.2g}).",
                  f"**One SGD step** (m = {config.exact_loss_batch}): slope of log |E L(θ - η g_B) - second-order "
                  f"prediction| against log η: without replacement {pm([loss_error_slope(r, 'without') for r in res])}"
                  f", with {pm([loss_error_slope(r, 'with') for r in res])} (theory: 3).", ""]
    return tables, "\n".join(lines)


def diminishing_returns(timing, noise_result):
    """Rows m: time per step, its ratio to m/2, the noise std (relative to m = 1) and its ratio to m/2."""
    t_sizes, seconds = list(timing["batch_sizes"]), timing["seconds"]
    std = np.sqrt(noise_result["measured_without"])
    n_sizes = list(noise_result["batch_sizes"])
    rows, prev = [], None
    for m in n_sizes:
        if m not in t_sizes or std[n_sizes.index(m)] <= 1e-6 * std[0]:  # the full batch: no noise (rounding)
            continue
        t, s = seconds[t_sizes.index(m)], std[n_sizes.index(m)] / std[0]
        row = {"m": m, "ms per step": f"{1e3 * t:.3g}", "cost vs m/2": "", "noise std vs m = 1": f"{s:.3g}",
               "noise divided by (vs m/2)": ""}
        if prev is not None:
            row["cost vs m/2"] = f"x{t / prev[0]:.2f}"
            row["noise divided by (vs m/2)"] = f"{prev[1] / s:.3f}"
        rows.append(row)
        prev = (t, s)
    return rows


def figures(config, records):
    from ..plotting import measured_vs_predicted
    panels = {}
    for state in config.states:
        rs = [r["result"] for r in where(records, part="noise", state=state)]
        if not rs:
            continue
        m = rs[0]["batch_sizes"]
        series = []
        for scheme, color in (("with", "#1f77b4"), ("without", "#d62728")):
            measured = np.sqrt(np.array([r[f"measured_{scheme}"] for r in rs]))
            keep = measured.min(axis=0) > 1e-6 * measured[:, 0].min()  # not the full batch's rounding-level zero
            series.append({"label": f"measured, {scheme} replacement", "x": m[keep], "color": color,
                           "y": measured[:, keep]})
            series.append({"label": f"predicted, {scheme}", "x": m, "color": color, "predicted": True,
                           "y": np.sqrt(np.mean([r[f"predicted_{scheme}"] for r in rs], axis=0))})
        y1 = float(np.sqrt(np.mean([r["trace"] for r in rs])))
        panels[f"gradient noise, {state} (N = {rs[0]['num_examples']})"] = {
            "xlabel": "batch size m", "ylabel": "std of g_B around g: sqrt E|g_B - g|²", "series": series,
            "slope": (-0.5, 1.0, y1)}
    timing = where(records, part="timing")
    if timing:
        t = timing[0]["result"]
        panels["cost of one step"] = {
            "xlabel": "batch size m", "ylabel": "seconds per minibatch gradient (median)",
            "series": [{"label": "-".join(map(str, config.timing_sizes)) + " float32", "x": t["batch_sizes"],
                        "y": t["seconds"]}],
            "slope": (1.0, float(t["batch_sizes"][-1]), float(t["seconds"][-1]))}
    exact = [r["result"] for r in where(records, part="exact")]
    if exact:
        etas = exact[0]["etas"]
        series = []
        for scheme, color in (("with", "#1f77b4"), ("without", "#d62728")):
            series.append({"label": f"second order, {scheme} repl.", "x": etas, "color": color,
                           "y": np.array([np.abs(r[f"loss_exact_{scheme}"] - r[f"loss_predicted_{scheme}"])
                                          for r in exact])})
            series.append({"label": f"first order only, {scheme}", "x": etas, "color": color, "marker": "x",
                           "y": np.array([np.abs(r[f"loss_exact_{scheme}"] - r[f"loss_first_order_{scheme}"])
                                          for r in exact])})
        err = np.abs(exact[0]["loss_exact_with"] - exact[0]["loss_predicted_with"])
        panels[f"one SGD step, m = {config.exact_loss_batch}: error of the prediction"] = {
            "xlabel": "step size η", "ylabel": "|E L(θ - η g_B) - prediction| (exact E)", "series": series,
            "slope": (3.0, float(etas[-1]), float(err[-1]))}
    return {"noise_scaling": measured_vs_predicted(
        panels, "Gradient noise against batch size: measured and predicted, the cost, and the one-step loss")}


SCENARIO = Scenario(
    name="noise-scaling",
    description="gradient noise against batch size (slope -1/2, finite-population bend), cost per step (slope 1), "
                "exact enumeration",
    config_class=Config, quick=QUICK, grid=grid, run_point=run_point, summarize=summarize, figures=figures,
    checks=CHECKS)
