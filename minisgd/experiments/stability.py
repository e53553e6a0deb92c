r"""stability: how curvature limits the step size, for GD and SGD, and the edge of stability.

Two kinds of points.

**thresholds** (one per seed): a teacher-student regression problem with no label noise (d = 4 Gaussian inputs,
a 4-3-1 tanh teacher), N = 16 examples and a 4-5-1 tanh student (P = 31 > N, so it interpolates), MSE loss,
trained to a true global minimizer :math:`\theta^*` (Adam, then Levenberg-Marquardt to a gradient norm of about
1e-13). There the loss is its quadratic model up to third-order terms, with Hessian H (exact), :math:`\lambda_{max}` and
GD's threshold :math:`\eta^* = 2/\lambda_{max}` (:mod:`minisgd.theory.linear_stability`).

* GD with :math:`\eta = r\,\eta^*`, r in ``ratios``: on the quadratic model from :math:`\delta u_1` (top
  eigenvector), and on the real network from :math:`\theta^* + \delta u_1`; the top component
  :math:`u_1^T(\theta_t - \theta^*)` is multiplied by :math:`1 - \eta\lambda_{max}` each step on the model, and
  measured on the network while it is small (between :math:`10^{-3}\delta` and :math:`10\delta`), where the third
  derivative changes the factor by O(δ).
* SGD (batches drawn i.i.d. with replacement, as the trainer's ``sampling="replacement"``): the exact mean-square
  threshold :math:`\eta^*_B` of Wu et al. 2018 for each B, from the per-example Hessians; then SGD on the real
  network from :math:`\theta^* + \delta u` (u random) at :math:`r\,\eta^*_B`, ``sgd_runs`` runs each: the fraction
  that escape (distance to :math:`\theta^*` beyond :math:`100\delta` within ``sgd_steps`` steps), and the
  median factor per step of the curved part :math:`|U_c^T(\theta_t - \theta^*)|` (the flat directions of the
  minimum manifold are not pulled back at all), against the mean-square prediction :math:`\rho(T)^{1/2}`.

**edge of stability** (Cohen et al. 2021, "Gradient descent on neural networks typically occurs at the edge of
stability"), one point per (method, eta, seed): a stratified subset of MNIST (``n_train`` images, 7x7), a tanh MLP
with the MSE loss on one-hot targets (Cohen et al.'s cleanest setting), full-batch GD (``method="gd"``) or SGD with
batch ``sgd_batch`` (``method="sgd"``) at step eta, from the same start; the top Hessian eigenvalue on the whole
training set every ``eig_every`` steps (:func:`minisgd.training.callbacks.every` + ``top_eigenvalue``). GD's
:math:`\lambda_{max}` rises (progressive sharpening) to about :math:`2/\eta` and hovers there; SGD's settles lower.
"""
from dataclasses import asdict, dataclass

import numpy as np

from ..core.mlp import MLP
from ..training.callbacks import every, StopTraining, top_eigenvalue
from ..training.train import train, TrainConfig
from ..theory import linear_stability as st
from ..theory.teacher_student import make_teacher_student
from ..errors import ConfigError
from . import Scenario, between
from .inputs import mnist
from .report import markdown_table, pm, where

METHODS = ("gd", "sgd")


@dataclass(frozen=True)
class Config:
    """stability; the defaults are the full-size run (30 min with --jobs 1 on the shared 2-core machine under a
    load of 8-14, 2 seeds; the edge-of-stability GD points are most of it)."""

    # thresholds: the teacher-student minimizer
    ts_inputs: int = 4  # d, Gaussian inputs
    ts_teacher: tuple[int, ...] = (3,)  # teacher hidden widths
    ts_student: tuple[int, ...] = (5,)  # student hidden widths (P = 31 for d = 4)
    ts_examples: int = 16  # N, fewer than P: the student interpolates
    adam_steps: int = 1000  # full-batch Adam (lr 1e-2) before Levenberg-Marquardt finishes the minimization
    ratios: tuple[float, ...] = (0.9, 0.98, 1.02, 1.1)  # GD steps as multiples of 2 / lambda_max
    gd_steps: int = 300  # GD steps from the perturbed minimizer
    delta: float = 1e-4  # size of the perturbation of the minimizer
    sgd_batches: tuple[int, ...] = (1, 2, 4, 8, 16)  # batch sizes for SGD's mean-square threshold
    sgd_ratios: tuple[float, ...] = (0.5, 0.8, 1.25, 2.0)  # SGD steps as multiples of its threshold eta*_B
    sgd_runs: int = 20  # SGD runs per (B, ratio)
    sgd_steps: int = 300  # steps per SGD run
    # edge of stability: MNIST
    n_train: int = 1000  # stratified MNIST training images
    pool: int = 4  # average pooling: 4 gives 7x7 = 49 inputs
    hidden: tuple[int, ...] = (32, 32)  # hidden widths
    activation: str = "tanh"  # hidden nonlinearity
    etas: tuple[float, ...] = (0.1, 0.14, 0.2)  # step sizes (2 / eta = 20, 14.3, 10)
    eos_steps: int = 4000  # steps of GD and of SGD
    eig_every: int = 50  # measure lambda_max every this many steps
    sgd_batch: int = 8  # SGD's batch size (with replacement)
    tail: float = 0.25  # the last fraction of the measurements that "hovering" is averaged over
    seed: int = 0  # first seed
    seeds: int = 2  # number of seeds
    device: str = "cpu"  # "cpu" (the threshold part always runs on the CPU in float64)

    def __post_init__(self):
        if self.ts_examples < max(self.sgd_batches):
            raise ConfigError(f"sgd_batches must not exceed ts_examples = {self.ts_examples}, got {self.sgd_batches}")


