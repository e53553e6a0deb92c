r"""keskar-mnist: small batch (256) against large batch (10% of the training set) on MNIST, with Adam and plain SGD.

Keskar et al. 2017 (*On Large-Batch Training for Deep Learning: Generalization Gap and Sharp Minima*), section 2 and
Tables 2-4, network F1, reproduced on the CPU. For each optimizer and seed, one point:

1. draw the initial parameters (seed), and train a small-batch (SB, B = 256) and a large-batch (LB, B = 10% of
   the training set = 6,000) copy from that same start with the same learning rate, either for the same number
   of epochs (20; the protocol of the paper's public code for its parametric plots,
   github.com/keskarnitish/large-batch-training: Keras Adam, ``nb_epoch = 20``, one saved starting point for
   both runs), or, with ``target_loss`` set, each until its training loss (on the whole training set, evaluated
   after every epoch) is at most ``target_loss``, ``epochs`` then being a cap;
2. measure each minimizer: final train and test loss and accuracy on the full splits; the top Hessian
   eigenvalue (Lanczos on exact HVPs) and Keskar's epsilon-sharpness (metric 2.1, L-BFGS-B, 10 iterations)
   at eps 1e-3 and 5e-4, in the full space and in a random 100-dimensional subspace (the paper's p = 100);
   all on a fixed, seeded subset of 5,000 training images, in float64, to bound the cost (the paper used
   the whole training set);
3. the parametric plot (paper's Figure 3): train and test loss and accuracy along
   theta(alpha) = alpha theta_LB + (1 - alpha) theta_SB, alpha in [-1, 2], 25 points, train on a fixed subset of
   10,000 images and test on all 10,000.

The network (``network``): ``"mlp"`` (default) keeps F1's width and activation with two hidden layers and no
normalization, 784-512-512-10 (P = 669,706, He init): the classic MNIST MLP, whose 20-epoch runs and
Hessian-vector products fit the CPU budget (1-1.5 min a training run on one core). ``"f1"`` is the paper's F1 as
published (their Appendix B.1): 784 -> 5 x [512, batch normalization, ReLU] -> 10 (P = 1,462,794 with each BN
layer's scale and shift), trained with batch statistics; with ``plateau_patience`` set each regime trains until
its training loss ceased to improve (:func:`minisgd.training.train.plateaued`), ``epochs`` being a cap. **F1 is
measured in eval mode**, with the final running statistics of its own run: there the network is a function of
theta alone, as metric 2.1's maximization over a box around theta and the Hessian require (in training mode the
loss at theta depends on which batch normalizes it). The parametric plot of F1 recomputes, at each alpha, the
normalization statistics on its training subset (neither end's running statistics belong to the points between).
Training is in float32 (half the time); every measurement is in float64.

``--set epochs=25 decay_epochs=5`` adds five epochs at a tenth of the learning rate to both regimes, which settles
the last iterate of small-batch Adam (its test accuracy otherwise varies by +-0.3 points with where the final step
lands in Adam's oscillation).

**The stopping rule of --quick.** The paper trains "until the loss function ceased to improve". With the
cross-entropy on a training set the network can fit, the loss never ceases to improve: it keeps falling as the
logits grow (SB Adam on the quick run's 6,000 images: 8e-3 after 20 epochs, 1e-7 after 120), so that rule is a
budget in disguise, and the cross-entropy Hessian shrinks with the loss, which makes whichever regime is trained to
the lower loss look flatter for that reason alone. --quick therefore stops each regime at the same training loss,
1e-3 (100% training accuracy: both are at a minimizer in the paper's sense, 99% or more), and compares the two
minimizers at the same height; batch-sweep does the same. Its 6,000 images are 10% of MNIST, so it takes 10% of
the paper's SB batch as well, 32 (0.5% of the set, the paper's 256 being 0.4%): LB is then 19x SB as in the
paper (23x), where SB 256 against LB 600 would be a factor of 2.3, and the two minimizers measure alike
(measured at a training loss of about 1e-3: top eigenvalue 0.53 against 0.56). --quick runs Adam only: with
plain SGD at lr 0.1, LB is still at a training loss of 0.024 (99.8% training accuracy) after the 400-epoch cap,
35 s of training alone.

Learning rates: Adam 1e-3 (the Keras default the paper's code uses); plain SGD 0.1 (a common MNIST step size;
SGD is not in the paper's tables). With plain SGD, LB makes 200 updates of step 0.1 in 20 epochs and is still
far from a minimizer; the summary says so when its training accuracy is low, because then its test accuracy
measures optimization, not generalization.
"""
import io
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..core import batchnorm
from ..training import checkpoint as ckpt
from ..training.callbacks import doubling, every
from ..training.storage import atomic_write_bytes, read_npz
from ..backend import to_device
from ..training.train import evaluate, load_run, train, TrainConfig
from ..curvature.landscape import interpolate
from ..training.schedules import StepDecay
from ..curvature.sharpness import epsilon_sharpness, random_subspace
from ..curvature.eigen import hessian_trace, top_eigenvalues
from ..errors import ConfigError
from . import ANY, Scenario, at_least, between, one_of
from .inputs import as_float64, host, mnist_network, subset_indices, take
from .report import epoch_means, markdown_table, mean_std, pm, where

