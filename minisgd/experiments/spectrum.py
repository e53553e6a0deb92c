r"""spectrum: the exact, full Hessian spectrum at a small-batch and a large-batch minimizer of a reduced MNIST model.

For each number of classes K (digits 0 .. K-1) and seed, one point: from one initial theta, train a small-batch
(B = 256) and a large-batch (B = 10% of the training set) copy with Adam for the same number of epochs, then form
the exact Hessian H (``net.hessian``) and its Gauss-Newton part G (``net.gauss_newton``) over the whole training
set, and take every eigenvalue of H, of G and of the residual R = H - G (``eigvalsh``: nothing estimated).

What is measured (Sagun et al. 2017, Papyan 2019 for the outliers; Keskar et al. 2017 for SB against LB):

* **outliers against the bulk**: the number of outliers is where the ratio of consecutive eigenvalues
  lambda_i / lambda_{i+1} is largest among the top ``outlier_search * K``; compared with K and K - 1 (the softmax
  Hessian diag(p) - p p^T has rank K - 1, so the class structure gives at most K - 1 large directions per
  "class-mean" block, and Papyan's decomposition predicts about K - 1 outliers here);
* **Gauss-Newton against residual**: the top of the spectrum is G's; R is small and indefinite;
* **the negative eigenvalues**: how many (below -1e-10 lambda_max, i.e. beyond rounding) and their mass
  ``sum |lambda_-| / sum |lambda|``: they come from R alone, since G is positive semi-definite;
* **SB against LB**: lambda_max, the trace and the outliers' share of it.

The model: a stratified subset of 10,000 training images, average-pooled to 7x7 = 49 pixels in [0, 1], and a
49-48-10 tanh network (P = 2,890 for K = 10): small enough for the exact 2,890 x 2,890 Hessian and three full
eigendecompositions in seconds on the CPU. The inputs are raw (non-negative, not centred) pixels on purpose: the
outliers come from the class means of the per-example gradients (Papyan 2019), and centring the inputs (PCA or
standardization) shrinks those means; with PCA-30 inputs we found no clear outlier gap, with pooled pixels a gap
of 1.8x (K = 10) to 12x (K = 2) after exactly K - 1 eigenvalues. The training uses Adam (lr 1e-3), 200 epochs each
(LB: 2,000 updates), which brings both near their minimum for this small model (it cannot reach 100% training accuracy).
"""
from dataclasses import asdict, dataclass

import numpy as np

from ..core.mlp import MLP
from ..training.optim import OPTIMIZERS
from ..training.train import train, TrainConfig
from ..backend import to_numpy
from . import Scenario, between, one_of
from .inputs import arrays, mnist
from .report import markdown_table, pm, where


@dataclass(frozen=True)
class Config:
    """spectrum; the defaults are the full-size run (a few minutes with --jobs 2 on 2 cores)."""

    n_train: int = 10000  # training images (stratified over the classes kept); the Hessian is over all of them
    pool: int = 4  # average pooling: 4 gives 7x7 = 49 raw pixels
    hidden: tuple[int, ...] = (48,)  # hidden widths: 49-48-10, P = 2,890
    activation: str = "tanh"  # hidden nonlinearity (smooth, so the residual has its second-derivative part)
    classes: tuple[int, ...] = (2, 5, 10)  # numbers of classes K; each keeps digits 0 .. K-1
    optimizer: str = "adam"  # optimizer for both regimes
    lr: float = 1e-3  # its learning rate
    small_batch: int = 256  # SB batch size
    large_fraction: float = 0.1  # LB batch size as a fraction of the training set
    epochs: int = 200  # epochs for both SB and LB, from the same start
    outlier_search: int = 3  # look for the outlier gap among the top outlier_search * K eigenvalues
    seed: int = 0  # first seed
    seeds: int = 3  # number of seeds
    device: str = "cpu"  # "cpu" or "gpu"


CHECKS = {"classes": between(2, 10), "optimizer": one_of(*OPTIMIZERS),
          "large_fraction": between(0, 1, low_open=True)}

QUICK = dict(n_train=4000, hidden=(16,), classes=(3, 10), epochs=40, seeds=2)

PARTS = ("full", "gauss_newton", "residual")


def grid(config):
    base = {k: v for k, v in asdict(config).items() if k not in ("classes", "seeds", "seed")}
    return [{**base, "num_classes": k, "seed": config.seed + s} for k in config.classes for s in range(config.seeds)]


