r"""batch-sweep: sharpness and test accuracy against the batch size, from B = 32 to the full training set.

One point per (batch size, seed): from the seed's initial parameters (the same for every batch size), train with
Adam at a fixed learning rate until the training loss reaches ``target_loss`` (0.01), then measure the top Hessian
eigenvalue, the trace of the Hessian and Keskar's epsilon-sharpness (eps 1e-3, full space) on the whole training
set, and the test accuracy.

Why stop at a training loss rather than after a number of epochs (Keskar et al. use a fixed budget, as the
keskar-mnist scenario does): the cross-entropy Hessian shrinks as the loss goes to zero (its Gauss-Newton part is
J^T (diag p - p p^T) J, which vanishes as the softmax saturates). At a fixed number of epochs a small batch makes
many more updates and ends at a much lower loss (here 1e-5 at B = 32 against 0.4 at B = 8192 after 50 epochs), so
it looks flat for that reason alone. Stopping every run at the same training loss compares minimizers at the same
height, which removes that confound; ``--set target_loss=none`` gives the fixed-epoch protocol (``epochs`` then is
the budget, not the cap). Runs that hit the epoch cap before the target are flagged in the summary.

Size (the full batch must be affordable): a stratified subset of 8,192 MNIST training images (2^13, so the
batch sizes 32, 64, ..., 8192 are powers of two and the largest is full-batch gradient descent with Adam),
average-pooled to 14x14, and a 196-128-128-10 ReLU network (P = 43,018). The test set is all 10,000 images.
"""
from dataclasses import asdict, dataclass

import numpy as np

from ..training.train import train, TrainConfig
from ..curvature.landscape import evaluate
from ..curvature.sharpness import epsilon_sharpness
from ..curvature.eigen import hessian_trace, top_eigenvalues
from ..errors import ConfigError
from . import Scenario, one_of
from .inputs import geometric_sizes, mnist_network, subset_indices, take
from .report import markdown_table, mean_std, pm, where

OPTIMIZERS = ("sgd", "momentum", "adam")


@dataclass(frozen=True)
class Config:
    """batch-sweep; the defaults are the full-size run (about 10 min with --jobs 2 on 2 cores)."""

    n_train: int = 8192  # stratified training subset; the largest batch is all of it (full-batch)
    pool: int = 2  # average pooling: 2 gives 14x14 = 196 inputs, 4 gives 7x7
    hidden: tuple[int, ...] = (128, 128)  # hidden widths
    activation: str = "relu"  # hidden nonlinearity
    init: str = "he"  # initializer
    optimizer: str = "adam"  # "adam" (as in Keskar et al.), "sgd" or "momentum"
    lr: float = 1e-3  # learning rate, the same for every batch size
    min_batch: int = 32  # smallest batch; then x2 up to n_train (n_train itself is always the last)
    target_loss: float | None = 0.01  # stop when the full training loss is <= this; None: train `epochs` epochs
    epochs: int = 1500  # cap on the epochs (the budget when target_loss is None)
    dtype: str = "float64"  # training and measurement dtype
    eps: float = 1e-3  # epsilon of Keskar's sharpness (full space, L-BFGS-B, 10 iterations)
    sharpness_examples: int | None = None  # training examples for the curvature measures; None: all
    seed: int = 0  # first seed (initial parameters and batch order)
    seeds: int = 5  # number of seeds
    device: str = "cpu"  # "cpu" or "gpu"

    def __post_init__(self):
        if not 1 <= self.min_batch <= self.n_train:
            raise ConfigError(f"min_batch must lie in [1, n_train = {self.n_train}], got {self.min_batch}")


CHECKS = {"optimizer": one_of(*OPTIMIZERS)}

QUICK = dict(n_train=2048, hidden=(64,), lr=2e-3, target_loss=0.05, epochs=500, seeds=2)


def batch_sizes(config):
    """``min_batch, 2 min_batch, ...`` below ``n_train``, then ``n_train`` (full batch)."""
    return geometric_sizes(config.min_batch, config.n_train)


