r"""true-gradient: the full training set's gradient is only a large minibatch of the population.

The loss that matters is the population loss :math:`L(\theta) = E_{(x, y)}\,\ell(\theta; x, y)`; a training set
of N i.i.d. examples gives :math:`g_N = \frac1N\sum_n \nabla\ell_n`, an unbiased estimate with

.. math::
    E\lVert g_N - \nabla L\rVert^2 = \frac{\operatorname{tr}\Sigma_{pop}}{N},

:math:`\Sigma_{pop}` the covariance of one example's gradient under the population: the distance falls as
:math:`N^{-1/2}`, never to zero. A minibatch of m drawn without replacement from that training set is itself an
i.i.d. sample of m from the population, so (over both draws) :math:`E\lVert g_B - \nabla L\rVert^2 =
\operatorname{tr}\Sigma_{pop}/m`, split exactly into the training set's error and the batch's error around it:
:math:`E\lVert g_B - g_N\rVert^2 = \operatorname{tr}\Sigma_{pop}\,(1/m - 1/N)` (the two are orthogonal).

Two problems, one point per (problem, seed):

* ``linear-gaussian`` (exact): linear regression with Gaussian inputs (:class:`minisgd.data.LinearGaussian`),
  trained by minisgd's ``MLP([d, 1], "identity", "mse")``, where :math:`\nabla L` and :math:`\Sigma_{pop} =
  2L\,\nabla^2 L + \nabla L\,\nabla L^\top` (bias block aside) are known in closed form
  (:meth:`~minisgd.data.LinearGaussian.population_gradient_covariance`).
* ``teacher-student`` (estimated): a tanh student of a tanh teacher (cross-entropy, K classes) at its
  initialization; :math:`\nabla L` and :math:`\operatorname{tr}\Sigma_{pop}` estimated from ``population_draws``
  fresh examples (the prediction then adds that sample's own error, :math:`\operatorname{tr}\Sigma_{pop}/n_{pop}`,
  because the reference is an independent draw).

For each N on a log grid, ``repeats`` independent training sets give the mean of :math:`\lVert g_N - \nabla
L\rVert^2` with its standard error, and for the largest N, minibatches of m give the two distances above.
"""
from dataclasses import asdict, dataclass

import numpy as np

from ..core.mlp import MLP
from ..data import make_linear_gaussian
from ..theory.teacher_student import make_teacher_student
from ..errors import ConfigError
from . import Scenario, at_least, one_of
from .inputs import geometric_sizes
from .report import markdown_table, pm, where

PROBLEMS = ("linear-gaussian", "teacher-student")


@dataclass(frozen=True)
class Config:
    """true-gradient; the defaults are the full-size run (about 3 min with --jobs 2 on 2 cores)."""

    problems: tuple[str, ...] = PROBLEMS  # which problems to run
    dim: int = 20  # d, input dimension of both problems
    noise_std: float = 0.5  # label noise of the linear-Gaussian problem
    hidden: tuple[int, ...] = (32,)  # teacher and student hidden widths (teacher-student)
    classes: int = 4  # K of the teacher-student problem
    min_examples: int = 16  # smallest training set; then x4 up to max_examples
    max_examples: int = 16384  # largest training set (also the set the minibatches are drawn from)
    repeats: int = 200  # independent training sets per N
    population_draws: int = 1_048_576  # fresh examples estimating the teacher-student's population gradient
    seed: int = 0  # first seed (problem, parameters, draws)
    seeds: int = 3  # number of seeds
    device: str = "cpu"  # only "cpu"

    def __post_init__(self):
        if self.device != "cpu":
            raise ConfigError("true-gradient runs on the CPU only (device='cpu')")
        if not self.min_examples <= self.max_examples:
            raise ConfigError(f"need 1 <= min_examples <= max_examples, got {self.min_examples}, {self.max_examples}")


CHECKS = {"problems": one_of(*PROBLEMS), "noise_std": at_least(0), "classes": at_least(2)}

QUICK = dict(max_examples=4096, repeats=60, population_draws=262_144, seeds=1)


def set_sizes(config):
    """min_examples, 4 min_examples, ... up to max_examples (always included)."""
    return geometric_sizes(config.min_examples, config.max_examples, factor=4)