def count_outliers(values, num_classes, search=3):
    """``(count, gap)``: the outliers end where lambda_i / lambda_{i+1} is largest among the top ``search * K``
    positive eigenvalues (``values`` in any order)."""
    v = np.sort(np.asarray(values, float))[::-1]
    top = v[v > 0][: search * num_classes + 1]
    ratios = top[:-1] / top[1:]
    i = int(np.argmax(ratios))
    return i + 1, float(ratios[i])


def spectrum_stats(eig, num_classes, search=3):
    """Numbers that describe one full spectrum ``eig: (P,)``."""
    eig = np.sort(np.asarray(eig, float))[::-1]
    lam_max = float(eig[0])
    tol = 1e-10 * max(abs(eig[0]), abs(eig[-1]))
    neg = eig[eig < -tol]
    count, gap = count_outliers(eig, num_classes, search)
    return {"top_eigenvalue": lam_max, "min_eigenvalue": float(eig[-1]), "trace": float(eig.sum()),
            "outliers": count, "outlier_gap": gap, "bulk_edge": float(eig[count]),
            "outlier_share": float(eig[:count].sum() / eig[eig > 0].sum()),
            "negative_count": int(neg.size), "negative_fraction": float(neg.size / eig.size),
            "negative_mass": float(np.abs(neg).sum() / np.abs(eig).sum())}


def run_point(point):
    """SB and LB from one start; the full spectra of H, G and H - G at each."""
    p = point
    K = p["num_classes"]
    ds = mnist(n_train=p["n_train"], pool=p["pool"], classes=tuple(range(K)) if K < 10 else None)
    X, y, Xt, yt = arrays(ds, "float64", p["device"])
    N = X.shape[0]
    net = MLP([ds.input_dim, *p["hidden"], K], activation=p["activation"], loss="cross_entropy")
    theta0 = net.init(seed=p["seed"], device=p["device"])
    out = {"num_params": net.num_params, "n_train": N}
    for regime, batch in (("sb", p["small_batch"]), ("lb", int(round(p["large_fraction"] * N)))):
        cfg = TrainConfig(optimizer=p["optimizer"], lr=p["lr"], batch_size=batch, epochs=p["epochs"], seed=p["seed"],
                          eval_every=None, log_grad_norm=False)
        result = train(net, theta0, (X, y, Xt, yt), cfg, progress=False)
        h, theta = result.history, result.theta
        H = net.hessian(theta, X, y)
        G = net.gauss_newton(theta, X, y)
        spectra = {"full": np.linalg.eigvalsh(to_numpy(H)), "gauss_newton": np.linalg.eigvalsh(to_numpy(G)),
                   "residual": np.linalg.eigvalsh(to_numpy(H - G))}
        del H, G
        out[regime] = {"batch_size": batch, "steps": result.step, "train_loss": h["train_loss"][-1],
                       "train_acc": h["train_acc"][-1], "test_loss": h["test_loss"][-1], "test_acc": h["test_acc"][-1],
                       "eigenvalues": spectra,
                       **{part: spectrum_stats(spectra[part], K, p["outlier_search"]) for part in PARTS}}
    return out


# ---- summary -----------------------------------------------------------------------------------------------------