def grid(config):
    base = {k: v for k, v in asdict(config).items() if k not in ("seeds", "seed", "min_batch")}
    return [{**base, "batch_size": b, "seed": config.seed + s} for s in range(config.seeds)
            for b in batch_sizes(config)]


def run_point(point):
    """Train at one batch size to the target loss (or for the epoch budget); measure curvature and accuracy."""
    p = point
    net, theta0, (X, y, Xt, yt) = mnist_network(p)
    full = p["batch_size"] >= X.shape[0]
    cfg = TrainConfig(optimizer=p["optimizer"], lr=p["lr"], batch_size=p["batch_size"],
                      sampling="full" if full else "shuffle", epochs=p["epochs"], target_loss=p["target_loss"],
                      eval_every=1 if p["target_loss"] is not None else None, seed=p["seed"], log_grad_norm=False)
    result = train(net, theta0, (X, y), cfg, progress=False)  # the test split is evaluated once, below
    theta = result.theta
    sub = subset_indices(X.shape[0], p["sharpness_examples"])
    Xs, ys = take(X, sub), take(y, sub)
    train_loss, train_acc = evaluate(net, theta, X, y)
    test_loss, test_acc = evaluate(net, theta, Xt, yt)
    sharp = epsilon_sharpness(net, theta, Xs, ys, eps=p["eps"], seed=p["seed"])
    return {
        "batch_size": p["batch_size"], "steps": result.step, "epochs": result.epoch, "examples": result.examples,
        "stop_reason": result.stop_reason,
        "reached_target": p["target_loss"] is None or result.stop_reason == "target_loss",
        "train_seconds": result.wall_time, "train_loss": train_loss, "train_acc": train_acc,
        "test_loss": test_loss, "test_acc": test_acc,
        "top_eigenvalue": float(top_eigenvalues(net, theta, Xs, ys, k=1, seed=p["seed"]).values[0]),
        "trace": hessian_trace(net, theta, Xs, ys), "sharpness": float(sharp.value),
        "sharpness_fell_back": bool(sharp.fell_back), "num_params": net.num_params,
        "loss_curve": np.asarray(result.history["train_loss"], dtype=float),
    }


def _by_batch(config, records, key, scale=1.0):
    """``(sizes, values: (S, n))``: the measure ``key`` for each seed (rows) and batch size (columns)."""
    sizes = [b for b in batch_sizes(config) if where(records, batch_size=b)]
    seeds = sorted({r["point"]["seed"] for r in records})
    values = np.full((len(seeds), len(sizes)), np.nan)
    for r in records:
        if r["point"]["batch_size"] in sizes:
            values[seeds.index(r["point"]["seed"]), sizes.index(r["point"]["batch_size"])] = r["result"][key] * scale
    return sizes, values


