r"""approximations: how good are KFAC, EKFAC, the empirical Fisher and the diagonal against the exact Hessian and
Gauss-Newton matrix, at a small-batch and a large-batch minimizer of an MNIST MLP?

Curvature libraries without an exact Hessian can only compare an approximation with another; here every matrix is
formed exactly (``net.hessian``, ``net.gauss_newton``) over the whole training set and every approximation
(:mod:`minisgd.curvature.operators`) is set against it on the same network, point and data. For each seed one
initial theta, a small-batch (SB) and a large-batch (LB = 10% of N) copy trained with Adam for the same number of
epochs (Keskar et al. 2017's protocol), and at each minimizer:

* **the approximations**: the Gauss-Newton matrix G itself (as an approximation of H), KFAC of G (Martens & Grosse
  2015; exact output factor), KFAC with one Monte Carlo label per example (the usual practice), EKFAC (George et al.
  2018), the empirical Fisher, and the target's own diagonal;
* **relative Frobenius error** :math:`\lVert \hat A - T \rVert_F / \lVert T \rVert_F` against T = H and T = G, per
  layer's diagonal block and over the whole matrix (KFAC and EKFAC drop the cross-layer blocks: the difference of
  the two is what the block-diagonal structure costs);
* **top eigenvalues and eigenvectors**: :math:`\hat\lambda_1 / \lambda_1`, the alignment
  :math:`|\hat u_1^T u_1|` of the top eigenvectors and the overlap of the top-k eigenspaces
  :math:`\lVert \hat U_k^T U_k \rVert_F^2 / k` (1: the same subspace; about k/P for random ones);
* **the spectrum of each** (KFAC's and EKFAC's in closed form from their Kronecker eigenbases, the others by
  ``eigh``);
* **SB against LB**: whether each approximation's :math:`\lambda_1` and trace rank LB as sharper (or flatter) as
  the exact Hessian's do, and by how much;
* **trace estimators** on the Hessian operator at the same budget of products: Hutchinson, Hutch++ and XTrace
  against the exact trace (:mod:`minisgd.curvature.estimators`).

The model: ``n_train`` stratified MNIST images average-pooled to 7x7 raw pixels, a 49-32-32-10 tanh network
(P = 2,986): three layers, so KFAC's per-layer blocks and the cross-layer blocks it drops are both visible, and
small enough for two exact ``(P, P)`` matrices and their eigendecompositions per minimizer.
"""
from dataclasses import asdict, dataclass

import numpy as np
from scipy.sparse.linalg import eigsh

from ..backend import to_numpy
from ..curvature.estimators import hutchinson_trace, hutchpp_trace, xtrace
from ..curvature.operators import EKFAC, KFAC, EmpiricalFisher, Hessian
from ..training.train import TrainConfig, train
from . import Scenario
from .inputs import mnist_network
from .report import markdown_table, pm

APPROXIMATIONS = ("gauss_newton", "kfac", "kfac_mc", "ekfac", "empirical_fisher", "diagonal")
LABELS = {"gauss_newton": "Gauss-Newton G", "kfac": "KFAC", "kfac_mc": "KFAC-MC (1 sample)", "ekfac": "EKFAC",
          "empirical_fisher": "empirical Fisher", "diagonal": "diagonal of the target"}
TARGETS = {"hessian": "H", "gauss_newton": "G"}
ESTIMATORS = {"Hutchinson": hutchinson_trace, "Hutch++": hutchpp_trace, "XTrace": xtrace}


@dataclass(frozen=True)
class Config:
    """approximations; the defaults are the full-size run (a few minutes with --jobs 2 on 2 cores)."""

    n_train: int = 5000  # training images (stratified); every curvature is over all of them
    pool: int = 4  # average pooling: 4 gives 7x7 = 49 raw pixels
    hidden: tuple[int, ...] = (32, 32)  # hidden widths: 49-32-32-10, P = 2,986
    activation: str = "tanh"  # hidden nonlinearity (smooth: the residual H - G has its second-derivative part)
    optimizer: str = "adam"  # optimizer for both regimes
    lr: float = 1e-3  # its learning rate
    small_batch: int = 128  # SB batch size
    large_fraction: float = 0.1  # LB batch size as a fraction of the training set (Keskar et al.: 10%)
    epochs: int = 100  # epochs for SB and LB, from the same start
    top: int = 10  # the top-k eigenspaces compared
    estimator_products: int = 60  # Hessian-vector products per trace estimator (a multiple of 6)
    seed: int = 0  # first seed
    seeds: int = 3  # number of seeds
    device: str = "cpu"  # "cpu" or "gpu"


