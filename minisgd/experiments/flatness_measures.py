r"""flatness-measures: how well does each sharpness measure rank the generalization gap? (Jiang et al. 2019,
*Fantastic generalization measures and where to find them*.)

One point per (batch size, learning rate, seed): from the seed's initial parameters, train with heavy-ball momentum
until the training loss reaches ``target_loss`` (Jiang et al. stop every run at cross-entropy 0.01, so that runs are
compared at the same fit), then measure the generalization gap, both as test loss - train loss and as test error -
train error, and every sharpness measure of :mod:`minisgd.experiments.measures` on the training set.

How a measure is scored (Jiang et al., section 4): Kendall's rank correlation :math:`\tau` between the measure and
the gap over all runs, and the *granulated* coefficient :math:`\Psi`: for each hyperparameter :math:`i` (batch size,
learning rate), :math:`\psi_i` is the mean of :math:`\tau` over the groups of runs that differ in :math:`i` alone
(every other hyperparameter and the seed fixed), and :math:`\Psi` is the mean of the :math:`\psi_i`. :math:`\tau`
over all runs can be high because a measure and the gap both follow one hyperparameter; :math:`\Psi` asks whether
the measure follows the gap when each hyperparameter moves by itself.

Size: 1,024 stratified MNIST training images pooled to 7x7, a 49-32-32-10 ReLU network (P = 2,986); batch sizes 32
to 512 and learning rates 0.02 to 0.1 (momentum 0.9), five of each, 3 seeds: 75 runs.
"""
import itertools
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from ..training.train import train, TrainConfig
from ..curvature.landscape import evaluate
from ..errors import ConfigError
from . import Scenario, between
from .inputs import mnist_network
from .report import markdown_table, mean_std, pm, where
from .measures import INVARIANT, KEYS, LABELS, MeasureSettings, sharpness_measures

HYPERPARAMETERS = ("batch_size", "lr")  # what Psi averages over
GAPS = {"error_gap": "test error - train error", "loss_gap": "test loss - train loss"}


@dataclass(frozen=True)
class Config(MeasureSettings):
    """flatness-measures; the defaults are the full-size run (about 10 min with --jobs 2 on 2 cores)."""

    n_train: int = 1024  # stratified MNIST training subset
    pool: int = 4  # average pooling: 4 gives 7x7 = 49 inputs
    hidden: tuple[int, ...] = (32, 32)  # hidden widths
    activation: str = "relu"  # hidden nonlinearity
    momentum: float = 0.9  # heavy-ball coefficient
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)  # the batch-size axis
    lrs: tuple[float, ...] = (0.02, 0.03, 0.05, 0.07, 0.1)  # the learning-rate axis
    target_loss: float = 0.01  # stop each run when the full training loss is <= this (Jiang et al.'s 0.01)
    epochs: int = 3000  # cap on the epochs
    seed: int = 0  # first seed (initial parameters and batch order)
    seeds: int = 3  # number of seeds
    device: str = "cpu"  # "cpu" or "gpu"

    def __post_init__(self):
        if len(self.batch_sizes) < 2 or len(self.lrs) < 2:
            raise ConfigError("batch_sizes and lrs need two values or more each (Psi varies each by itself), got "
                              f"{self.batch_sizes} and {self.lrs}")
        if max(self.batch_sizes) > self.n_train:
            raise ConfigError(f"batch sizes must be <= n_train = {self.n_train}, got {self.batch_sizes}")


CHECKS = {"momentum": between(0, 1, high_open=True)}

QUICK = dict(n_train=512, batch_sizes=(32, 256), lrs=(0.03, 0.1), target_loss=0.05, noise_samples=8, seeds=2)


def grid(config):
    base = {k: v for k, v in asdict(config).items() if k not in ("seeds", "seed", "batch_sizes", "lrs")}
    return [{**base, "batch_size": b, "lr": lr, "seed": config.seed + s}
            for s in range(config.seeds) for b in config.batch_sizes for lr in config.lrs]


