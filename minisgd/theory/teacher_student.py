r"""The teacher-student problem: a random teacher MLP labels Gaussian inputs, so the population is known.

It lives here, above both the network and the data, because it is both: the teacher is a
:class:`minisgd.core.MLP` and the draws are a :class:`minisgd.data.Dataset`. The true loss or gradient of a
student is ``E[l(x, y)]`` under :class:`TeacherStudent`, estimated to any accuracy by
:func:`minisgd.data.synthetic.estimate_mean`; for regression the Bayes risk is exact.

Shapes: N examples, d inputs, K outputs. Seeds: ``make_teacher_student(seed=s)`` derives independent streams for
the teacher, the training set and the test set from ``numpy.random.SeedSequence(s)``.
"""
import numpy as np

from ..core.mlp import MLP
from ..data.dataset import Dataset
from ..data.synthetic import Estimate, as_generator, estimate_mean, seed_streams
from ..errors import DataError

__all__ = ["TeacherStudent", "make_teacher_student"]


class TeacherStudent:
    r"""A random teacher MLP labels Gaussian inputs.

    .. math::
        x \sim \mathcal N(0, I_d), \qquad z = c \cdot f_{\theta^*}(x) \in \mathbb R^K

    regression: :math:`y = z + \sigma \varepsilon`, :math:`\varepsilon \sim \mathcal N(0, I_K)`, y (N, K);
    classification: :math:`y \sim \mathrm{Categorical}(\mathrm{softmax}(z))`, y (N,) int64.

    ``f`` is ``minisgd.MLP(sizes, activation)`` with ``sizes = [d, ..., K]`` and LeCun init from
    ``teacher_seed``; ``c = output_scale`` (raise it to make classification labels less noisy).
    """

    def __init__(self, sizes, *, activation: str = "tanh", task: str = "regression", noise_std: float = 0.1,
                 output_scale: float = 1.0, teacher_seed: int = 0):
        if task not in ("regression", "classification"):
            raise DataError(f"TeacherStudent: task must be 'regression' or 'classification', got {task!r}")
        sizes = [int(s) for s in sizes]
        if task == "classification" and sizes[-1] < 2:
            raise DataError(f"TeacherStudent: classification needs K >= 2 outputs, got sizes {sizes}")
        if noise_std < 0:
            raise DataError(f"TeacherStudent: noise_std must be >= 0, got {noise_std}")
        self.sizes, self.activation, self.task = sizes, activation, task
        self.noise_std, self.output_scale = float(noise_std), float(output_scale)
        self.net = MLP(sizes, activation=activation, loss="mse" if task == "regression" else "cross_entropy")
        self.theta = np.asarray(self.net.init(seed=teacher_seed))

    @property
    def input_dim(self) -> int:
        return self.sizes[0]

    @property
    def num_outputs(self) -> int:
        return self.sizes[-1]

    def outputs(self, X: np.ndarray) -> np.ndarray:
        """Teacher outputs z (N, K) for inputs X (N, d): the noiseless regression target, or the logits."""
        return self.output_scale * np.asarray(self.net.forward(self.theta, X))

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        """softmax(z) (N, K): the true class probabilities given x (classification)."""
        Z = self.outputs(X)
        Z = Z - Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        return P / P.sum(axis=1, keepdims=True)

    def sample(self, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
        """n fresh draws: X (n, d) float64, y (n, K) float64 or (n,) int64."""
        rng = as_generator(rng)
        X = rng.standard_normal((n, self.input_dim))
        if self.task == "regression":
            return X, self.outputs(X) + self.noise_std * rng.standard_normal((n, self.num_outputs))
        # Inverse-CDF sampling: the first class whose cumulative probability exceeds u.
        cdf = np.cumsum(self.probabilities(X), axis=1)
        u = rng.random((n, 1)) * cdf[:, -1:]
        y = np.minimum((cdf <= u).sum(axis=1), self.num_outputs - 1)
        return X, y.astype(np.int64)

    def bayes_risk(self, n: int = 200_000, rng=0) -> Estimate:
        r"""The lowest population loss any predictor reaches (the teacher's own).

        regression (mse): exactly :math:`K \sigma^2 / 2` (stderr 0); classification (cross-entropy):
        the expected entropy :math:`E_x[H(\mathrm{softmax}(z(x)))]`, by Monte Carlo over ``n`` inputs.
        """
        if self.task == "regression":
            return Estimate(np.float64(self.num_outputs * self.noise_std**2 / 2), np.float64(0.0), 0)

        def entropy(X, _y):
            P = self.probabilities(X)
            return -(P * np.log(np.clip(P, 1e-300, None))).sum(axis=1)

        return estimate_mean(self, entropy, n, rng)


def make_teacher_student(d: int = 10, hidden=(32,), K: int = 1, *, task: str = "regression",
                         activation: str = "tanh", noise_std: float = 0.1, output_scale: float = 1.0,
                         n_train: int = 1000, n_test: int = 1000, seed: int = 0) -> Dataset:
    """A :class:`TeacherStudent` problem with sizes ``[d, *hidden, K]`` and finite train and test sets."""
    teacher_rng, train_rng, test_rng = seed_streams(seed, 3)
    pop = TeacherStudent([d, *hidden, K], activation=activation, task=task, noise_std=noise_std,
                         output_scale=output_scale, teacher_seed=int(teacher_rng.integers(2**63)))
    Xtr, ytr = pop.sample(n_train, train_rng)
    Xte, yte = pop.sample(n_test, test_rng)
    return Dataset(
        name="teacher-student", X_train=Xtr, y_train=ytr, X_test=Xte, y_test=yte,
        num_classes=K if task == "classification" else None, task=task, population=pop,
        preprocessing=({"op": "synthetic", "problem": "teacher-student", "sizes": pop.sizes,
                        "activation": activation, "task": task, "noise_std": float(noise_std),
                        "output_scale": float(output_scale), "n_train": n_train, "n_test": n_test,
                        "seed": seed},),
    )