PAPER = "Keskar et al., On Large-Batch Training for Deep Learning, ICLR 2017"
# The F1 rows (MNIST, 784 -> 5 x [512, batch normalization, ReLU] -> 10; Adam, SB 256, LB 10%; mean ± std over 5
# runs) of the paper's Table 2 (accuracy, %), Table 3 (epsilon-sharpness, full space) and Table 4 (random
# 100-dimensional subspace), as printed there.
PAPER_F1 = {
    "train_acc": {"SB": (99.66, 0.05), "LB": (99.92, 0.01)},
    "test_acc": {"SB": (98.03, 0.07), "LB": (97.81, 0.07)},
    "full_0.001": {"SB": (1.23, 0.83), "LB": (205.14, 69.52)},
    "full_0.0005": {"SB": (0.61, 0.27), "LB": (42.90, 17.14)},
    "subspace_0.001": {"SB": (0.11, 0.00), "LB": (9.22, 0.56)},
    "subspace_0.0005": {"SB": (0.05, 0.00), "LB": (9.17, 0.14)},
}


def _paper_line():
    def f(key):
        (m_sb, s_sb), (m_lb, s_lb) = PAPER_F1[key]["SB"], PAPER_F1[key]["LB"]
        return f"SB {m_sb:.2f} ± {s_sb:.2f}, LB {m_lb:.2f} ± {s_lb:.2f}"
    return (f"The paper's F1 rows ({PAPER}, Tables 2-4; F1 has 5 hidden layers of 512 with batch normalization, "
            f"trained on all 60,000 images; mean ± std over 5 runs): training accuracy (%) {f('train_acc')}; test "
            f"accuracy (%) {f('test_acc')}; epsilon-sharpness, full space, eps 1e-3 {f('full_0.001')}, eps 5e-4 "
            f"{f('full_0.0005')}; random 100-dimensional subspace, eps 1e-3 {f('subspace_0.001')}, eps 5e-4 "
            f"{f('subspace_0.0005')}.")


@dataclass(frozen=True)
class Config:
    """keskar-mnist; the defaults are the full-size run (about 20 min with --jobs 2 on 2 cores)."""

    network: str = "mlp"  # "mlp": the hidden widths below; "f1": the paper's 5 x [512, BN, ReLU] (sets both keys)
    batch_norm: bool = False  # batch normalization on every hidden layer (Linear -> BN -> activation)
    hidden: tuple[int, ...] = (512, 512)  # hidden widths (ReLU): 784-512-512-10, F1's width without its BN
    activation: str = "relu"  # hidden nonlinearity
    init: str = "he"  # initializer ("lecun", "glorot", "he")
    n_train: int | None = None  # training images (a stratified subset); None: all 60,000
    pool: int = 1  # average pooling of the images (1: 28x28 inputs; 2: 14x14)
    small_batch: int = 256  # SB batch size (the paper's)
    large_fraction: float = 0.1  # LB batch size as a fraction of the training set (the paper's 10%)
    optimizers: tuple[str, ...] = ("adam", "sgd")  # "adam" (the paper's) and plain "sgd"
    adam_lr: float = 1e-3  # Adam step size (Keras default, as in the paper's code)
    sgd_lr: float = 0.1  # plain SGD step size
    epochs: int = 20  # epochs for both SB and LB, from the same start (the paper's code: 20); the cap with target_loss
    target_loss: float | None = None  # train each regime until its training loss is <= this; None: `epochs` epochs
    plateau_patience: int | None = None  # or until it ceased to improve (rel. 1e-3 in this many epochs); `epochs` caps
    decay_epochs: int = 0  # lr / 10 for the last this many epochs, in both regimes; 0: constant (the paper's code)
    dtype: str = "float32"  # training dtype; every measurement is made in float64
    sharpness_examples: int | None = 5000  # fixed training subset for sharpness and eigenvalue; None: all
    eps: tuple[float, ...] = (1e-3, 5e-4)  # epsilon-sharpness box sizes (the paper's)
    subspace_dim: int = 100  # dimension p of the random subspace (the paper's 100)
    sharpness_maxiter: int = 10  # L-BFGS-B iterations (the paper's 10)
    alphas: int = 25  # points of the parametric plot on [alpha_min, alpha_max] (the paper's 25)
    alpha_min: float = -1.0
    alpha_max: float = 2.0
    interp_train_examples: int | None = 10000  # training subset for the parametric plot; None: all
    seed: int = 0  # first seed (init, batch order, random subspace)
    seeds: int = 5  # number of seeds: seed, seed + 1, ...
    device: str = "cpu"  # "cpu" or "gpu"
    train_checkpoints: str | None = None  # a folder: each regime's training checkpoints there every epoch and resumes
    snapshot_every: int | None = None  # keep theta every k = this many epochs; metric 2.1 (eps[0]) and the top
    #                                    eigenvalue at each: Figure 6
    snapshot_spacing: str = "even"  # "even": at epochs 0, k, 2k, 3k, ...; "doubling": at 0, k, 2k, 4k, 8k, ...

    def __post_init__(self):
        if not 0 <= self.decay_epochs < self.epochs:
            raise ConfigError(f"decay_epochs must lie in [0, epochs = {self.epochs}), got {self.decay_epochs}")
        if self.decay_epochs and self.target_loss is not None:
            raise ConfigError("decay_epochs needs a fixed budget of epochs: set target_loss=none, or decay_epochs=0")
        if self.small_batch > (self.n_train or 60000):
            raise ConfigError(f"small_batch must be at most n_train = {self.n_train}, got {self.small_batch}")
        if self.network not in NETWORKS:
            raise ConfigError(f"network must be one of {', '.join(NETWORKS)}, got {self.network!r}")
        if self.alpha_min >= self.alpha_max:
            raise ConfigError(f"alpha_min must be below alpha_max = {self.alpha_max}, got {self.alpha_min}")