QUICK = dict(n_train=2000, hidden=(16, 16), epochs=30, seeds=1, estimator_products=30)


def grid(config):
    base = {k: v for k, v in asdict(config).items() if k not in ("seeds", "seed")}
    return [{**base, "seed": config.seed + s} for s in range(config.seeds)]


def _blocks(net, A):
    return [A[layer.start:layer.stop, layer.start:layer.stop] for layer in net.layers]


def relative_errors(net, approx, target):
    """``(L + 1,)``: relative Frobenius error of each layer's diagonal block, then of the whole matrix."""
    per_layer = [np.linalg.norm(a - t) / np.linalg.norm(t) for a, t in zip(_blocks(net, approx), _blocks(net, target))]
    return np.array(per_layer + [np.linalg.norm(approx - target) / np.linalg.norm(target)])


def compare(net, eigenpairs, dense, target, k):
    """The numbers that say how close an approximation is to one target; ``eigenpairs = (values (P,) or (k,)
    descending, vectors (P, k))``, ``target = (dense, values (P,) descending, vectors (P, k))``."""
    T, t_values, t_vectors = target
    values, vectors = eigenpairs
    return {"errors": relative_errors(net, dense, T),
            "top_ratio": float(values[0] / t_values[0]),
            "top_alignment": float(abs(vectors[:, 0] @ t_vectors[:, 0])),
            "overlap": float(np.sum((vectors[:, :k].T @ t_vectors[:, :k]) ** 2) / k),
            "trace_ratio": float(np.trace(dense) / np.trace(T))}


def _top_eigh(A, k):
    """All eigenvalues (descending, ``eigvalsh``) and the top-k eigenvectors (ARPACK on the dense matrix: a
    fraction of the cost of a full ``eigh`` with vectors) of a dense symmetric A."""
    values = np.linalg.eigvalsh(A)[::-1].copy()
    top, vectors = eigsh(A, k=k, which="LA", tol=1e-12)
    return values, vectors[:, np.argsort(-top)]


def measure(net, theta, X, y, config, seed):
    """Every comparison at one minimizer (module docstring); NumPy float64 numbers and arrays out."""
    k = config["top"]
    H, G = to_numpy(net.hessian(theta, X, y)), to_numpy(net.gauss_newton(theta, X, y))
    targets = {"hessian": (H, *_top_eigh(H, k)), "gauss_newton": (G, *_top_eigh(G, k))}
    ops = {"kfac": KFAC(net, theta, X, y), "kfac_mc": KFAC(net, theta, X, y, fisher_type="mc", seed=seed),
           "ekfac": EKFAC(net, theta, X, y)}
    dense = {name: to_numpy(op.to_dense()) for name, op in ops.items()}
    pairs = {name: (op.eigenvalues(), to_numpy(op.eigenpairs(k)[1])) for name, op in ops.items()}
    dense["empirical_fisher"] = to_numpy(EmpiricalFisher(net, theta, X, y).to_dense())
    pairs["empirical_fisher"] = _top_eigh(dense["empirical_fisher"], k)
    dense["gauss_newton"], pairs["gauss_newton"] = G, targets["gauss_newton"][1:]
    out = {"spectra": {"hessian": targets["hessian"][1], "gauss_newton": targets["gauss_newton"][1],
                       **{name: pairs[name][0] for name in ("kfac", "kfac_mc", "ekfac", "empirical_fisher")}},
           "compare": {}}
    for target, tgt in targets.items():
        rows = {}
        for name in APPROXIMATIONS:
            if name == "gauss_newton" and target == "gauss_newton":
                continue
            if name == "diagonal":  # the target's own diagonal: eigenvalues its entries, eigenvectors unit vectors
                d = np.diag(tgt[0])
                order = np.argsort(-d, kind="stable")
                unit = np.zeros((d.size, k))
                unit[order[:k], np.arange(k)] = 1.0
                rows[name] = compare(net, (d[order], unit), np.diag(d), tgt, k)
            else:
                rows[name] = compare(net, pairs[name], dense[name], tgt, k)
        out["compare"][target] = rows
    out["spectra"]["diagonal"] = np.sort(np.diag(H))[::-1]
    Hop = Hessian(net, theta, X, y)
    exact_trace = float(np.trace(H))
    out["estimators"] = {name: _estimate(f, Hop, config["estimator_products"], seed, exact_trace)
                         for name, f in ESTIMATORS.items()}
    return out


