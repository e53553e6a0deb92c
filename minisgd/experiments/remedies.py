r"""remedies: how much of the small-batch / large-batch gap each proposed remedy closes, on MNIST.

Keskar et al. 2017 end (section 5) with strategies that might let large batches generalize: data augmentation,
conservative training, robust training, dynamic sampling and warm starts; later work added learning-rate scaling
with warm-up (Goyal et al. 2017, linear; Hoffer et al. 2017, square root) and training longer, to as many updates
as the small batch makes (Hoffer et al. 2017). Here each is one run per seed, from the seed's initial parameters
(the same for every run), with the trainer options of :mod:`minisgd.training.train`:

* ``sb`` / ``lb``: the gap itself, Adam 1e-3 (the keskar-mnist scenario's optimizer), batch b and B, ``epochs``;
* ``warm-start``: batch b for ``warm_start_epochs`` epochs, then B (:class:`minisgd.training.schedules.WarmStartBatch`);
* ``dynamic-sampling``: the batch doubles every ``dynamic_every`` epochs from b up to B
  (:class:`minisgd.training.schedules.GeometricBatch`);
* ``lr-linear`` / ``lr-sqrt``: B with the learning rate times B/b (Goyal et al.) or :math:`\sqrt{B/b}` (Hoffer et
  al.), reached by a linear warm-up over ``warmup_epochs`` epochs. These two use SGD with momentum 0.9 and are
  measured against their own SB / LB pair (``sb-momentum``, ``lb-momentum``, both at ``momentum_lr``): both rules
  are derived for SGD, whose step is the learning rate times the mean gradient, so that the rate times B/b keeps
  an epoch's drift (Goyal et al.) and the rate times :math:`\sqrt{B/b}` the covariance of the step (Hoffer et
  al.). Adam divides the gradient by the root of its second moment, which itself depends on the batch, so neither
  derivation carries over (Malladi et al. 2022 derive a square-root rule for Adam from its SDE); an Adam rate 8x
  larger would test a different optimizer, not the rule;
* ``longer``: B for as many updates as SB makes (``epochs`` x B/b epochs): the regime adaptation of Hoffer et al.;
* ``augmentation``: B, each batch image shifted by up to ``augment_shift`` pixels (:mod:`minisgd.data.augment`);
* ``proximal``: B, each step ``proximal_steps`` Adam updates on the batch loss plus
  :math:`\frac{\rho}{2}\lVert\theta - \theta_t\rVert^2` (conservative training, Li et al. 2014);
* ``noise``: B plus Gaussian noise with the covariance a batch of b has in excess of B
  (:mod:`minisgd.training.injection`), for as many updates as SB makes. Per update it then has an SB step's mean and covariance, so the pair ``longer`` /
  ``noise`` (the same updates, without and with the noise) isolates what the noise does.

Measures: train and test accuracy and loss on the full splits; the top Hessian eigenvalue (Lanczos) and Keskar's
epsilon-sharpness (full space, L-BFGS-B, 10 iterations) on a fixed subset of training images, in float64.
Gap closed by a remedy, per seed (paired: the same start and batch order seed):

.. math:: \text{closed} = \frac{\text{acc}_{remedy} - \text{acc}_{LB}}{\text{acc}_{SB} - \text{acc}_{LB}},

0 when the remedy does nothing, 1 when it reaches SB's test accuracy, negative when it hurts.
The summary gives its mean and std over seeds and the pooled ratio of the mean differences (steadier when a seed's
gap is small).
"""
import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import spearmanr

from ..data.augment import RandomShifts
from ..training.train import planned_steps, train, TrainConfig
from ..training.schedules import GeometricBatch, WarmStartBatch, Warmup
from ..curvature.sharpness import epsilon_sharpness
from ..curvature.eigen import top_eigenvalues
from ..errors import ConfigError
from . import Scenario, one_of
from .inputs import mnist_network, subset_indices, take
from .report import markdown_table, pm, where

REMEDIES = ("warm-start", "dynamic-sampling", "lr-linear", "lr-sqrt", "longer", "augmentation", "proximal", "noise")
MOMENTUM_RUNS = ("sb-momentum", "lb-momentum", "lr-linear", "lr-sqrt")
BASELINE = {r: ("sb-momentum", "lb-momentum") if r in MOMENTUM_RUNS else ("sb", "lb") for r in REMEDIES}