NETWORKS = ("mlp", "f1")
F1_HIDDEN = (512,) * 5  # the paper's Appendix B.1
CHECKS = {"network": one_of(*NETWORKS), "snapshot_spacing": one_of("even", "doubling"),
          "optimizers": one_of("adam", "sgd"), "decay_epochs": at_least(0), "alphas": at_least(2),
          "large_fraction": between(0, 1, low_open=True), "alpha_min": ANY, "alpha_max": ANY}

# The quick run: MNIST at 14x14 with 10% of the training set and a narrower network, SB 32 and LB 600, each
# trained to the training loss 1e-3, Adam only (see "The stopping rule of --quick" above).
QUICK = dict(n_train=6000, pool=2, hidden=(128, 128), small_batch=32, optimizers=("adam",), target_loss=1e-3,
             epochs=400, sharpness_examples=1000, subspace_dim=20, alphas=13, interp_train_examples=2000, seeds=2)


def grid(config):
    base = {k: v for k, v in asdict(config).items() if k not in ("optimizers", "seeds", "seed")}
    if config.network == "f1":
        base["hidden"], base["batch_norm"] = F1_HIDDEN, True
    return [{**base, "optimizer": opt, "seed": config.seed + s} for opt in config.optimizers
            for s in range(config.seeds)]


def _measure(net, theta, Xs, ys, eps_list, basis, maxiter, seed):
    """Top eigenvalue and epsilon-sharpness (full space and subspace, each eps) of ``theta`` on ``(Xs, ys)``."""
    th = as_float64(theta)
    out = {"top_eigenvalue": float(top_eigenvalues(net, th, Xs, ys, k=1, seed=seed).values[0]),
           "trace": hessian_trace(net, th, Xs, ys)}
    fallbacks = 0
    for eps in eps_list:
        for space, kwargs in (("full", {}), ("subspace", {"basis": basis})):
            s = epsilon_sharpness(net, th, Xs, ys, eps=eps, maxiter=maxiter, seed=seed, **kwargs)
            out[f"{space}_{eps:g}"] = float(s.value)
            fallbacks += int(s.fell_back)
    out["sharpness_fallbacks"] = fallbacks
    return out


class _Recalibrated:
    """A BN net evaluated with the normalization statistics of ``X_ref`` recomputed at each theta (for the parametric
    plot, whose points between two runs have no running statistics of their own); what ``interpolate`` needs."""

    def __init__(self, net, X_ref):
        self.net, self.X_ref, self.loss_fn, self.l2 = net, X_ref, net.loss_fn, net.l2

    def _at(self, theta):
        return self.net.eval_mode(batchnorm.train_forward(self.net, theta, self.X_ref).statistics)

    def loss(self, theta, X, y):
        return self._at(theta).loss(theta, X, y)

    def accuracy(self, theta, X, y):
        return self._at(theta).accuracy(theta, X, y)

    def per_example_losses(self, theta, X, y):
        return self._at(theta).per_example_losses(theta, X, y)


# Why a training stopped for good: a regime stored with one of these is taken as it is, not resumed (another budget,
# "epochs", resumes: a larger cap continues it).
FINAL = ("plateau", "target_loss")