def grid(config):
    base = {k: v for k, v in asdict(config).items() if k not in ("seeds", "seed", "problems")}
    base["sizes"] = set_sizes(config)
    return [{**base, "problem": problem, "seed": config.seed + s} for s in range(config.seeds)
            for problem in config.problems]


def _problem(p):
    """(net, theta, population, true gradient, tr Sigma_pop, reference error) of the point's problem."""
    rng = np.random.default_rng([p["seed"], 3])
    if p["problem"] == "linear-gaussian":
        pop = make_linear_gaussian(d=p["dim"], noise_std=p["noise_std"], n_train=1, n_test=1,
                                   seed=p["seed"]).population
        net = MLP([p["dim"], 1], activation="identity", loss="mse")
        theta = np.append(pop.w_star + 0.5 * rng.standard_normal(p["dim"]), 0.3)  # away from the minimizer
        return net, theta, pop, pop.population_gradient(theta), float(np.trace(
            pop.population_gradient_covariance(theta))), 0.0
    ds = make_teacher_student(d=p["dim"], hidden=p["hidden"], K=p["classes"], task="classification", n_train=1,
                              n_test=1, seed=p["seed"])
    pop = ds.population
    net = MLP([p["dim"], *p["hidden"], p["classes"]], activation="tanh", loss="cross_entropy")
    theta = net.init(seed=p["seed"])
    X, y = pop.sample(p["population_draws"], rng)
    norms = net.per_example_grad_norms(theta, X, y)
    g = net.loss_and_grad(theta, X, y)[1]
    trace = float(np.mean(norms ** 2) - g @ g) * len(X) / (len(X) - 1)  # unbiased for the population
    return net, theta, pop, g, trace, trace / len(X)


