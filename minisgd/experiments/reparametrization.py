r"""reparametrization: the same function, any sharpness you like (Dinh et al. 2017, *Sharp minima can generalize
for deep nets*).

One point per (regime, seed): train a ReLU net on an MNIST subset with a small (SB) or a large (LB) batch until the
training loss reaches ``target_loss``; then, for each factor :math:`\alpha` of ``alphas``, rescale it as
:math:`(\alpha W_1, W_2/\alpha)` (biases by the running product; ``minisgd.theory.reparametrize``) and measure, on the
rescaled net: its outputs (which must equal the original's to rounding), its train and test loss and accuracy, and
every sharpness measure of :mod:`minisgd.experiments.measures`, invariant and not.

What theory says, and what the summary checks: outputs, losses and accuracies are unchanged; the Hessian becomes
:math:`D^{-1} H D^{-1}`, so :math:`\mathrm{tr}\,H' = \sum_i H_{ii}/d_i^2` exactly and :math:`\lambda_{\max}(H')`
lies within Ostrowski's bounds :math:`[\lambda_{\max}(H)/\max d^2, \lambda_{\max}(H)/\min d^2]`, i.e. it can move
by up to :math:`\alpha^2` either way; the invariant measures do not move at all. With SB and LB side by side, a
rescaling of the flatter SB net makes it "sharper" than the LB net by the non-invariant measures, while it computes
the same function and generalizes exactly as before.

Size: 1,024 stratified MNIST training images pooled to 7x7, a 49-32-32-10 ReLU network (P = 2,986), Adam; curvature
on the whole training subset, in float64 (the 1e-12 output comparison needs it).
"""
from dataclasses import asdict, dataclass

import numpy as np

from ..training.train import train, TrainConfig
from ..curvature.landscape import evaluate
from ..theory.reparametrize import POSITIVELY_HOMOGENEOUS, opposite_factors, rescaling
from ..errors import ConfigError
from . import Scenario, one_of
from .inputs import host, mnist_network
from .report import markdown_table, pm, where
from .measures import INVARIANT, KEYS, LABELS, MeasureSettings, sharpness_measures

REGIMES = ("sb", "lb")


@dataclass(frozen=True)
class Config(MeasureSettings):
    """reparametrization; the defaults are the full-size run (a few minutes with --jobs 2 on 2 cores)."""

    n_train: int = 1024  # stratified MNIST training subset
    pool: int = 4  # average pooling: 4 gives 7x7 = 49 inputs
    hidden: tuple[int, ...] = (32, 32)  # hidden widths
    activation: str = "relu"  # must be positively homogeneous: relu or identity
    lr: float = 2e-3  # Adam's learning rate, both regimes
    small_batch: int = 32  # SB
    large_batch: int = 512  # LB
    target_loss: float = 0.02  # train until the full training loss is <= this (cap: `epochs`)
    epochs: int = 1000  # cap on the epochs
    layers: tuple[int, ...] = (1, 2)  # alpha multiplies the first layer's weights, 1/alpha the second's
    alphas: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3)  # the rescaling factors (1 must be one)
    seed: int = 0  # first seed (initial parameters and batch order)
    seeds: int = 3  # number of seeds
    device: str = "cpu"  # "cpu" or "gpu"

    def __post_init__(self):
        if 1.0 not in self.alphas or min(self.alphas) <= 0:
            raise ConfigError(f"alphas must be > 0 and include 1.0 (the trained net itself), got {self.alphas}")
        if len(self.layers) != 2:
            raise ConfigError(f"layers names the two layers to rescale, e.g. 1,2; got {self.layers}")


CHECKS = {"activation": one_of(*POSITIVELY_HOMOGENEOUS)}

QUICK = dict(n_train=512, large_batch=256, target_loss=0.05, alphas=(1e-3, 1.0, 1e3), noise_samples=8, seeds=1)


def grid(config):
    base = {k: v for k, v in asdict(config).items() if k not in ("seeds", "seed", "small_batch", "large_batch")}
    return [{**base, "regime": regime, "batch_size": config.small_batch if regime == "sb" else config.large_batch,
             "seed": config.seed + s} for s in range(config.seeds) for regime in REGIMES]