def _checkpoint_folder(point, regime):
    """Where ``regime``'s training of ``point`` checkpoints (``train_checkpoints/OPTIMIZER-seedS/REGIME``), or ``None``.

    A point is otherwise all-or-nothing: F1's training takes hours, so with ``train_checkpoints`` set a stopped
    run loses at most one epoch of each regime, and the checkpoints' histories show how far training got. A regime
    whose training ended (:data:`FINAL`) is read back as it is."""
    root = point.get("train_checkpoints")
    return None if root is None else str(Path(root) / f"{point['optimizer']}-seed{point['seed']}" / regime)


class _Snapshots:
    """A training callback that keeps theta (and a BN net's running statistics) and measures the training loss on
    the whole training set (eval mode for BN) at each call. With a ``folder`` (the regime's training checkpoints)
    each snapshot is also written there, so that a resumed training keeps those of its earlier legs."""

    name = "snapshot"

    def __init__(self, folder=None):
        self.folder = None if folder is None else Path(folder) / "snapshots"
        self.kept = {}  # step -> (theta, stats or None)

    def __call__(self, net, theta, data, step):
        stats = getattr(net, "stats", None)
        self.kept[step] = (host(theta), None if stats is None else host(stats))
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            np.savez(buffer, theta=self.kept[step][0], **({} if stats is None else {"stats": self.kept[step][1]}))
            atomic_write_bytes(self.folder / f"{step:09d}.npz", buffer.getvalue())
        return {"snapshot_train_loss": float(net.loss(theta, data.X_train, data.y_train))}

    def at(self, steps):
        """``[(theta, stats or None), ...]`` at ``steps`` (from the folder where this leg did not keep them)."""
        out = []
        for step in steps:
            if step not in self.kept:
                path = self.folder / f"{int(step):09d}.npz"
                arrays = read_npz(path.read_bytes(), str(path))
                self.kept[step] = (arrays["theta"], arrays.get("stats"))
            out.append(self.kept[step])
        return out


def measure_snapshots(net, snapshots, X, y, eps, maxiter=10, seed=0):
    r"""``{"sharpness": (k,), "top_eigenvalue": (k,)}``: metric 2.1
    (:func:`~minisgd.curvature.sharpness.epsilon_sharpness`, full space, L-BFGS-B with ``maxiter`` iterations) and the
    Hessian's top eigenvalue (Lanczos) at each snapshot ``(theta, stats)`` of a training run, on ``(X, y)`` in float64;
    a BN net (``stats`` given) in eval mode with that snapshot's running statistics. Drawn against the training loss
    at the same snapshots: the paper's Figure 6 (and the same for the eigenvalue)."""
    sharpness, top = [], []
    for theta, stats in snapshots:
        measured, th = (net if stats is None else net.eval_mode(as_float64(stats))), as_float64(theta)
        sharpness.append(float(epsilon_sharpness(measured, th, X, y, eps=eps, maxiter=maxiter, seed=seed).value))
        top.append(float(top_eigenvalues(measured, th, X, y, k=1, seed=seed).values[0]))
    return {"sharpness": np.array(sharpness), "top_eigenvalue": np.array(top)}


def at_training_loss(loss, values, target):
    """A measure where a training run's loss first reached ``target``: ``values`` (n,) at snapshots with training
    losses ``loss`` (n,), interpolated linearly in (log loss, log value) between the two snapshots around the first
    crossing (in (log loss, value) when a value is not positive); NaN where the run never reached ``target`` or began
    below it. Comparing SB and LB at one training loss separates the sharpness of a point from how deep the loss is."""
    loss, values = np.asarray(loss, dtype=float), np.asarray(values, dtype=float)
    reached = np.flatnonzero(loss <= target)
    if not reached.size or (reached[0] == 0 and loss[0] < target):
        return float("nan")
    j = reached[0]
    if j == 0:
        return float(values[0])
    t = (math.log(target) - math.log(loss[j - 1])) / (math.log(loss[j]) - math.log(loss[j - 1]))
    a, b = values[j - 1], values[j]
    if a > 0 and b > 0:
        return float(math.exp(math.log(a) + t * (math.log(b) - math.log(a))))
    return float(a + t * (b - a))


def _along_training(net, snapshots, history, final, final_step, steps_per_epoch, Xs, ys, p):
    """The snapshots' step, epoch, training loss, metric 2.1 (``eps[0]``, full space) and top eigenvalue; the
    trained point (``final``, measured with the same settings) closes the curve where no snapshot fell on it."""
    steps = [int(step) for step in history["snapshot_step"]]
    losses = list(history["snapshot_train_loss"])
    measured = measure_snapshots(net, snapshots.at(steps), Xs, ys, p["eps"][0], p["sharpness_maxiter"], p["seed"])
    sharpness, top = list(measured["sharpness"]), list(measured["top_eigenvalue"])
    if steps[-1] != final_step:
        steps.append(final_step)
        losses.append(final["train_loss"])
        sharpness.append(final[f"full_{p['eps'][0]:g}"])
        top.append(final["top_eigenvalue"])
    steps = np.array(steps)
    return {"step": steps, "epoch": steps / steps_per_epoch, "train_loss": np.array(losses),
            "sharpness": np.array(sharpness), "top_eigenvalue": np.array(top)}