CHECKS = {"tail": between(0, 1, low_open=True)}

QUICK = dict(seeds=1, adam_steps=300, ratios=(0.98, 1.02), gd_steps=150, sgd_batches=(1, 4), sgd_ratios=(0.5, 2.0),
             sgd_runs=4, sgd_steps=150, n_train=500, hidden=(16, 16), etas=(0.2,), eos_steps=1000, eig_every=50)

def grid(config):
    """Per seed: one thresholds point, and an edge-of-stability point per (method, eta). Every point carries the
    whole config (so only ``part``, ``method``, ``eta`` and ``seed`` name its files)."""
    base = {k: v for k, v in asdict(config).items() if k not in ("seed", "seeds", "etas")}
    points = []
    for seed in range(config.seed, config.seed + config.seeds):
        points.append({"part": "thresholds", "method": None, "eta": None, **base, "seed": seed})
        points += [{"part": "eos", "method": m, "eta": eta, **base, "seed": seed}
                   for m in METHODS for eta in config.etas]
    return points


def run_point(point):
    return _thresholds(point) if point["part"] == "thresholds" else _edge_of_stability(point)


# ---- thresholds -------------------------------------------------------------------------------------------------

def _minimizer(net, theta, X, y, tol=1e-13, max_iter=200):
    """Levenberg-Marquardt on the MSE: :math:`\\theta \\leftarrow \\theta - (G + \\mu I)^{-1} g` with the exact
    Gauss-Newton matrix G, :math:`\\mu` halved after a step that lowers the loss and raised 10x otherwise; until
    :math:`|g| \\le` ``tol``. Returns theta and the final gradient norm."""
    mu = 1e-3
    loss, g = net.loss_and_grad(theta, X, y)
    for _ in range(max_iter):
        if np.linalg.norm(g) <= tol:
            break
        step = np.linalg.solve(net.gauss_newton(theta, X, y) + mu * np.eye(net.num_params), g)
        new_loss, new_g = net.loss_and_grad(theta - step, X, y)
        if new_loss < loss:
            theta, loss, g, mu = theta - step, new_loss, new_g, mu / 2
        else:
            mu *= 10
    return theta, float(np.linalg.norm(g))


def _probed_run(net, theta0, X, y, cfg, probe):
    """``probe(theta) -> float`` at steps 0 .. T of ``train(net, theta0, (X, y), cfg)``; the run stops early at
    the first step where it returns NaN (theta has left the region of interest). Returns the finite values,
    ``(T + 1,)`` or fewer when stopped."""
    def measure(net_, theta, data, step):
        value = probe(theta)
        if not np.isfinite(value):
            raise StopTraining
        return value

    result = train(net, theta0, (X, y), cfg, callbacks=[every(1, measure, name="probe")], progress=False)
    values = np.asarray(result.history["probe"], dtype=float)
    return values[np.isfinite(values)]


def _window_rate(c, delta):
    """Geometric-mean factor per step of ``|c_t|`` over the first steps where it stays in
    ``[1e-3 delta, 10 delta]``."""
    a = np.abs(c)
    inside = (a >= 1e-3 * delta) & (a <= 10 * delta)
    end = int(np.argmin(inside)) if not inside.all() else len(a)
    return st.growth_rate(a[:end], last=end - 1) if end >= 3 else float("nan")


