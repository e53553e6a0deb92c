"""The one dataset object that the MLP, the trainer and the scenarios take.

Shapes: N examples (per split), d inputs, K outputs. Inputs ``X`` are (N, d) floating arrays (float64 as
built here); targets are (N,) int64 labels in [0, K) for classification, (N, K) floats for regression
(the convention of minisgd's ``cross_entropy`` and ``mse`` losses). A dataset is immutable: preprocessing
returns a new one with one more record in ``preprocessing``, so a result can say exactly what it used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import DataError

__all__ = ["Dataset", "Population", "TASKS", "format_record"]

TASKS = ("classification", "regression")


@runtime_checkable
class Population(Protocol):
    """A distribution that yields fresh draws on demand (synthetic problems only).

    ``sample(n, rng)`` returns ``(X, y)`` with X (n, d) float64 and y as the dataset's targets;
    ``rng`` is a seed or a ``numpy.random.Generator``. Averages over enough draws estimate the population
    (true) loss and gradient to any accuracy; see :func:`minisgd.data.synthetic.estimate_mean`.
    """

    def sample(self, n: int, rng: int | np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...


def format_record(record: dict) -> str:
    """``{"op": "pca", "dim": 50}`` -> ``"pca(dim=50)"`` (floats to 4 significant digits)."""
    args = []
    for key, value in record.items():
        if key == "op":
            continue
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, dict):
            value = "{...}"
        args.append(f"{key}={value}")
    return f"{record.get('op', '?')}({', '.join(args)})"


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """Train and test arrays (and validation if asked), with what was done to them.

    Fields
    ------
    name : e.g. ``"mnist"``, ``"linear-gaussian"``.
    X_train, y_train, X_test, y_test : (N, d) inputs and targets per split (see module docstring).
    num_classes : K for classification; ``None`` for regression (then K = ``y_train.shape[1]``).
    task : ``"classification"`` or ``"regression"``.
    X_val, y_val : a fixed validation split, or ``None``.
    preprocessing : JSON-serializable records, oldest first, each ``{"op": name, ...parameters}``.
    population : for synthetic problems, the sampler of fresh draws (:class:`Population`); else ``None``.
    image_shape : (H, W) when the inputs are flattened images (pooling needs it), else ``None``.
    device : ``"cpu"`` (NumPy arrays) or ``"gpu"`` (CuPy arrays), see :meth:`to`.
    """

    name: str
    X_train: Any
    y_train: Any
    X_test: Any
    y_test: Any
    num_classes: int | None = None
    task: str = "classification"
    X_val: Any = None
    y_val: Any = None
    preprocessing: tuple[dict, ...] = ()
    population: Any = None
    image_shape: tuple[int, int] | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "preprocessing", tuple(dict(r) for r in self.preprocessing))
        if self.image_shape is not None:
            object.__setattr__(self, "image_shape", tuple(int(s) for s in self.image_shape))
        self.validate()

    # ---- checks -------------------------------------------------------------------------------------
    def validate(self) -> None:
        """Check shapes, dtypes and label ranges; raise :class:`DataError` naming the split."""
        if self.task not in TASKS:
            raise DataError(f"dataset {self.name!r}: task must be one of {TASKS}, got {self.task!r}")
        if (self.X_val is None) != (self.y_val is None):
            raise DataError(f"dataset {self.name!r}: give both X_val and y_val, or neither")
        d = None
        K = None
        for split, X, y in self._splits():
            if getattr(X, "ndim", None) != 2 or X.dtype.kind != "f":
                raise DataError(
                    f"dataset {self.name!r}: X_{split} must be a 2-D floating array (N, d), got "
                    f"{getattr(X, 'dtype', type(X))} of shape {getattr(X, 'shape', '?')}"
                )
            d = X.shape[1] if d is None else d
            if X.shape[1] != d:
                raise DataError(f"dataset {self.name!r}: X_{split} has {X.shape[1]} inputs, X_train has {d}")
            if y.shape[0] != X.shape[0]:
                raise DataError(f"dataset {self.name!r}: X_{split} has {X.shape[0]} rows but y_{split} {y.shape[0]}")
            if self.task == "classification":
                self._check_labels(split, y)
            else:
                if y.ndim != 2 or y.dtype.kind != "f":
                    raise DataError(
                        f"dataset {self.name!r}: regression targets y_{split} must be (N, K) floats, got "
                        f"{y.dtype} of shape {y.shape}"
                    )
                K = y.shape[1] if K is None else K
                if y.shape[1] != K:
                    raise DataError(f"dataset {self.name!r}: y_{split} has {y.shape[1]} outputs, y_train has {K}")
        if self.image_shape is not None and int(np.prod(self.image_shape)) != d:
            raise DataError(f"dataset {self.name!r}: image_shape {self.image_shape} does not match d = {d}")

    def _check_labels(self, split: str, y: Any) -> None:
        K = self.num_classes
        if not isinstance(K, (int, np.integer)) or K < 1:
            raise DataError(f"dataset {self.name!r}: classification needs num_classes >= 1, got {K!r}")
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise DataError(
                f"dataset {self.name!r}: labels y_{split} must be a 1-D integer array, got {y.dtype} "
                f"of shape {y.shape}"
            )
        if isinstance(y, np.ndarray) and y.size and (y.min() < 0 or y.max() >= K):
            raise DataError(
                f"dataset {self.name!r}: labels y_{split} span [{y.min()}, {y.max()}], outside [0, {K})"
            )

    def _splits(self):
        yield "train", self.X_train, self.y_train
        if self.X_val is not None:
            yield "val", self.X_val, self.y_val
        yield "test", self.X_test, self.y_test

    # ---- sizes --------------------------------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        """d, the number of inputs."""
        return int(self.X_train.shape[1])

    @property
    def output_dim(self) -> int:
        """K: classes for classification, target dimension for regression (the MLP's last size)."""
        return int(self.num_classes) if self.task == "classification" else int(self.y_train.shape[1])

    @property
    def num_train(self) -> int:
        return int(self.X_train.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.X_test.shape[0])

    @property
    def num_val(self) -> int:
        return 0 if self.X_val is None else int(self.X_val.shape[0])

    @property
    def train(self) -> tuple[Any, Any]:
        """``(X_train, y_train)``."""
        return self.X_train, self.y_train

    @property
    def test(self) -> tuple[Any, Any]:
        """``(X_test, y_test)``."""
        return self.X_test, self.y_test

    @property
    def val(self) -> tuple[Any, Any] | None:
        """``(X_val, y_val)``, or ``None`` when there is no validation split."""
        return None if self.X_val is None else (self.X_val, self.y_val)

    # ---- description --------------------------------------------------------------------------------
    def metadata(self) -> dict:
        """A JSON-serializable summary: name, task, sizes and the preprocessing records."""
        return {
            "name": self.name,
            "task": self.task,
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "num_classes": self.num_classes,
            "num_train": self.num_train,
            "num_val": self.num_val,
            "num_test": self.num_test,
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "has_population": self.population is not None,
            "device": self.device,
            "preprocessing": [dict(r) for r in self.preprocessing],
        }

    def describe(self) -> str:
        """A few human-readable lines (the CLI and the scenarios print them; this module prints nothing)."""
        kind = f"{self.num_classes} classes" if self.task == "classification" else f"K={self.output_dim} targets"
        val = f"val {self.num_val}, " if self.num_val else ""
        sizes = f"train {self.num_train}, {val}test {self.num_test}"
        lines = [f"{self.name}: {self.task}, {kind}, d={self.input_dim} inputs ({self.device})", f"  {sizes}"]
        if self.image_shape:
            lines.append(f"  images {self.image_shape[0]}x{self.image_shape[1]}")
        if self.population is not None:
            lines.append(f"  population: {type(self.population).__name__} (fresh draws on demand)")
        steps = " -> ".join(format_record(r) for r in self.preprocessing) or "none"
        lines.append(f"  preprocessing: {steps}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        val = f", val={self.num_val}" if self.num_val else ""
        return (
            f"Dataset({self.name!r}, {self.task}, d={self.input_dim}, K={self.output_dim}, "
            f"train={self.num_train}{val}, test={self.num_test}, device={self.device!r}, "
            f"steps={[r.get('op') for r in self.preprocessing]})"
        )

    # ---- transformations ----------------------------------------------------------------------------
    def replace(self, *, record: dict | None = None, **changes: Any) -> "Dataset":
        """A copy with ``changes`` applied and ``record`` (if any) appended to ``preprocessing``."""
        if record is not None:
            changes["preprocessing"] = (*self.preprocessing, dict(record))
        return dataclasses.replace(self, **changes)

    def to(self, device: str) -> "Dataset":
        """The same dataset with its arrays on ``device`` (``"cpu"`` or ``"gpu"``).

        Uses ``minisgd.backend.to_device``; the population sampler keeps drawing NumPy arrays (move its
        draws yourself). Raises ``BackendUnavailableError`` for ``"gpu"`` without CuPy or a GPU.
        """
        try:
            from minisgd.backend import to_device
        except ImportError:
            if device != "cpu":
                raise
            to_device = None  # core backend not importable: NumPy arrays are already "on the cpu"

        def move(a):
            if a is None:
                return None
            return np.asarray(a) if to_device is None else to_device(a, device)

        return dataclasses.replace(
            self,
            X_train=move(self.X_train), y_train=move(self.y_train),
            X_test=move(self.X_test), y_test=move(self.y_test),
            X_val=move(self.X_val), y_val=move(self.y_val),
            device=device,
        )