def run_point(point):
    """Train SB and LB from one start with one optimizer; measure both; the parametric curve between them."""
    p = point
    net, theta0, (X, y, Xt, yt) = mnist_network(p, batch_norm=p.get("batch_norm", False))
    N = X.shape[0]
    large = int(round(p["large_fraction"] * N))
    lr = p["adam_lr"] if p["optimizer"] == "adam" else p["sgd_lr"]
    decay = p.get("decay_epochs", 0)
    if decay:
        lr = StepDecay(lr, milestones=(p["epochs"] - decay,), gamma=0.1, unit="epoch")
    sub = subset_indices(N, p["sharpness_examples"])
    Xs, ys = take(X, sub).astype("float64"), take(y, sub)
    basis = random_subspace(net.num_params, p["subspace_dim"], seed=p["seed"])
    if p["device"] != "cpu":
        basis = to_device(basis, p["device"])
    target = p.get("target_loss")
    out, thetas = {"num_params": net.num_params, "n_train": N}, {}
    for regime, batch in (("sb", p["small_batch"]), ("lb", large)):
        plateau = p.get("plateau_patience")
        folder = _checkpoint_folder(p, regime)
        cfg = TrainConfig(optimizer=p["optimizer"], lr=lr, batch_size=batch, epochs=p["epochs"], target_loss=target,
                          plateau_patience=plateau, seed=p["seed"],
                          eval_every=None if target is None and plateau is None else 1,
                          out=folder, checkpoint_every=None if folder is None else math.ceil(N / batch))
        resume = folder if folder is not None and ckpt.has_checkpoint(folder) else None
        snapshots = _Snapshots(folder) if p.get("snapshot_every") else None
        schedule = doubling if p.get("snapshot_spacing") == "doubling" else every
        callbacks = [] if snapshots is None else [schedule(p["snapshot_every"] * math.ceil(N / batch), snapshots)]
        stored = None if resume is None else load_run(resume)
        if stored is not None and stored.stop_reason in FINAL:  # trained to its end: resuming would train on
            result = replace(stored, theta=to_device(stored.theta, p["device"]),
                             bn_stats=None if stored.bn_stats is None else to_device(stored.bn_stats, p["device"]))
        else:
            result = train(net, theta0, (X, y), cfg, callbacks=callbacks, resume=resume, progress=False)
        h = result.history
        measured = net.eval_mode(result.bn_stats) if net.batch_norm else net  # F1: eval mode (module docstring)
        test_loss, test_acc = evaluate(measured, result.theta, Xt, yt)
        out[regime] = {"batch_size": batch, "steps": result.step, "epochs": result.epoch,
                       "stop_reason": result.stop_reason, "train_seconds": result.wall_time,
                       "train_loss": h["train_loss"][-1], "train_acc": h["train_acc"][-1],
                       "test_loss": test_loss, "test_acc": test_acc,
                       "epoch_loss": epoch_means(h), "theta_norm": float(np.linalg.norm(host(result.theta))),
                       "distance_from_init": float(np.linalg.norm(host(result.theta - theta0))),
                       **_measure(measured, result.theta, Xs, ys, p["eps"], basis, p["sharpness_maxiter"], p["seed"])}
        if snapshots is not None:  # the paper's Figure 6: sharpness against the training loss along training
            out[regime]["snapshots"] = _along_training(net, snapshots, h, out[regime], result.step,
                                                       math.ceil(N / batch), Xs, ys, p)
        thetas[regime] = result.theta
    out["distance_sb_lb"] = float(np.linalg.norm(host(thetas["lb"] - thetas["sb"])))
    idx = subset_indices(N, p["interp_train_examples"], seed=1)
    along = _Recalibrated(net, take(X, idx)) if net.batch_norm else net
    curve = interpolate(along, thetas["sb"], thetas["lb"], (take(X, idx), take(y, idx), Xt, yt),
                        alphas=np.linspace(p["alpha_min"], p["alpha_max"], p["alphas"]))
    out["parametric"] = {k: host(getattr(curve, k)) for k in
                         ("alphas", "train_loss", "test_loss", "train_accuracy", "test_accuracy")}
    return out


# ---- summary -----------------------------------------------------------------------------------------------------