def _thresholds(p):
    ds = make_teacher_student(d=p["ts_inputs"], hidden=p["ts_teacher"], K=1, noise_std=0.0,
                              n_train=p["ts_examples"], n_test=100, seed=p["seed"])
    X, y = ds.X_train, ds.y_train
    net = MLP([p["ts_inputs"], *p["ts_student"], 1], activation="tanh", loss="mse")
    theta = net.init(seed=p["seed"])
    theta = train(net, theta, (X, y), TrainConfig(optimizer="adam", lr=1e-2, sampling="full", max_steps=p["adam_steps"],
                                                 eval_every=None, log_grad_norm=False), progress=False).theta
    theta_star, grad_norm = _minimizer(net, theta, X, y)
    H = net.hessian(theta_star, X, y)
    lambdas, U = np.linalg.eigh(H)
    lam, u1 = float(lambdas[-1]), U[:, -1]
    eta_star = st.gd_threshold(H)
    delta = p["delta"]

    gd = []
    for r in p["ratios"]:
        eta = r * eta_star
        model = st.gd_on_quadratic(H, delta * u1, eta, p["gd_steps"]) @ u1  # (T + 1,) top component
        cfg = TrainConfig(optimizer="sgd", lr=eta, sampling="full", max_steps=p["gd_steps"], eval_every=None,
                          log_grad_norm=False, divergence_factor=None)
        top = _probed_run(net, theta_star + delta * u1, X, y, cfg,
                          lambda th: float(u1 @ (th - theta_star)) if np.linalg.norm(th - theta_star) < 1e3 * delta
                          else float("nan"))
        gd.append({"ratio": r, "eta": eta, "predicted": abs(1 - eta * lam), "model_rate": _window_rate(model, delta),
                   "net_rate": _window_rate(top, delta), "model_top": model, "net_top": top,
                   "net_final_distance": abs(top[-1]) / delta, "net_steps": len(top) - 1})

    # at an interpolating minimum of the MSE every H_i = J_i^T J_i vanishes off the k <= N curved directions
    Hs, Uc = st.curved_subspace(st.per_example_hessians(net, theta_star, X, y))
    ab = st.sharpness_nonuniformity(Hs)

    def curved_part(th):  # |U_c^T (theta - theta*)|, until theta is 100 delta away (escaped)
        x = th - theta_star
        return float(np.linalg.norm(Uc.T @ x)) if np.linalg.norm(x) < 100 * delta else float("nan")

    rng = np.random.default_rng([p["seed"], 7])
    sgd = []
    for B in p["sgd_batches"]:
        eta_B = st.sgd_threshold(Hs, B, replacement=True)
        for r in p["sgd_ratios"]:
            eta = r * eta_B
            escaped, rates = 0, []
            for run in range(p["sgd_runs"]):
                u = rng.standard_normal(net.num_params)
                cfg = TrainConfig(optimizer="sgd", lr=eta, sampling="replacement", batch_size=B,
                                  max_steps=p["sgd_steps"], eval_every=None, log_grad_norm=False,
                                  divergence_factor=None, seed=1000 * p["seed"] + run)
                norms = _probed_run(net, theta_star + delta * u / np.linalg.norm(u), X, y, cfg, curved_part)
                escaped += len(norms) - 1 < p["sgd_steps"]
                rates.append(st.growth_rate(norms))
            sgd.append({"B": B, "ratio": r, "eta": eta, "eta_star_B": eta_B,
                        "radius": st.sgd_radius(Hs, eta, B, replacement=True),
                        "sufficient": st.sufficient_condition(Hs, eta, B, replacement=True),
                        "wu": st.wu_condition(ab.a, ab.s, eta, B, X.shape[0], replacement=True),
                        "escaped": escaped, "runs": p["sgd_runs"], "median_rate": float(np.median(rates))})
    return {"num_params": net.num_params, "num_examples": X.shape[0], "grad_norm": grad_norm,
            "loss": net.loss(theta_star, X, y), "lambda_max": lam, "lambda_min": float(lambdas[0]),
            "eta_star": eta_star, "curved_dim": Hs.shape[1], "a": ab.a, "s": ab.s, "gd": gd, "sgd": sgd}


# ---- edge of stability --------------------------------------------------------------------------------------------