def run_point(point):
    """Train to the target loss; the generalization gap and every sharpness measure at the end."""
    p = point
    net, theta0, (X, y, Xt, yt) = mnist_network(p, init="he")
    full = p["batch_size"] >= X.shape[0]
    cfg = TrainConfig(optimizer="momentum", lr=p["lr"], momentum=p["momentum"],
                      batch_size=p["batch_size"], sampling="full" if full else "shuffle", epochs=p["epochs"],
                      target_loss=p["target_loss"], eval_every=1, seed=p["seed"], log_grad_norm=False)
    result = train(net, theta0, (X, y), cfg, progress=False)
    theta = result.theta
    train_loss, train_acc = evaluate(net, theta, X, y)
    test_loss, test_acc = evaluate(net, theta, Xt, yt)
    return {"batch_size": p["batch_size"], "lr": p["lr"], "steps": result.step, "epochs": result.epoch,
            "reached_target": result.stop_reason == "target_loss", "num_params": net.num_params,
            "train_loss": train_loss, "test_loss": test_loss, "train_acc": train_acc, "test_acc": test_acc,
            "loss_gap": test_loss - train_loss, "error_gap": train_acc - test_acc,
            **sharpness_measures(net, theta, X, y, p["eps"], p["sigma"], p["relative_sigma"], p["noise_samples"],
                                 seed=p["seed"])}


# ---- scoring: Kendall's tau and Jiang et al.'s granulated Psi ----------------------------------------------------

def kendall_tau(x, y):
    """Kendall's tau-b of two ``(n,)`` sequences (scipy.stats.kendalltau); NaN for fewer than 2 values."""
    if len(x) < 2:
        return float("nan")
    return float(stats.kendalltau(x, y).statistic)


def granulated_tau(records, measure, gap, hyperparameter):
    r""":math:`\psi_i`: the mean of Kendall's tau between ``measure`` and ``gap`` over the groups of records that
    differ only in ``hyperparameter`` (every other hyperparameter and the seed equal); groups of one are skipped."""
    others = [h for h in (*HYPERPARAMETERS, "seed") if h != hyperparameter]
    groups = {}
    for r in records:
        groups.setdefault(tuple(r["point"][h] for h in others), []).append(r["result"])
    taus = [kendall_tau([g[measure] for g in group], [g[gap] for g in group])
            for group in groups.values() if len(group) > 1]
    taus = [t for t in taus if np.isfinite(t)]
    return float(np.mean(taus)) if taus else float("nan")


def scores(records, gap="error_gap"):
    """``{measure: {"tau": ..., "psi_batch_size": ..., "psi_lr": ..., "Psi": ...}}`` against ``gap``."""
    out = {}
    for key in KEYS:
        row = {"tau": kendall_tau([r["result"][key] for r in records], [r["result"][gap] for r in records])}
        for h in HYPERPARAMETERS:
            row[f"psi_{h}"] = granulated_tau(records, key, gap, h)
        row["Psi"] = float(np.nanmean([row[f"psi_{h}"] for h in HYPERPARAMETERS]))
        out[key] = row
    return out