def _arch(config):
    if config.network == "f1":
        return f"{(28 // config.pool) ** 2}-5x[512 BN]-10 (F1, measured in eval mode)"
    return "-".join(map(str, [(28 // config.pool) ** 2, *config.hidden, 10]))


def _values(records, regime, key, scale=1.0):
    """``(seeds,)`` the result ``regime/key`` of each record, times ``scale``."""
    return np.array([r["result"][regime][key] * scale for r in records], dtype=float)


def _protocol(config, records):
    r = records[0]["result"]
    lb = r["lb"]["batch_size"]
    if config.plateau_patience is not None:
        stop = (f"each trained from the same start until its training loss ceased to improve (no relative improvement "
                f"of 1e-3 over {config.plateau_patience} epochs), at most {config.epochs} epochs")
    elif config.target_loss is None:
        stop = (f"{config.epochs} epochs each from the same start"
                f"{f' (lr / 10 for the last {config.decay_epochs})' if config.decay_epochs else ', constant lr'}")
    else:
        took = "; ".join(f"{opt}: SB {pm(_values(where(records, optimizer=opt), 'sb', 'epochs'), digits=0)}, LB "
                         f"{pm(_values(where(records, optimizer=opt), 'lb', 'epochs'), digits=0)} epochs"
                         for opt in config.optimizers if where(records, optimizer=opt))
        stop = (f"each trained from the same start until its training loss (all {r['n_train']:,} images, evaluated "
                f"after every epoch) was <= {config.target_loss:g}, at most {config.epochs} epochs ({took})")
    return (f"Network {_arch(config)} {config.activation}, {r['num_params']:,} parameters; {r['n_train']:,} "
            f"training images; SB batch {config.small_batch}, LB batch {lb} ({lb / config.small_batch:.1f}x); "
            f"{stop}; {config.dtype} training; sharpness and eigenvalue on {config.sharpness_examples or 'all'} "
            "training images (float64). Mean ± std over seeds.")


def summarize(config, records):
    eps_keys = [f"{space}_{eps:g}" for space in ("full", "subspace") for eps in config.eps]
    full = f"full_{config.eps[0]:g}"
    tables = {"accuracy": [], "sharpness": [], "top_eigenvalue": [], "checks": [], "seeds": []}
    lines = [_protocol(config, records), ""]
    findings = []
    for opt in config.optimizers:
        rs = where(records, optimizer=opt)
        if not rs:
            continue
        row = {"optimizer": opt, "seeds": len(rs)}
        for split in ("train", "test"):
            for regime in ("sb", "lb"):
                row[f"{split} acc {regime.upper()} (%)"] = pm(_values(rs, regime, f"{split}_acc", 100))
        for regime in ("sb", "lb"):
            row[f"train loss {regime.upper()}"] = pm(_values(rs, regime, "train_loss"), digits=2, significant=True)
        tables["accuracy"].append(row)
        srow = {"optimizer": opt}
        for key in eps_keys:
            for regime in ("sb", "lb"):
                srow[f"{key} {regime.upper()}"] = pm(_values(rs, regime, key))
        tables["sharpness"].append(srow)
        sb_l, lb_l = _values(rs, "sb", "top_eigenvalue"), _values(rs, "lb", "top_eigenvalue")
        tables["top_eigenvalue"].append({"optimizer": opt, "SB": pm(sb_l, digits=3), "LB": pm(lb_l, digits=3),
                                         "LB / SB": pm(lb_l / sb_l, digits=2)})
        sb_test, lb_test = _values(rs, "sb", "test_acc", 100), _values(rs, "lb", "test_acc", 100)
        gap = sb_test - lb_test  # paired by seed
        spread = max(mean_std(sb_test)[1], mean_std(lb_test)[1])
        sharper_eig, sharper_eps = lb_l > sb_l, _values(rs, "lb", full) > _values(rs, "sb", full)
        n = len(rs)
        tables["checks"].append({
            "optimizer": opt,
            "LB sharper (top eigenvalue), seeds": f"{int(np.sum(sharper_eig))}/{n}",
            f"LB sharper (eps {config.eps[0]:g}, full), seeds": f"{int(np.sum(sharper_eps))}/{n}",
            "SB tests higher, seeds": f"{int(np.sum(gap > 0))}/{n}",
            "test acc SB - LB (points)": pm(gap),
            "largest std over seeds": f"{spread:.2f}",
            "gap > spread": "yes" if mean_std(gap)[0] > spread else "no",
            "LB train acc (%)": f"{mean_std(_values(rs, 'lb', 'train_acc', 100))[0]:.2f}",
        })
        for r in rs:
            res = r["result"]
            tables["seeds"].append({
                "optimizer": opt, "seed": r["point"]["seed"],
                **{f"{k} {g.upper()}": res[g][k] for k in ("epochs",) for g in ("sb", "lb")},
                **{f"train loss {g.upper()}": res[g]["train_loss"] for g in ("sb", "lb")},
                **{f"test acc {g.upper()} (%)": 100 * res[g]["test_acc"] for g in ("sb", "lb")},
                **{f"top eig. {g.upper()}": res[g]["top_eigenvalue"] for g in ("sb", "lb")},
                **{f"{full} {g.upper()}": res[g][full] for g in ("sb", "lb")}})
        findings.append(_finding(opt, config, rs, {"LB is not sharper by the top eigenvalue": sharper_eig,
                                                   "LB is not sharper by epsilon-sharpness": sharper_eps,
                                                   "SB does not test higher": gap > 0}))
    lines += ["## Accuracy (layout of the paper's Table 2)", "", markdown_table(tables["accuracy"]), ""]
    lines += ["## Epsilon-sharpness, in percent (Tables 3 and 4: full space and random subspace of dimension "
              f"{config.subspace_dim})", "", markdown_table(tables["sharpness"]), ""]
    lines += ["## Top Hessian eigenvalue", "", markdown_table(tables["top_eigenvalue"]), ""]
    lines += ["## Each seed", "", markdown_table(tables["seeds"]), ""]
    if config.snapshot_every:
        tables["equal_loss"] = _at_equal_loss(config, records)
        lines += ["## At equal training loss (from the snapshots of Figure 6)", "",
                  "LB where its training loss first fell to SB's final one, interpolated between its snapshots on "
                  "log-log axes (n/a: LB never got there), beside SB's trained point.", "",
                  markdown_table(tables["equal_loss"]), ""]
    lines += ["## What the results show", "", markdown_table(tables["checks"]), ""]
    lines += findings
    for opt in config.optimizers:
        text = _parametric_asymmetry(where(records, optimizer=opt))
        if text:
            lines.append(f"- {opt}, parametric plot: {text}")
    lines += ["", _paper_line(), ""]
    return tables, "\n".join(lines)


def _at_equal_loss(config, records):
    """One row per seed: SB's trained point against LB at the same training loss (:func:`at_training_loss`)."""
    full = f"full_{config.eps[0]:g}"
    rows = []
    for r in records:
        sb, lb = r["result"]["sb"], r["result"]["lb"]
        snap, target = lb["snapshots"], sb["train_loss"]

        def at(values):
            return at_training_loss(snap["train_loss"], values, target)
        rows.append({"optimizer": r["point"]["optimizer"], "seed": r["point"]["seed"], "SB train loss": target,
                     "LB epoch there": at(snap["epoch"]),
                     f"{full} SB": sb[full], f"{full} LB there": at(snap["sharpness"]),
                     "top eig. SB": sb["top_eigenvalue"], "top eig. LB there": at(snap["top_eigenvalue"])})
    return rows


def _finding(opt, config, records, parts):
    """One line: whether LB is at a minimizer and whether the paper's finding holds, seed by seed. ``parts``: for
    each part of the finding, what it means that it fails -> ``(seeds,)`` booleans, True where it holds."""
    lb_train = _values(records, "lb", "train_acc", 100)
    if np.any(lb_train < 99.0):
        steps = records[0]["result"]["lb"]["steps"]
        return (f"- {opt}: LB reaches only {mean_std(lb_train)[0]:.1f}% training accuracy ({steps} updates): it is "
                "not at a minimizer, so its lower test accuracy is (at least in part) an optimization gap, not the "
                "generalization gap of the paper.")
    holds = np.all(list(parts.values()), axis=0)
    n, k = len(records), int(np.sum(holds))
    where_ = (f"training loss <= {config.target_loss:g} in both" if config.target_loss is not None else
              f"LB at {mean_std(lb_train)[0]:.2f}% training accuracy")
    claim = (f"LB is sharper by the top eigenvalue and by epsilon-sharpness (full space, eps {config.eps[0]:g}) and "
             "SB's test accuracy is higher")
    if k == n:
        return f"- {opt}: both regimes at a minimizer ({where_}); in each of the {n} seeds {claim}: the paper's finding."
    failed = "; ".join(f"seed {r['point']['seed']}: " + ", ".join(why for why, ok in parts.items() if not ok[i])
                       for i, r in enumerate(records) if not holds[i])
    return (f"- {opt}: both regimes at a minimizer ({where_}); {claim} in {k} of the {n} seeds only (not in {failed}): "
            "here the paper's finding does not hold in every seed.")


def _parametric_asymmetry(records):
    """How much the training loss changes half a segment beyond each minimizer along the line (alpha = -0.5 and
    1.5), from its value at the minimizer."""
    if not records:
        return ""
    par = [r["result"]["parametric"] for r in records]
    a = par[0]["alphas"]
    i0, i1 = int(np.argmin(np.abs(a))), int(np.argmin(np.abs(a - 1)))
    j_sb, j_lb = int(np.argmin(np.abs(a + 0.5))), int(np.argmin(np.abs(a - 1.5)))
    rise_sb = np.array([p["train_loss"][j_sb] - p["train_loss"][i0] for p in par])
    rise_lb = np.array([p["train_loss"][j_lb] - p["train_loss"][i1] for p in par])

    def change(values):
        m, s = mean_std(values)
        return f"{'rises' if m >= 0 else 'falls'} by {abs(m):.3g} ± {s:.2g}"
    return (f"half a segment beyond SB (alpha = {a[j_sb]:.2f}) the training loss {change(rise_sb)}, half a segment "
            f"beyond LB (alpha = {a[j_lb]:.2f}) it {change(rise_lb)}: "
            f"{'the LB side is the steep one' if np.mean(rise_lb) > np.mean(rise_sb) else 'no steeper LB side'}.")


def figures(config, records):
    from ..plotting import parametric_plot, compare_regimes
    opts = [o for o in config.optimizers if where(records, optimizer=o)]
    names = {"adam": "Adam", "sgd": "SGD"}
    curves = {}
    for opt in opts:
        par = [r["result"]["parametric"] for r in where(records, optimizer=opt)]
        curves[f"{names.get(opt, opt)} (lr {config.adam_lr if opt == 'adam' else config.sgd_lr:g})"] = {
            k: np.stack([p[k] for p in par]) for k in ("train_loss", "test_loss", "train_accuracy", "test_accuracy")}
    alphas = where(records, optimizer=opts[0])[0]["result"]["parametric"]["alphas"]
    arch = _arch(config)
    fig_par = parametric_plot(alphas, curves, title=f"Keskar's parametric plot, MNIST {arch} {config.activation}: "
                              f"SB (B = {config.small_batch}) at α = 0, LB "
                              f"(B = {records[0]['result']['lb']['batch_size']}) at α = 1")

    def per_group(key, scale=1.0):
        return {names.get(o, o): {"SB": _values(where(records, optimizer=o), "sb", key, scale),
                                  "LB": _values(where(records, optimizer=o), "lb", key, scale)} for o in opts}
    eps0 = config.eps[0]
    measures = {
        "top Hessian eigenvalue": {"ylabel": "λ_max (loss / parameter²)", "log": True,
                                   "values": per_group("top_eigenvalue")},
        f"ε-sharpness, full space, ε = {eps0:g}": {"ylabel": "φ (% of 1 + loss)", "log": True,
                                                    "values": per_group(f"full_{eps0:g}")},
        f"ε-sharpness, {config.subspace_dim}-dim subspace, ε = {eps0:g}": {
            "ylabel": "φ (% of 1 + loss)", "log": True, "values": per_group(f"subspace_{eps0:g}")},
        "test accuracy": {"ylabel": "accuracy (%)", "values": per_group("test_acc", 100)},
        "training accuracy": {"ylabel": "accuracy (%)", "values": per_group("train_acc", 100)},
        "final training loss": {"ylabel": "cross-entropy (nats)", "log": True, "values": per_group("train_loss")},
    }
    budget = (f"each until its loss ceased to improve, at most {config.epochs} epochs"
              if config.plateau_patience is not None and config.target_loss is None else
              f"{config.epochs} epochs each" if config.target_loss is None else
              f"each to training loss {config.target_loss:g}")
    fig_cmp = compare_regimes(measures, [names.get(o, o) for o in opts],
                              title=f"SB against LB on MNIST ({arch}, {budget}; mean ± std over "
                                    f"{len(where(records, optimizer=opts[0]))} seeds, dots: seeds)")
    figs = {"parametric": fig_par, "sb_vs_lb": fig_cmp}
    if config.snapshot_every:
        from ..plotting import curvature_vs_training_loss

        def runs(opt, key):
            return {label: [(r["result"][g]["snapshots"]["train_loss"], r["result"][g]["snapshots"][key])
                            for r in where(records, optimizer=opt)] for label, g in (("SB", "sb"), ("LB", "lb"))}
        panels = {}
        for o in opts:
            name = names.get(o, o)
            panels[f"{name}, ε = {eps0:g}, full space"] = ("ε-sharpness (% of 1 + loss)", runs(o, "sharpness"))
            panels[f"{name}, top Hessian eigenvalue"] = ("top eigenvalue (Lanczos)", runs(o, "top_eigenvalue"))
        k = config.snapshot_every
        when = (f"every {k} epoch(s)" if config.snapshot_spacing == "even" else
                f"at epochs 0, {k}, {2 * k}, {4 * k}, {8 * k}, ...")
        figs["sharpness_along_training"] = curvature_vs_training_loss(
            panels, title=f"Keskar's Figure 6, MNIST {arch}:\nsharpness against the training loss {when} of "
                          "training and at its end (lines: seeds)")
    return figs


SCENARIO = Scenario(
    name="keskar-mnist",
    description="Keskar et al. 2017 on MNIST: SB (256) vs LB (10%), Adam and SGD, accuracy, sharpness, parametric plot",
    config_class=Config, quick=QUICK, grid=grid, run_point=run_point, summarize=summarize, figures=figures,
    checks=CHECKS)