@dataclass(frozen=True)
class Config:
    """remedies; the defaults are the full-size run (2.5 min with --jobs 2 on 2 quiet cores; 13 min at load 13)."""

    n_train: int = 8192  # stratified MNIST training subset (the batch-sweep scenario's)
    pool: int = 2  # average pooling: 2 gives 14x14 = 196 inputs
    hidden: tuple[int, ...] = (128, 128)  # hidden widths (ReLU)
    activation: str = "relu"
    init: str = "he"
    small_batch: int = 128  # b
    large_batch: int = 1024  # B
    epochs: int = 40  # epochs of every run (those of `longer` and `noise`: as many updates as SB)
    adam_lr: float = 1e-3  # Adam, the keskar-mnist scenario's optimizer: SB, LB and the remedies but two
    momentum_lr: float = 0.01  # SGD with momentum 0.9: sb-momentum, lb-momentum, and the base of lr-linear/-sqrt
    warmup_epochs: int = 5  # linear warm-up of the scaled learning rates (Goyal et al.: 5 epochs)
    warm_start_epochs: int = 10  # warm-start: epochs at batch b before switching to B
    dynamic_every: int = 3  # dynamic-sampling: epochs between doublings of the batch, from b up to B
    augment_shift: int = 1  # augmentation: random shifts of up to this many pixels (at the pooled resolution)
    proximal_rho: float = 1.0  # proximal: rho of the proximal term
    proximal_steps: int = 4  # proximal: Adam updates per batch
    remedies: tuple[str, ...] = REMEDIES  # which remedies to run (their SB / LB pair always runs)
    dtype: str = "float32"  # training dtype; measurements in float64
    sharpness_examples: int = 2048  # fixed training subset for the eigenvalue and the eps-sharpness
    eps: float | None = 1e-3  # Keskar's epsilon-sharpness box; None: skip it
    seed: int = 0  # first seed (init, batch order, shifts, noise)
    seeds: int = 5
    device: str = "cpu"

    def __post_init__(self):
        if not 1 <= self.small_batch < self.large_batch <= self.n_train:
            raise ConfigError(f"need 1 <= small_batch < large_batch <= n_train, got {self.small_batch}, "
                              f"{self.large_batch}, {self.n_train}")


CHECKS = {"remedies": one_of(*REMEDIES)}

QUICK = dict(n_train=2048, hidden=(64, 64), small_batch=64, large_batch=512, epochs=16, warm_start_epochs=4,
             warmup_epochs=2, dynamic_every=2, sharpness_examples=512, eps=None, seeds=2)


def runs(config):
    """The runs of one seed: the SB / LB pairs the chosen remedies need, then the remedies."""
    pairs = [pair for pair in (("sb", "lb"), ("sb-momentum", "lb-momentum"))
             if any(BASELINE[r] == pair for r in config.remedies)]
    return [name for pair in pairs for name in pair] + list(config.remedies)


def grid(config):
    base = {k: v for k, v in asdict(config).items() if k not in ("remedies", "seeds", "seed")}
    return [{**base, "run": run, "seed": config.seed + s} for s in range(config.seeds) for run in runs(config)]


def train_config(p, num_train):
    """The TrainConfig of run ``p["run"]`` (a point of the grid) on ``num_train`` examples."""
    b, B, E = p["small_batch"], p["large_batch"], p["epochs"]
    run = p["run"]
    adam = dict(optimizer="adam", lr=p["adam_lr"])
    common = dict(seed=p["seed"], eval_every=None, log_grad_norm=False)
    sb_updates = planned_steps(TrainConfig(batch_size=b, epochs=E), num_train)
    steps_per_epoch = math.ceil(num_train / B)
    scaled = {"lr-linear": B / b, "lr-sqrt": math.sqrt(B / b)}
    if run in ("sb", "lb"):
        return TrainConfig(batch_size=b if run == "sb" else B, epochs=E, **adam, **common)
    if run in ("sb-momentum", "lb-momentum"):
        return TrainConfig(optimizer="momentum", lr=p["momentum_lr"], batch_size=b if run == "sb-momentum" else B,
                           epochs=E, **common)
    if run in scaled:
        lr = Warmup(p["warmup_epochs"] * steps_per_epoch, p["momentum_lr"] * scaled[run])
        return TrainConfig(optimizer="momentum", lr=lr, batch_size=B, epochs=E, **common)
    if run == "warm-start":
        return TrainConfig(batch_size=WarmStartBatch(b, B, p["warm_start_epochs"]), epochs=E, **adam, **common)
    if run == "dynamic-sampling":
        return TrainConfig(batch_size=GeometricBatch(b, 2.0, p["dynamic_every"], max=B), epochs=E, **adam, **common)
    if run == "longer":
        return TrainConfig(batch_size=B, max_steps=sb_updates, **adam, **common)
    if run == "augmentation":
        side = 28 // p["pool"]
        return TrainConfig(batch_size=B, epochs=E, augment=RandomShifts(p["augment_shift"], (side, side)),
                           **adam, **common)
    if run == "proximal":
        return TrainConfig(batch_size=B, epochs=E, proximal=p["proximal_rho"], proximal_steps=p["proximal_steps"],
                           **adam, **common)
    if run == "noise":
        return TrainConfig(batch_size=B, max_steps=sb_updates, noise_batch=b, **adam, **common)
    raise ValueError(f"unknown run {run!r}")