def run_point(point):
    """Distances of training-set and minibatch gradients from the population gradient, measured and predicted."""
    p = point
    net, theta, pop, true_grad, trace, ref_error = _problem(p)
    rng = np.random.default_rng([p["seed"], 5])
    sizes = np.array(p["sizes"])
    measured, stderr = [], []
    for N in sizes:
        d2 = np.empty(p["repeats"])
        for r in range(p["repeats"]):
            X, y = pop.sample(int(N), rng)
            d2[r] = np.sum((net.loss_and_grad(theta, X, y)[1] - true_grad) ** 2)
        measured.append(d2.mean())
        stderr.append(d2.std(ddof=1) / np.sqrt(p["repeats"]))
    # minibatches of m from training sets of the largest size: both distances
    N = int(sizes[-1])
    batch_sizes = np.array([m for m in sizes if m < N])
    to_true, to_train = np.zeros(len(batch_sizes)), np.zeros(len(batch_sizes))
    reps = max(1, p["repeats"] // 4)
    for r in range(reps):
        X, y = pop.sample(N, rng)
        g_train = net.loss_and_grad(theta, X, y)[1]
        for i, m in enumerate(batch_sizes):
            idx = rng.choice(N, int(m), replace=False)
            g_batch = net.loss_and_grad(theta, X[idx], y[idx])[1]
            to_true[i] += np.sum((g_batch - true_grad) ** 2) / reps
            to_train[i] += np.sum((g_batch - g_train) ** 2) / reps
    return {"sizes": sizes, "measured": np.array(measured), "stderr": np.array(stderr),
            "predicted": trace / sizes + ref_error, "trace": trace, "reference_error": ref_error,
            "true_grad_norm_sq": float(true_grad @ true_grad), "num_params": net.num_params,
            "batch_sizes": batch_sizes, "batch_to_true": to_true, "batch_to_train": to_train,
            "batch_to_true_predicted": trace / batch_sizes + ref_error,
            "batch_to_train_predicted": trace * (1.0 / batch_sizes - 1.0 / N), "batch_repeats": reps}


def distance_slope(result):
    """Slope of ``log sqrt(mean |g_N - grad L|^2)`` against log N (theory: -1/2)."""
    return float(np.polyfit(np.log(result["sizes"]), 0.5 * np.log(result["measured"]), 1)[0])


def z_scores(result):
    return (result["measured"] - result["predicted"]) / result["stderr"]


def summarize(config, records):
    rows, lines = [], []
    for problem in config.problems:
        rs = [r["result"] for r in where(records, problem=problem)]
        if not rs:
            continue
        r0 = rs[0]
        ratio_true = [np.mean(r["batch_to_true"] / r["batch_to_true_predicted"]) for r in rs]
        ratio_train = [np.mean(r["batch_to_train"] / r["batch_to_train_predicted"]) for r in rs]
        rows.append({"problem": problem, "P": r0["num_params"], "seeds": len(rs),
                     "tr Σ_pop": pm([r["trace"] for r in rs], digits=3),
                     "‖∇L‖²": pm([r["true_grad_norm_sq"] for r in rs], digits=3),
                     "slope of the distance": pm([distance_slope(r) for r in rs], digits=3),
                     "measured / predicted": pm([np.mean(r["measured"] / r["predicted"]) for r in rs], digits=3),
                     "largest z (abs)": f"{max(np.abs(z_scores(r)).max() for r in rs):.2f} of "
                                        f"{sum(len(r['sizes']) for r in rs)}",
                     "batch→∇L / predicted": pm(ratio_true, digits=3),
                     "batch→g_N / predicted": pm(ratio_train, digits=3)})
        big = r0["sizes"][-1]
        big, dist, norm = r0["sizes"][-1], np.sqrt(r0["measured"][-1]), np.sqrt(r0["true_grad_norm_sq"])
        lines.append(f"- {problem}: with N = {big:,} training examples, the full-batch gradient is still "
                     f"{dist:.3g} (RMS) from the population gradient, {100 * dist / norm:.1f}% of ‖∇L‖ = {norm:.3g}.")
    text = ["Distance of the training-set gradient g_N from the population gradient ∇L against N "
            f"({config.repeats} training sets per N): slope of log RMS distance against log N (theory: -0.5); "
            "measured / predicted mean squared distance (theory: 1; z-scores from the standard error of the "
            "repeats); minibatches of m from the largest training set: their distance to ∇L against tr Σ_pop / m "
            "and to g_N against tr Σ_pop (1/m - 1/N) (theory: 1 and 1). Teacher-student: ∇L and tr Σ_pop estimated "
            f"from {config.population_draws:,} fresh draws, whose own error tr Σ_pop / n is in the prediction.", "",
            markdown_table(rows), "", *lines, ""]
    return {"true_gradient": rows}, "\n".join(text)


def figures(config, records):
    from ..plotting import measured_vs_predicted
    panels = {}
    for problem in config.problems:
        rs = [r["result"] for r in where(records, problem=problem)]
        if not rs:
            continue
        r0 = rs[0]
        series = [
            {"label": "training set g_N to ∇L, measured", "x": r0["sizes"],
             "y": np.sqrt(np.array([r["measured"] for r in rs]))},
            {"label": "tr Σ_pop / N, predicted", "x": r0["sizes"], "predicted": True,
             "y": np.sqrt(np.mean([r["predicted"] for r in rs], axis=0))},
            {"label": f"batch of m to ∇L (N = {r0['sizes'][-1]:,})", "x": r0["batch_sizes"], "marker": "s",
             "y": np.sqrt(np.array([r["batch_to_true"] for r in rs]))},
            {"label": "batch of m to g_N", "x": r0["batch_sizes"], "marker": "^",
             "y": np.sqrt(np.array([r["batch_to_train"] for r in rs]))},
            {"label": "tr Σ_pop (1/m - 1/N), predicted", "x": r0["batch_sizes"], "predicted": True,
             "y": np.sqrt(np.mean([r["batch_to_train_predicted"] for r in rs], axis=0))},
        ]
        panels[f"{problem} (P = {r0['num_params']:,})"] = {
            "xlabel": "examples N (training set) or m (minibatch)", "ylabel": "RMS distance of the gradient",
            "series": series, "slope": (-0.5, float(r0["sizes"][0]), float(np.sqrt(r0["predicted"][0])))}
    return {"true_gradient": measured_vs_predicted(
        panels, "The full training set's gradient is a minibatch of the population: distance to the true gradient")}


SCENARIO = Scenario(
    name="true-gradient",
    description="distance of the training-set gradient from the population gradient against N (slope -1/2), "
                "exact on linear-Gaussian",
    config_class=Config, quick=QUICK, grid=grid, run_point=run_point, summarize=summarize, figures=figures,
    checks=CHECKS, needs_mnist=False)