def summarize(config, records):
    rows = []
    for K in config.classes:
        rs = where(records, num_classes=K)
        for regime in ("sb", "lb"):
            if not rs:
                continue
            get = lambda part, key: [r["result"][regime][part][key] for r in rs]  # noqa: E731
            res = [r["result"][regime] for r in rs]
            rows.append({
                "K": K, "regime": regime.upper(), "B": res[0]["batch_size"], "seeds": len(rs),
                "train acc (%)": pm([x["train_acc"] * 100 for x in res]),
                "test acc (%)": pm([x["test_acc"] * 100 for x in res]),
                "train loss": pm([x["train_loss"] for x in res], digits=3),
                "λ_max": pm(get("full", "top_eigenvalue"), digits=3),
                "outliers H": _counts(get("full", "outliers")),
                "outliers G": _counts(get("gauss_newton", "outliers")),
                "gap λ_k/λ_k+1": pm(get("full", "outlier_gap")),
                "outliers' share of tr (%)": pm(np.array(get("full", "outlier_share")) * 100, digits=1),
                "negative eigenvalues": pm(get("full", "negative_count"), digits=0),
                "negative mass (%)": pm(np.array(get("full", "negative_mass")) * 100, digits=2),
                "‖R‖ / λ_max": pm([max(abs(a), abs(b)) / c for a, b, c in zip(
                    get("residual", "top_eigenvalue"), get("residual", "min_eigenvalue"),
                    get("full", "top_eigenvalue"))], digits=3),
            })
    big = max(records, key=lambda r: r["point"]["num_classes"])
    lines = [f"MNIST {config.n_train} training images per K (stratified), {28 // config.pool}x{28 // config.pool} "
             f"raw pixels, {28 * 28 // config.pool ** 2}-{'-'.join(map(str, config.hidden))}-K {config.activation} "
             f"(P = {big['result']['num_params']:,} for K = {big['point']['num_classes']}); {config.optimizer} lr "
             f"{config.lr:g}, {config.epochs} epochs for SB and LB from the same start. Exact Hessian H, Gauss-Newton "
             "G and residual R = H - G over the whole training set, every eigenvalue. Outliers: the largest ratio "
             f"gap among the top {config.outlier_search}K eigenvalues. Mean ± std over seeds.", "",
             markdown_table(rows), ""]
    for K in config.classes:
        rs = where(records, num_classes=K)
        if not rs:
            continue
        sb = np.array([r["result"]["sb"]["full"]["top_eigenvalue"] for r in rs])
        lb = np.array([r["result"]["lb"]["full"]["top_eigenvalue"] for r in rs])
        n_out = [r["result"][g]["full"]["outliers"] for r in rs for g in ("sb", "lb")]
        lines.append(f"- K = {K}: outliers found {_counts(n_out)} (K - 1 = {K - 1}); λ_max LB / SB = "
                     f"{pm(lb / sb)} (LB sharper in {int(np.sum(lb > sb))}/{len(rs)} seeds).")
    return {"spectra": rows}, "\n".join(lines) + "\n"


def _counts(values):
    """``"9"`` when every seed agrees, else the values, e.g. ``"9, 9, 8"``."""
    values = [int(v) for v in values]
    return str(values[0]) if len(set(values)) == 1 else ", ".join(map(str, values))


def figures(config, records):
    from ..plotting import gauss_newton_vs_residual, outliers_vs_classes, spectrum_histograms
    K = max(k for k in config.classes if where(records, num_classes=k))
    first = where(records, num_classes=K)[0]
    res, seed = first["result"], first["point"]["seed"]
    arch = f"{28 * 28 // config.pool ** 2}-{'-'.join(map(str, config.hidden))}-{K} {config.activation}"
    label = {"sb": f"SB (B = {res['sb']['batch_size']})", "lb": f"LB (B = {res['lb']['batch_size']})"}
    figs = {
        f"spectrum_K{K}": spectrum_histograms(
            {label[g]: res[g]["eigenvalues"]["full"] for g in ("sb", "lb")},
            threshold={label[g]: res[g]["full"]["bulk_edge"] for g in ("sb", "lb")},
            title=f"Exact Hessian spectrum, MNIST 7x7, {arch}, P = {res['num_params']:,}, seed {seed} "
                  f"(dotted: the bulk's edge, below the outliers)"),
        f"gauss_newton_vs_residual_K{K}": gauss_newton_vs_residual(
            {label[g]: res[g]["eigenvalues"] for g in ("sb", "lb")},
            outliers={label[g]: res[g]["full"]["outliers"] for g in ("sb", "lb")},
            title=f"Top eigenvalues of H, its Gauss-Newton part G and the residual H - G ({arch}, seed {seed})"),
    }
    ks = [k for k in config.classes if where(records, num_classes=k)]
    if len(ks) > 1:
        seeds = sorted({r["point"]["seed"] for r in records})
        counts = {}
        for g in ("sb", "lb"):
            values = np.full((len(seeds), len(ks)), np.nan)
            for r in records:
                values[seeds.index(r["point"]["seed"]), ks.index(r["point"]["num_classes"])] = \
                    r["result"][g]["full"]["outliers"]
            counts[f"{g.upper()} minimizer"] = values
        figs["outliers_vs_classes"] = outliers_vs_classes(
            ks, counts, title=f"Hessian outliers against the number of classes\n(MNIST digits 0..K-1, 7x7, "
                              f"{28 * 28 // config.pool ** 2}-{'-'.join(map(str, config.hidden))}-K)")
    return figs


SCENARIO = Scenario(
    name="spectrum",
    description="exact full Hessian spectra at SB and LB minimizers (MNIST 7x7, P ~ 3k): outliers vs K, GN vs residual",
    config_class=Config, quick=QUICK, grid=grid, run_point=run_point, summarize=summarize, figures=figures,
    checks=CHECKS)