def _edge_of_stability(p):
    from ..backend import to_device
    ds = mnist(n_train=p["n_train"], pool=p["pool"])
    X = to_device(ds.X_train, p["device"])
    Y = to_device(np.eye(ds.num_classes)[ds.y_train], p["device"])  # one-hot targets for the MSE
    net = MLP([ds.input_dim, *p["hidden"], ds.num_classes], activation=p["activation"], loss="mse")
    theta0 = net.init(seed=p["seed"], device=p["device"])
    gd = p["method"] == "gd"
    cfg = TrainConfig(optimizer="sgd", lr=p["eta"], sampling="full" if gd else "replacement",
                      batch_size=X.shape[0] if gd else p["sgd_batch"], max_steps=p["eos_steps"], seed=p["seed"],
                      eval_every=p["eig_every"], eval_unit="step", log_grad_norm=False, divergence_factor=None)
    result = train(net, theta0, (X, Y), cfg, callbacks=[every(p["eig_every"], top_eigenvalue)], progress=False)
    lam = np.asarray(result.history["top_eigenvalue"], dtype=float)
    return {"num_params": net.num_params, "steps": np.asarray(result.history["top_eigenvalue_step"]),
            "lambda_max": lam, "train_loss": np.asarray(result.history["train_loss"], dtype=float),
            "eval_steps": np.asarray(result.history["eval_step"]), "seconds": result.wall_time,
            "batch_size": X.shape[0] if gd else p["sgd_batch"]}


def tail_ratio(result, eta, tail):
    r""":math:`\lambda_{max} / (2/\eta)` averaged over the last ``tail`` fraction of the measurements."""
    lam = result["lambda_max"]
    k = max(1, int(round(tail * len(lam))))
    return float(np.mean(lam[-k:]) * eta / 2)


# ---- summary and figures -----------------------------------------------------------------------------------------

def summarize(config, records):
    lines, tables = [], {}
    thr = [r for r in records if r["point"]["part"] == "thresholds"]
    if thr:
        r0 = thr[0]["result"]
        lines += [f"**Thresholds.** Teacher-student, N = {r0['num_examples']}, {config.ts_inputs}-"
                  f"{'-'.join(map(str, config.ts_student))}-1 tanh student (P = {r0['num_params']}), MSE, at an "
                  f"interpolating minimizer (training loss <= {max(r['result']['loss'] for r in thr):.1e}, gradient norm <= "
                  f"{max(r['result']['grad_norm'] for r in thr):.1e}). "
                  f"GD from θ* + δ u₁ (δ = {config.delta:g}); rates are the factor per step of the top component "
                  f"u₁ᵀ(θ - θ*).", ""]
        rows = []
        for rec in thr:
            res = rec["result"]
            for g in res["gd"]:
                rows.append({"seed": rec["point"]["seed"], "λ_max": res["lambda_max"], "η* = 2/λ_max": res["eta_star"],
                             "η / η*": g["ratio"], "|1 - ηλ_max|": g["predicted"],
                             "quadratic model rate": g["model_rate"], "network rate": g["net_rate"],
                             "network rel. error": abs(g["net_rate"] / g["predicted"] - 1),
                             "network |top| / δ at end": g["net_final_distance"]})
        tables["gd_thresholds"] = rows
        lines += [markdown_table(rows), ""]
        rows = []
        for rec in thr:
            res = rec["result"]
            for s in res["sgd"]:
                rows.append({"seed": rec["point"]["seed"], "B": s["B"], "η*_B (exact)": s["eta_star_B"],
                             "η*_B / η*_GD": s["eta_star_B"] / res["eta_star"], "η / η*_B": s["ratio"],
                             "ρ(T)": f"{s['radius']:.6f}", "Wu (a, s) value": s["wu"],
                             "sufficient cond.": f"{s['sufficient']:.6f}", "escaped": f"{s['escaped']}/{s['runs']}",
                             "√ρ(T)": np.sqrt(s["radius"]), "median rate (curved part)": s["median_rate"]})
        tables["sgd_thresholds"] = rows
        lines += [f"SGD with i.i.d. batches (with replacement): the exact mean-square threshold η*_B (Wu et al. "
                  f"2018) from the per-example Hessians (a = λ_max = {pm([r['result']['a'] for r in thr], digits=3)},"
                  f" non-uniformity s = {pm([r['result']['s'] for r in thr], digits=3)}); SGD on the network from "
                  f"θ* + δu, u random, {config.sgd_runs} runs of {config.sgd_steps} steps: escaped = distance beyond "
                  f"100δ; median rate = the median over runs of the factor per step of the curved part of θ - θ* (the "
                  f"k = {thr[0]['result']['curved_dim']} directions with curvature), against the mean-square "
                  f"prediction √ρ(T).", "",
                  markdown_table(rows), ""]
        worst = max(row["network rel. error"] for row in tables["gd_thresholds"])
        gds = [g for rec in thr for g in rec["result"]["gd"]]
        agree = sum((g["model_rate"] < 1) == (g["ratio"] < 1) == (g["net_rate"] < 1) for g in gds)
        lines.append(f"- GD: in {agree} of {len(gds)} runs the quadratic model and the network both shrink exactly "
                     f"when η < η* and grow when η > η*; on the network the top component's factor per step matches "
                     f"|1 - ηλ_max| within {worst:.1e} (relative).")
    eos = [r for r in records if r["point"]["part"] == "eos"]
    if eos:
        rows = []
        for rec in sorted(eos, key=lambda r: (r["point"]["method"], r["point"]["eta"], r["point"]["seed"])):
            p, res = rec["point"], rec["result"]
            rows.append({"method": p["method"].upper(), "B": res["batch_size"], "η": p["eta"], "2/η": 2 / p["eta"],
                         "seed": p["seed"], "λ_max at start": res["lambda_max"][0],
                         "λ_max max": float(np.max(res["lambda_max"])),
                         f"λ_max / (2/η), last {config.tail:.0%}": tail_ratio(res, p["eta"], config.tail),
                         "final train loss": res["train_loss"][-1], "seconds": res["seconds"]})
        tables["edge_of_stability"] = rows
        r0 = eos[0]["result"]
        lines += ["", f"**Edge of stability.** MNIST, {config.n_train} images, {28 // config.pool}x{28 // config.pool},"
                  f" {(28 // config.pool) ** 2}-{'-'.join(map(str, config.hidden))}-10 {config.activation} "
                  f"(P = {r0['num_params']:,}), MSE on one-hot targets, {config.eos_steps} steps; λ_max of the "
                  f"full training loss every {config.eig_every} steps (Lanczos).", "", markdown_table(rows), ""]
        for method in METHODS:
            ratios = [row[f"λ_max / (2/η), last {config.tail:.0%}"] for row in rows if row["method"] == method.upper()]
            if ratios:
                lines.append(f"- {method.upper()}: λ_max / (2/η) over the last {config.tail:.0%} of training: "
                             + ", ".join(f"{v:.3f}" for v in ratios) + ".")
    return tables, "\n".join(lines) + "\n"