def _estimate(estimator, op, products, seed, exact):
    est = estimator(op, products, seed=seed)
    return {"relative_error": abs(est.mean - exact) / abs(exact), "stated_error": est.stderr / abs(exact)}


def run_point(point):
    """SB and LB from one start; every approximation against H and G at each."""
    p = point
    net, theta0, (X, y, Xt, yt) = mnist_network(p)
    N = X.shape[0]
    out = {"num_params": net.num_params, "n_train": N, "layers": [layer.name for layer in net.layers]}
    for regime, batch in (("sb", p["small_batch"]), ("lb", int(round(p["large_fraction"] * N)))):
        cfg = TrainConfig(optimizer=p["optimizer"], lr=p["lr"], batch_size=batch, epochs=p["epochs"], seed=p["seed"],
                          eval_every=None, log_grad_norm=False)
        result = train(net, theta0, (X, y, Xt, yt), cfg, progress=False)
        h = result.history
        out[regime] = {"batch_size": batch, "steps": result.step, "train_loss": h["train_loss"][-1],
                       "train_acc": h["train_acc"][-1], "test_acc": h["test_acc"][-1],
                       **measure(net, result.theta, X, y, p, p["seed"])}
    return out


# ---- summary -----------------------------------------------------------------------------------------------------

def _values(records, regime, target, name, key):
    return np.array([r["result"][regime]["compare"][target][name][key] for r in records])


def summarize(config, records):
    first = records[0]["result"]
    layers = first["layers"]
    tables, lines = {}, []
    k = config.top
    for target, letter in TARGETS.items():
        rows = []
        for regime in ("sb", "lb"):
            for name in APPROXIMATIONS:
                if name not in first[regime]["compare"][target]:
                    continue
                errors = _values(records, regime, target, name, "errors")  # (S, L + 1)
                row = {"regime": regime.upper(), "approximation": LABELS[name]}
                row.update({f"error {layer}": pm(errors[:, i], digits=3) for i, layer in enumerate(layers)})
                row.update({"error, whole": pm(errors[:, -1], digits=3),
                            f"λ̂₁ / λ₁({letter})": pm(_values(records, regime, target, name, "top_ratio"), digits=3),
                            "|û₁ᵀu₁|": pm(_values(records, regime, target, name, "top_alignment"), digits=3),
                            f"top-{k} overlap": pm(_values(records, regime, target, name, "overlap"), digits=3),
                            "tr ratio": pm(_values(records, regime, target, name, "trace_ratio"), digits=3)})
                rows.append(row)
        tables[f"against_{target}"] = rows
        lines += [f"**Against the exact {'Hessian' if target == 'hessian' else 'Gauss-Newton matrix'} {letter}** "
                  f"(relative Frobenius error per layer's diagonal block and whole; top eigenvalue ratio; alignment "
                  f"of the top eigenvectors; overlap of the top-{k} eigenspaces, 1 = same):", "",
                  markdown_table(rows), ""]
    ranking = _ranking(records)
    tables["sharpness_ranking"] = ranking
    lines += ["**SB against LB**: each matrix's λ₁ and trace at LB over those at SB; 'ranks as H' counts the seeds "
              "where it says LB is sharper (or flatter) as the exact Hessian's λ₁ does:", "", markdown_table(ranking),
              ""]
    est_rows = []
    for regime in ("sb", "lb"):
        for name in ESTIMATORS:
            err = [r["result"][regime]["estimators"][name]["relative_error"] for r in records]
            stated = [r["result"][regime]["estimators"][name]["stated_error"] for r in records]
            est_rows.append({"regime": regime.upper(), "estimator": name, "relative error": pm(err, digits=4,
                                                                                               significant=True),
                             "stated (stderr / tr)": pm(stated, digits=4, significant=True)})
    tables["trace_estimators"] = est_rows
    lines += [f"**Trace estimators** on the Hessian operator, {config.estimator_products} Hessian-vector products "
              "each, against the exact trace:", "", markdown_table(est_rows), ""]
    head = (f"MNIST {config.n_train} training images, 7x7 raw pixels, 49-{'-'.join(map(str, config.hidden))}-10 "
            f"{config.activation} (P = {first['num_params']:,}); {config.optimizer} lr {config.lr:g}, {config.epochs} "
            f"epochs, SB B = {first['sb']['batch_size']}, LB B = {first['lb']['batch_size']}, from the same start; "
            f"{len(records)} seed(s), mean ± std. Every matrix over the whole training set, in float64.")
    train_line = "Training: " + "; ".join(
        f"{g.upper()} train loss {pm([r['result'][g]['train_loss'] for r in records], digits=4, significant=True)}, "
        f"test acc {pm([100 * r['result'][g]['test_acc'] for r in records])} %" for g in ("sb", "lb"))
    return tables, "\n".join([head, "", train_line, ""] + lines)