def run_point(point):
    """Train once; then, for each alpha, the rescaled net's outputs, losses, accuracies and sharpness measures."""
    p = point
    net, theta0, (X, y, Xt, yt) = mnist_network(p, init="he")
    cfg = TrainConfig(optimizer="adam", lr=p["lr"], batch_size=p["batch_size"], epochs=p["epochs"],
                      target_loss=p["target_loss"], eval_every=1, seed=p["seed"], log_grad_norm=False)
    result = train(net, theta0, (X, y), cfg, progress=False)
    theta = result.theta
    Z, Zt = net.forward(theta, X), net.forward(theta, Xt)
    diagonal = host(net.hessian_diagonal(theta, X, y))  # (P,) at alpha = 1, for the trace law
    rows = {key: [] for key in ("output_diff", "train_loss", "test_loss", "train_acc", "test_acc", "trace_law",
                                *KEYS)}
    maps = [rescaling(net, opposite_factors(net.num_layers, alpha, tuple(p["layers"]))) for alpha in p["alphas"]]
    for r in maps:
        theta_a = r.apply(theta)
        rows["output_diff"].append(max(float(abs(net.forward(theta_a, X) - Z).max()),
                                       float(abs(net.forward(theta_a, Xt) - Zt).max())))
        for split, (A, b) in (("train", (X, y)), ("test", (Xt, yt))):
            loss, acc = evaluate(net, theta_a, A, b)
            rows[f"{split}_loss"].append(loss)
            rows[f"{split}_acc"].append(acc)
        m = sharpness_measures(net, theta_a, X, y, p["eps"], p["sigma"], p["relative_sigma"], p["noise_samples"],
                               seed=p["seed"])
        for key in KEYS:
            rows[key].append(m[key])
        rows["trace_law"].append(float(np.sum(diagonal / r.scale ** 2)))  # tr(D^-1 H D^-1), exactly
    top = rows["top_eigenvalue"][list(p["alphas"]).index(1.0)]
    return {"regime": p["regime"], "batch_size": p["batch_size"], "steps": result.step, "epochs": result.epoch,
            "reached_target": result.stop_reason == "target_loss", "num_params": net.num_params,
            "output_scale": max(float(abs(Z).max()), float(abs(Zt).max())),
            "alphas": np.asarray(p["alphas"], float),
            "lambda_bounds": np.array([r.eigenvalue_bounds(top) for r in maps]),  # (A, 2) Ostrowski
            **{k: np.asarray(v, float) for k, v in rows.items()}}


# ---- summary -----------------------------------------------------------------------------------------------------

INVARIANCE_RTOL = 1e-6  # an invariant measure may move by this much (Lanczos at tol 1e-6-1e-8, rounding)


def _stack(records, key, regime=None):
    """``(S, A)``: ``key`` for each record (rows, seed order) of ``regime`` (all when None) and alpha."""
    rs = sorted((r for r in records if regime is None or r["point"]["regime"] == regime),
                key=lambda r: (r["point"]["seed"], r["point"]["regime"]))
    return np.array([r["result"][key] for r in rs])


def relative_change(records, key):
    """``(S, A)``: the measure at each alpha divided by its value at alpha = 1, per record."""
    alphas = list(records[0]["result"]["alphas"])
    values = _stack(records, key)
    return values / values[:, [alphas.index(1.0)]]


def verdict(ratios):
    """"invariant" when every ratio is within ``INVARIANCE_RTOL`` of 1, else the orders of magnitude it spans."""
    deviation = float(np.max(np.abs(ratios - 1.0)))
    if deviation <= INVARIANCE_RTOL:
        return f"invariant (max change {deviation:.1e})"
    positive = ratios[ratios > 0]
    span = np.log10(positive.max() / positive.min()) if positive.size else float("nan")
    return f"moves: {span:.1f} orders of magnitude"