def figures(config, records):
    from ..plotting import edge_of_stability, step_size_thresholds
    figs = {}
    thr = [r for r in records if r["point"]["part"] == "thresholds"]
    if thr:
        res = thr[0]["result"]
        figs["thresholds"] = step_size_thresholds(
            {f"η = {g['ratio']:g} η*": {"model": np.abs(g["model_top"][:len(g["net_top"])]) / config.delta,
                                        "network": np.abs(g["net_top"]) / config.delta} for g in res["gd"]},
            batch_sizes=[s["B"] for s in res["sgd"] if s["ratio"] == res["sgd"][0]["ratio"]],
            sgd_thresholds=[s["eta_star_B"] for s in res["sgd"] if s["ratio"] == res["sgd"][0]["ratio"]],
            gd_threshold=res["eta_star"], num_examples=res["num_examples"],
            title=f"Step sizes around 2/λ_max at an interpolating minimizer (teacher-student, P = {res['num_params']}, "
                  f"seed {thr[0]['point']['seed']})")
    eos = [r for r in records if r["point"]["part"] == "eos"]
    if eos:
        seed = min(r["point"]["seed"] for r in eos)
        runs = {}
        for rec in where(eos, seed=seed):
            p, res = rec["point"], rec["result"]
            label = "GD (full batch)" if p["method"] == "gd" else f"SGD (B = {res['batch_size']})"
            runs[(p["eta"], label)] = {"steps": res["steps"], "lambda_max": res["lambda_max"],
                                       "eval_steps": res["eval_steps"], "train_loss": res["train_loss"]}
        figs["edge_of_stability"] = edge_of_stability(
            runs, title=f"Edge of stability: MNIST {config.n_train} images 7x7, "
                        f"{(28 // config.pool) ** 2}-{'-'.join(map(str, config.hidden))}-10 {config.activation}, "
                        f"MSE, seed {seed}")
    return figs


SCENARIO = Scenario(
    name="stability",
    description="step sizes around 2/λ_max (GD and SGD's exact mean-square threshold) and the edge of stability",
    config_class=Config, quick=QUICK, grid=grid, run_point=run_point, summarize=summarize, figures=figures,
    checks=CHECKS)