def summarize(config, records):
    score = {gap: scores(records, gap) for gap in GAPS}
    rows = [{"measure": LABELS[k], "rescaling-invariant": "yes" if INVARIANT[k] else "no",
             "τ (error gap)": f"{score['error_gap'][k]['tau']:+.2f}",
             "ψ batch size": f"{score['error_gap'][k]['psi_batch_size']:+.2f}",
             "ψ learning rate": f"{score['error_gap'][k]['psi_lr']:+.2f}",
             "Ψ (error gap)": f"{score['error_gap'][k]['Psi']:+.2f}",
             "τ (loss gap)": f"{score['loss_gap'][k]['tau']:+.2f}",
             "Ψ (loss gap)": f"{score['loss_gap'][k]['Psi']:+.2f}"} for k in KEYS]
    runs = []
    for b, lr in itertools.product(config.batch_sizes, config.lrs):
        rs = [r["result"] for r in where(records, batch_size=b, lr=lr)]
        if rs:
            runs.append({"B": b, "lr": f"{lr:g}", "runs": len(rs),
                         "updates": f"{mean_std([r['steps'] for r in rs])[0]:.0f}",
                         "test acc (%)": pm([r["test_acc"] for r in rs], 100),
                         "error gap (%)": pm([r["error_gap"] for r in rs], 100),
                         "loss gap": pm([r["loss_gap"] for r in rs], digits=3),
                         "λ_max": pm([r["top_eigenvalue"] for r in rs]),
                         "λ_max(ΘHΘ)": pm([r["relative_top_eigenvalue"] for r in rs], digits=3)})
    hyper = {h: kendall_tau([r["point"][h] for r in records], [r["result"]["error_gap"] for r in records])
             for h in HYPERPARAMETERS}
    best = max(KEYS, key=lambda k: score["error_gap"][k]["Psi"])
    r0 = records[0]["result"]
    lines = [f"MNIST, {config.n_train} training images (stratified), {28 // config.pool}x{28 // config.pool} inputs, "
             f"{'-'.join(map(str, [28 * 28 // config.pool ** 2, *config.hidden, 10]))} {config.activation} "
             f"(P = {r0['num_params']:,}); momentum {config.momentum:g}, B in {config.batch_sizes}, lr in "
             f"{config.lrs}, {config.seeds} seed(s): {len(records)} runs, each trained to training loss "
             f"{config.target_loss:g}. Kendall's τ of each measure with the generalization gap over all runs; ψ: "
             "the mean τ over groups of runs that differ in that hyperparameter alone; Ψ: the mean of the ψ "
             "(Jiang et al. 2019).", "",
             markdown_table(rows), "",
             f"- The hyperparameters themselves: τ(batch size, error gap) = {hyper['batch_size']:+.2f}, "
             f"τ(learning rate, error gap) = {hyper['lr']:+.2f}.",
             f"- Highest Ψ (error gap): {LABELS[best]}, {score['error_gap'][best]['Psi']:+.2f}.", "",
             markdown_table(runs)]
    missed = [r for r in records if not r["result"]["reached_target"]]
    if missed:
        lines.append(f"\n- {len(missed)} run(s) stopped at the epoch cap before the target loss: "
                     + ", ".join(sorted({f"B = {r['point']['batch_size']}, lr = {r['point']['lr']:g}"
                                         for r in missed})) + ".")
    return {"scores": rows, "runs": runs}, "\n".join(lines) + "\n"


def figures(config, records):
    from ..plotting import scatter_panels
    score = scores(records)
    gap = np.array([r["result"]["error_gap"] for r in records]) * 100
    groups = np.array([r["point"]["batch_size"] for r in records])
    panels = {f"{LABELS[k]}: τ = {score[k]['tau']:+.2f}, Ψ = {score[k]['Psi']:+.2f}": {
        "x": np.array([r["result"][k] for r in records]), "y": gap, "groups": groups, "log": True,
        "xlabel": LABELS[k] + " (log scale)"} for k in KEYS}
    fig = scatter_panels(panels, ylabel="test error - train error (%)", group_label="B",
                         title=f"Generalization gap against each measure, {len(records)} runs (B x lr x seed), "
                               f"MNIST {config.n_train} images, each trained to loss {config.target_loss:g}")
    return {"flatness_measures": fig}


SCENARIO = Scenario(
    name="flatness-measures",
    description="how well each sharpness measure ranks the generalization gap over B x lr x seed (Kendall's tau, Psi)",
    config_class=Config, quick=QUICK, grid=grid, run_point=run_point, summarize=summarize, figures=figures,
    checks=CHECKS)