def summarize(config, records):
    rows = []
    for b in batch_sizes(config):
        rs = where(records, batch_size=b)
        if not rs:
            continue
        get = lambda key, scale=1.0: [r["result"][key] * scale for r in rs]  # noqa: E731
        rows.append({"B": b, "seeds": len(rs), "updates": f"{mean_std(get('steps'))[0]:.0f}",
                     "epochs": f"{mean_std(get('epochs'))[0]:.0f}",
                     "reached target": f"{sum(r['result']['reached_target'] for r in rs)}/{len(rs)}",
                     "train loss": f"{mean_std(get('train_loss'))[0]:.4f}",
                     "train acc (%)": pm(get("train_acc", 100)), "test acc (%)": pm(get("test_acc", 100)),
                     "top eigenvalue": pm(get("top_eigenvalue"), digits=3),
                     f"eps-sharpness {config.eps:g} (%)": pm(get("sharpness")),
                     "trace": pm(get("trace"), digits=1)})
    r0 = records[0]["result"]
    protocol = (f"trained until the training loss is <= {config.target_loss:g} (cap {config.epochs} epochs)"
                if config.target_loss is not None else f"trained {config.epochs} epochs")
    lines = [f"MNIST, {config.n_train} training images (stratified), {28 // config.pool}x{28 // config.pool} "
             f"inputs, {'-'.join(map(str, [28 * 28 // config.pool ** 2, *config.hidden, 10]))} "
             f"{config.activation} (P = {r0['num_params']:,}); {config.optimizer} lr {config.lr:g}, the same "
             f"for every batch size; {protocol}, from the same start for each seed. Curvature on "
             f"{config.sharpness_examples or 'all the'} training images. Mean ± std over seeds.", "",
             markdown_table(rows), ""]
    sizes, lam = _by_batch(config, records, "top_eigenvalue")
    _, acc = _by_batch(config, records, "test_acc", 100)
    if len(sizes) > 1:
        logb = np.log2(sizes)
        ok = np.all(np.isfinite(lam), axis=1)
        rho_lam = [_spearman(logb, row) for row in lam[ok]]
        rho_acc = [_spearman(logb, row) for row in acc[ok]]
        first, last = lam[:, 0], lam[:, -1]
        lines += [f"- Top eigenvalue from B = {sizes[0]} to B = {sizes[-1]}: {pm(first, digits=3)} -> "
                  f"{pm(last, digits=3)} (x{np.nanmean(last / first):.2f}); rank correlation with log2 B per seed: "
                  f"{pm(rho_lam)}.",
                  f"- Test accuracy from B = {sizes[0]} to B = {sizes[-1]}: {pm(acc[:, 0])} -> {pm(acc[:, -1])} %; "
                  f"rank correlation with log2 B per seed: {pm(rho_acc)}."]
    missed = [r for r in records if not r["result"]["reached_target"]]
    if missed:
        lines.append(f"- {len(missed)} run(s) stopped at the epoch cap before the target loss: "
                     + ", ".join(sorted({f"B = {r['point']['batch_size']}" for r in missed})) + ".")
    return {"batch_sizes": rows}, "\n".join(lines) + "\n"


def _spearman(x, y):
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    return float(np.corrcoef(rx, ry)[0, 1])


def figures(config, records):
    from ..plotting import versus_batch_size
    series = {}
    for key, scale in (("top_eigenvalue", 1), ("sharpness", 1), ("trace", 1), ("test_acc", 100), ("test_loss", 1),
                       ("steps", 1)):
        sizes, series[key] = _by_batch(config, records, key, scale)
    protocol = (f"each run stopped at training loss {config.target_loss:g}" if config.target_loss is not None
                else f"{config.epochs} epochs each")
    panels = {
        "top Hessian eigenvalue (sharpness)": {"ylabel": "λ_max (loss / parameter²)",
                                               "series": {"λ_max": series["top_eigenvalue"]}},
        f"Keskar's ε-sharpness, ε = {config.eps:g}": {"ylabel": "φ (% of 1 + loss)",
                                                      "series": {"full space": series["sharpness"]}},
        "Hessian trace": {"ylabel": "tr H (loss / parameter²)", "series": {"tr H": series["trace"]}},
        "test accuracy": {"ylabel": "accuracy (%)", "series": {"test": series["test_acc"]}},
        "test loss": {"ylabel": "cross-entropy (nats)", "series": {"test": series["test_loss"]}},
        "updates to the target" if config.target_loss is not None else "updates made": {
            "ylabel": "optimizer steps (log scale)", "log": True, "series": {"steps": series["steps"]}},
    }
    arch = "-".join(map(str, [28 * 28 // config.pool ** 2, *config.hidden, 10]))
    fig = versus_batch_size(sizes, panels, full_batch=config.n_train,
                            title=f"Batch size sweep, MNIST {config.n_train} images, {arch} {config.activation}, "
                                  f"{config.optimizer} lr {config.lr:g}, {protocol}")
    return {"batch_sweep": fig}


SCENARIO = Scenario(
    name="batch-sweep",
    description="sharpness, trace and test accuracy against batch size 32 ... full batch (MNIST subset), seeds",
    config_class=Config, quick=QUICK, grid=grid, run_point=run_point, summarize=summarize, figures=figures,
    checks=CHECKS)