def run_point(point):
    """Train one run from the seed's initial parameters; measure accuracy, loss and sharpness."""
    p = point
    net, theta0, (X, y, Xt, yt) = mnist_network(p)
    cfg = train_config(p, X.shape[0])
    result = train(net, theta0, (X, y, Xt, yt), cfg, progress=False)
    h = result.history
    sub = subset_indices(X.shape[0], p["sharpness_examples"])
    Xs, ys = take(X, sub).astype("float64"), take(y, sub)
    theta = result.theta.astype("float64")
    out = {"run": p["run"], "optimizer": cfg.rule().name, "steps": result.step, "epochs": result.epoch,
           "examples": result.examples,
           "gradient_evaluations": result.step * (cfg.proximal_steps + (cfg.noise_batch is not None)),
           "train_seconds": result.wall_time, "num_params": net.num_params, "n_train": int(X.shape[0]),
           "train_loss": h["train_loss"][-1], "train_acc": h["train_acc"][-1],
           "test_loss": h["test_loss"][-1], "test_acc": h["test_acc"][-1],
           "top_eigenvalue": float(top_eigenvalues(net, theta, Xs, ys, k=1, seed=p["seed"]).values[0]),
           "batch_sizes": np.asarray(h["batch_size"], dtype=np.int64)}
    if p["eps"] is not None:
        out["sharpness"] = float(epsilon_sharpness(net, theta, Xs, ys, eps=p["eps"], seed=p["seed"]).value)
    return out


# ---- summary -------------------------------------------------------------------------------------------------

def by_seed(records, run, key):
    """``{seed: value}`` of measure ``key`` in the records of ``run``."""
    return {r["point"]["seed"]: r["result"][key] for r in where(records, run=run)}


def gap_closed(records, remedy, key="test_acc"):
    r"""Per seed (the seeds every run of the pair and the remedy finished), ``(closed: (S,), remedy - LB: (S,),
    SB - LB: (S,))`` for measure ``key``; closed = (remedy - LB) / (SB - LB)."""
    sb_run, lb_run = BASELINE[remedy]
    sb, lb, rem = (by_seed(records, run, key) for run in (sb_run, lb_run, remedy))
    seeds = sorted(set(sb) & set(lb) & set(rem))
    gain = np.array([rem[s] - lb[s] for s in seeds], float)
    gap = np.array([sb[s] - lb[s] for s in seeds], float)
    return gain / gap, gain, gap


def pooled(gain, gap):
    """The ratio of the mean differences, mean(remedy - LB) / mean(SB - LB)."""
    return float(np.mean(gain) / np.mean(gap)) if len(gap) else float("nan")