def _ranking(records):
    """Per matrix: λ₁ and trace at LB over SB, and in how many seeds λ₁ ranks SB and LB as the Hessian's does."""
    def top(r, regime, name):
        spectra = r["result"][regime]["spectra"]
        return spectra[name][0]

    def trace(r, regime, name):
        return float(np.sum(r["result"][regime]["spectra"][name]))

    exact = np.array([top(r, "lb", "hessian") > top(r, "sb", "hessian") for r in records])
    rows = []
    for name in ("hessian", "gauss_newton", "kfac", "kfac_mc", "ekfac", "empirical_fisher", "diagonal"):
        label = {"hessian": "exact Hessian H", "diagonal": "diagonal of H"}.get(name, LABELS.get(name))
        ratio = np.array([top(r, "lb", name) / top(r, "sb", name) for r in records])
        agree = int(np.sum((ratio > 1) == exact))
        rows.append({"matrix": label, "λ₁ LB / SB": pm(ratio, digits=3),
                     "tr LB / SB": pm([trace(r, "lb", name) / trace(r, "sb", name) for r in records], digits=3),
                     "ranks as H": f"{agree}/{len(records)}"})
    return rows


def figures(config, records):
    from ..plotting import PALETTE, grouped_bars, per_category, ranked_spectra
    first = records[0]["result"]
    groups = [f"layer {i + 1}" for i in range(len(first["layers"]))] + ["whole"]
    arch = f"49-{'-'.join(map(str, config.hidden))}-10 {config.activation}, P = {first['num_params']:,}"
    panels = {}
    for target, letter in TARGETS.items():  # G against H has no bar in layer 3: the output layer's blocks are equal
        for regime in ("sb", "lb"):
            values = {LABELS[name]: _values(records, regime, target, name, "errors") for name in APPROXIMATIONS
                      if name in first[regime]["compare"][target]}
            panels[f"against {letter}, {regime.upper()} minimizer"] = {
                "ylabel": "‖Â − T‖_F / ‖T‖_F (per block)", "log": True, "values": values,
                "colors": {LABELS[name]: PALETTE[i] for i, name in enumerate(APPROXIMATIONS)}}
    seed = records[0]["point"]["seed"]
    spectra = {}
    for regime in ("sb", "lb"):
        s = first[regime]["spectra"]
        spectra[f"{regime.upper()} minimizer (seed {seed})"] = {
            "exact Hessian H": s["hessian"], "exact Gauss-Newton G": s["gauss_newton"],
            **{LABELS[name]: s[name] for name in ("kfac", "kfac_mc", "ekfac", "empirical_fisher")},
            "diagonal of H": s["diagonal"]}
    ratios = {row_name: np.array([r["result"]["lb"]["spectra"][name][0] / r["result"]["sb"]["spectra"][name][0]
                                  for r in records])
              for name, row_name in (("gauss_newton", "G"), ("kfac", "KFAC"), ("kfac_mc", "KFAC-MC"),
                                     ("ekfac", "EKFAC"), ("empirical_fisher", "emp. Fisher"), ("diagonal", "diag H"))}
    exact = float(np.mean([r["result"]["lb"]["spectra"]["hessian"][0] / r["result"]["sb"]["spectra"]["hessian"][0]
                           for r in records]))
    return {
        "errors": grouped_bars(groups, panels, f"How far each approximation is from the exact matrix ({arch})"),
        "spectra": ranked_spectra(spectra, top=None, title=f"Spectra of the exact matrices and their "
                                                            f"approximations ({arch})"),
        "sharpness": per_category(list(ratios), {"λ₁ at LB / λ₁ at SB": {
            "ylabel": "λ₁(LB) / λ₁(SB)", "log": True, "values": ratios,
            "references": {"exact Hessian": exact, "no difference (1)": 1.0}}},
            title="Does the approximation rank SB and LB sharpness as the exact Hessian does?"),
    }


SCENARIO = Scenario(
    name="approximations",
    description="KFAC, EKFAC, empirical Fisher, diagonal against the exact Hessian and GGN at SB/LB minimizers (MNIST)",
    config_class=Config, quick=QUICK, grid=grid, run_point=run_point, summarize=summarize, figures=figures)