def summarize(config, records):
    alphas = list(records[0]["result"]["alphas"])
    a_lo, a_hi = alphas.index(min(alphas)), alphas.index(max(alphas))
    flips = ranking_flips(records)
    rows = []
    for key in KEYS:
        ratios = relative_change(records, key)
        f = flips[key]
        rows.append({"measure": LABELS[key], "invariant by theory": "yes" if INVARIANT[key] else "no",
                     "SB at α = 1": pm(_stack(records, key, "sb")[:, alphas.index(1.0)], digits=3, significant=True),
                     "LB at α = 1": pm(_stack(records, key, "lb")[:, alphas.index(1.0)], digits=3, significant=True),
                     f"ratio at α = {alphas[a_lo]:g}": f"{np.mean(ratios[:, a_lo]):.3g}",
                     f"ratio at α = {alphas[a_hi]:g}": f"{np.mean(ratios[:, a_hi]):.3g}",
                     "measured": verdict(ratios),
                     "LB > SB at α = 1": f"{f['lb_sharper']}/{f['seeds']}",
                     "a rescaled SB > LB": f"{f['flipped']}/{f['lb_sharper']}"})
    func_rows = []
    test_loss = _stack(records, "test_loss")
    loss_change = np.abs(test_loss - test_loss[:, [alphas.index(1.0)]]).max(axis=0)  # (A,)
    for i, alpha in enumerate(alphas):
        func_rows.append({"α": f"{alpha:g}", "max |Δ output|": f"{_stack(records, 'output_diff')[:, i].max():.1e}",
                          "max |Δ test loss|": f"{loss_change[i]:.1e}",
                          "SB test acc (%)": pm(_stack(records, "test_acc", "sb")[:, i], 100),
                          "LB test acc (%)": pm(_stack(records, "test_acc", "lb")[:, i], 100),
                          "SB λ_max": pm(_stack(records, "top_eigenvalue", "sb")[:, i], digits=3, significant=True),
                          "LB λ_max": pm(_stack(records, "top_eigenvalue", "lb")[:, i], digits=3, significant=True)})
    law = chain_rule_checks(records)
    r0 = records[0]["result"]
    lines = [f"MNIST, {config.n_train} training images (stratified), {28 // config.pool}x{28 // config.pool} inputs, "
             f"{'-'.join(map(str, [28 * 28 // config.pool ** 2, *config.hidden, 10]))} {config.activation} "
             f"(P = {r0['num_params']:,}), Adam lr {config.lr:g}, SB B = {config.small_batch}, LB B = "
             f"{config.large_batch}, each trained to training loss {config.target_loss:g}; then rescaled as "
             f"(α W{config.layers[0]}, W{config.layers[1]} / α) for α in {', '.join(f'{a:g}' for a in alphas)}. "
             f"Measures on the {config.n_train} training images, float64; ratios are to α = 1, mean over "
             f"{len(records)} nets. Verdict: invariant when every ratio is within {INVARIANCE_RTOL:g} of 1.", "",
             markdown_table(rows), "",
             "The function does not change (outputs to rounding; accuracy identical):", "",
             markdown_table(func_rows), "",
             f"- Largest output difference over all α and nets: {law['max_output_diff']:.1e} (outputs up to "
             f"{law['output_scale']:.3g} in size).",
             f"- Trace law tr H' = Σ H_ii / d_i² (from the unscaled diagonal): max relative error "
             f"{law['trace_law_error']:.1e}.",
             f"- λ_max within Ostrowski's bounds [λ/max d², λ/min d²] at every α: {law['within_bounds']}/"
             f"{law['checked']}; λ_max moves by a factor {law['lambda_span']:.3g} across the α range "
             f"(the bounds allow up to {law['bound_span']:.3g}).",
             "- Last two columns: in how many seeds the LB net is sharper than the SB net by the measure, and in how "
             "many of those some rescaling of the SB net (the same function, the same accuracy) is sharper than the "
             "unscaled LB net."]
    missed = [r for r in records if not r["result"]["reached_target"]]
    if missed:
        lines.append(f"- {len(missed)} run(s) stopped at the epoch cap before the target loss.")
    return {"measures": rows, "function": func_rows}, "\n".join(lines) + "\n"