def summarize(config, records):
    values = lambda run, key, scale=1.0: [r["result"][key] * scale for r in where(records, run=run)]  # noqa: E731
    rows = []
    for run in runs(config):
        rs = where(records, run=run)
        if not rs:
            continue
        r0 = rs[0]["result"]
        row = {"run": run, "optimizer": r0["optimizer"], "seeds": len(rs),
               "updates": f"{np.mean(values(run, 'steps')):.0f}",
               "epochs": f"{np.mean(values(run, 'epochs')):.0f}", "train loss": pm(values(run, "train_loss"), digits=4),
               "train acc (%)": pm(values(run, "train_acc", 100)), "test acc (%)": pm(values(run, "test_acc", 100)),
               "top eigenvalue": pm(values(run, "top_eigenvalue"), digits=2)}
        if config.eps is not None:
            row[f"eps-sharpness {config.eps:g} (%)"] = pm(values(run, "sharpness"), digits=2)
        if run in REMEDIES:
            closed, gain, gap = gap_closed(records, run)
            row.update({"gap closed": pm(closed), "pooled": f"{pooled(gain, gap):.2f}", "vs": "/".join(BASELINE[run])})
        else:
            row.update({"gap closed": "1 (SB)" if run.startswith("sb") else "0 (LB)", "pooled": "", "vs": ""})
        rows.append(row)
    r0 = records[0]["result"]
    side = 28 // config.pool
    arch = "-".join(map(str, [side * side, *config.hidden, 10]))
    lines = [f"MNIST, {r0['n_train']} training images (stratified), {side}x{side} inputs, {arch} "
             f"{config.activation} (P = {r0['num_params']:,}); b = {config.small_batch}, B = {config.large_batch}, "
             f"{config.epochs} epochs (longer and noise: as many updates as SB); Adam {config.adam_lr:g}, SGD with "
             f"momentum 0.9 at {config.momentum_lr:g} for the lr-scaling pair; curvature on "
             f"{config.sharpness_examples} training images (float64). Mean ± std over seeds; gap closed per seed, "
             "paired with the SB / LB pair named in `vs`; `pooled` = mean(remedy - LB) / mean(SB - LB).", "",
             markdown_table(rows, columns=list(dict.fromkeys(k for row in rows for k in row))), ""]
    for sb_run, lb_run in dict.fromkeys(BASELINE[r] for r in REMEDIES if r in config.remedies):
        gap = np.array(values(sb_run, "test_acc", 100)) - np.array(values(lb_run, "test_acc", 100))
        lam_sb, lam_lb = np.array(values(sb_run, "top_eigenvalue")), np.array(values(lb_run, "top_eigenvalue"))
        if gap.size:
            lines.append(f"- {sb_run} against {lb_run}: test accuracy gap {pm(gap)} points (SB better in "
                         f"{int(np.sum(gap > 0))}/{gap.size} seeds); top eigenvalue {pm(lam_sb)} against "
                         f"{pm(lam_lb)} (LB sharper in {int(np.sum(lam_lb > lam_sb))}/{gap.size} seeds); LB "
                         f"train accuracy {pm(values(lb_run, 'train_acc', 100))} %.")
    adam = [r["result"] for r in records if r["result"]["optimizer"] == "adam"]
    loss = [r["train_loss"] for r in adam]
    if len(set(loss)) > 2:  # a rank correlation needs distinct values
        rho_acc = spearmanr(loss, [r["test_acc"] for r in adam]).statistic
        rho_lam = spearmanr(loss, [r["top_eigenvalue"] for r in adam]).statistic
        lines.append(f"- Over the {len(adam)} Adam runs (every seed and run), the rank correlation of the final "
                     f"training loss with the test accuracy is {rho_acc:.2f} and with the top eigenvalue "
                     f"{rho_lam:.2f}: how far a run trained predicts both.")
    ranked = sorted(((pooled(*gap_closed(records, r)[1:]), r) for r in config.remedies if where(records, run=r)),
                    reverse=True)
    if ranked:
        lines.append("- Gap closed (pooled), best first: " + ", ".join(f"{r} {v:.2f}" for v, r in ranked) + ".")
        hurt = [r for v, r in ranked if v < 0]
        if hurt:
            lines.append(f"- Worse than plain LB: {', '.join(hurt)}.")
    return {"remedies": rows}, "\n".join(lines) + "\n"


def figures(config, records):
    from ..plotting import LB_COLOR, PALETTE, SB_COLOR, per_category
    remedies = [r for r in config.remedies if where(records, run=r)]
    colors = {r: PALETTE[2 + i % (len(PALETTE) - 2)] for i, r in enumerate(remedies)}
    colors.update({"sb": SB_COLOR, "sb-momentum": SB_COLOR, "lb": LB_COLOR, "lb-momentum": LB_COLOR})
    closed = {r: gap_closed(records, r)[0] for r in remedies}
    lam = {run: np.array(list(by_seed(records, run, "top_eigenvalue").values())) for run in runs(config)}
    mean = lambda run: float(np.mean(lam[run])) if lam.get(run) is not None and lam[run].size else None  # noqa
    panels = {
        "test-accuracy gap closed, (acc - acc_LB) / (acc_SB - acc_LB), per seed": {
            "ylabel": "fraction of the SB-LB gap closed", "values": closed, "colors": colors,
            "references": {"SB (1)": 1.0, "LB (0)": 0.0}},
        "top Hessian eigenvalue of the final parameters": {
            "ylabel": "λ_max", "values": lam, "colors": colors,
            "references": {k: v for k, v in (("SB (Adam)", mean("sb")), ("LB (Adam)", mean("lb"))) if v}},
    }
    side = 28 // config.pool
    labels = {run: f"{run} (SGD-m)" if run in MOMENTUM_RUNS else run for run in runs(config)}
    relabel = lambda d: {labels[k]: v for k, v in d.items()}  # noqa: E731
    for spec in panels.values():
        spec["values"], spec["colors"] = relabel(spec["values"]), relabel(spec["colors"])
    fig = per_category([labels[run] for run in runs(config)], panels,
                       title=f"Remedies for the large-batch gap: MNIST {config.n_train} images {side}x{side}, "
                             f"b = {config.small_batch}, B = {config.large_batch}, {config.epochs} epochs\n"
                             "Adam, except (SGD-m): SGD with momentum, measured against its own SB / LB pair")
    return {"remedies": fig}


SCENARIO = Scenario(
    name="remedies",
    description="how much of the SB/LB gap warm start, dynamic sampling, lr scaling, longer training, "
                "augmentation, proximal steps and matched noise close (MNIST subset), seeds",
    config_class=Config, quick=QUICK, grid=grid, run_point=run_point, summarize=summarize, figures=figures,
    checks=CHECKS)