def chain_rule_checks(records):
    """The numbers the theory fixes: output differences, the trace law's error, Ostrowski's bounds on lambda_max."""
    lam, bounds = _stack(records, "top_eigenvalue"), _stack(records, "lambda_bounds")  # (S, A), (S, A, 2)
    slack = 1e-6 * np.abs(lam)  # Lanczos tolerance
    within = (lam >= bounds[..., 0] - slack) & (lam <= bounds[..., 1] + slack)
    trace, law = _stack(records, "trace"), _stack(records, "trace_law")
    return {"max_output_diff": float(_stack(records, "output_diff").max()),
            "output_scale": float(max(r["result"]["output_scale"] for r in records)),
            "trace_law_error": float(np.max(np.abs(trace - law) / np.abs(law))),
            "within_bounds": int(within.sum()), "checked": int(within.size),
            "lambda_span": float(np.mean(lam.max(axis=1) / lam.min(axis=1))),
            "bound_span": float(np.mean(bounds[..., 1].max(axis=1) / bounds[..., 0].min(axis=1)))}


def ranking_flips(records):
    """Per measure, in how many seeds LB is sharper than SB at alpha = 1, and in how many some rescaling of SB
    (same function, same accuracy) is sharper than the unscaled LB."""
    alphas = list(records[0]["result"]["alphas"])
    i1 = alphas.index(1.0)
    seeds = sorted({r["point"]["seed"] for r in records if r["point"]["regime"] == "sb"}
                   & {r["point"]["seed"] for r in records if r["point"]["regime"] == "lb"})
    out = {}
    for key in KEYS:
        sb = np.array([where(records, regime="sb", seed=s)[0]["result"][key] for s in seeds])  # (S, A)
        lb = np.array([where(records, regime="lb", seed=s)[0]["result"][key][i1] for s in seeds])  # (S,)
        lb_sharper = int(np.sum(lb > sb[:, i1]))
        flipped = int(np.sum(np.any(sb > lb[:, None], axis=1) & (lb > sb[:, i1])))
        out[key] = {"lb_sharper": lb_sharper, "flipped": flipped, "seeds": len(seeds)}
    return out


def figures(config, records):
    from ..plotting import versus_log_x
    alphas = records[0]["result"]["alphas"]
    ratios = {key: relative_change(records, key) for key in KEYS}
    finite = np.concatenate([r[r > 0] for r in ratios.values()])
    ylim = (min(finite.min(), 1.0) / 3, max(finite.max(), 1.0) * 3)  # the same scale for both kinds
    panels = {
        f"not invariant in theory ({len(records)} nets)": {
            "ylabel": "measure / measure at α = 1", "log": True, "ylim": ylim,
            "series": {LABELS[k]: ratios[k] for k in KEYS if not INVARIANT[k]}},
        f"invariant in theory ({len(records)} nets)": {
            "ylabel": "measure / measure at α = 1", "log": True, "ylim": ylim,
            "series": {LABELS[k]: ratios[k] for k in KEYS if INVARIANT[k]}},
        "λ_max(H), SB and LB nets (same functions at every α)": {
            "ylabel": "λ_max (loss / parameter²)", "log": True,
            "series": {regime.upper(): _stack(records, "top_eigenvalue", regime) for regime in REGIMES}},
        "the function: max |Δ output| over train and test": {
            "ylabel": "max |output(α) - output(1)| (0 at α = 1)", "log": True, "ylim": (1e-17, 1e-10),
            "series": {"all nets": _stack(records, "output_diff")}},
    }
    arch = "-".join(map(str, [28 * 28 // config.pool ** 2, *config.hidden, 10]))
    fig = versus_log_x(alphas, panels, xlabel=f"α (W{config.layers[0]} × α, W{config.layers[1]} / α)", mark=1.0,
                       cols=2, title=f"The same function, rescaled: MNIST {config.n_train} images, {arch} "
                                     f"{config.activation}, SB and LB nets")
    return {"reparametrization": fig}


SCENARIO = Scenario(
    name="reparametrization",
    description="rescaling a ReLU net (α W1, W2/α) keeps the function; which sharpness measures move (Dinh et al.)",
    config_class=Config, quick=QUICK, grid=grid, run_point=run_point, summarize=summarize, figures=figures,
    checks=CHECKS)
