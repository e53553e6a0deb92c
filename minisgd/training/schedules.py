r"""Learning-rate and batch-size schedules: small frozen dataclasses, each a pure function of the time.

Learning-rate schedules are called with the time ``t`` and return a float. ``t`` counts steps (updates done
before this one, starting at 0) when ``unit="step"`` and finished epochs when ``unit="epoch"`` (the trainer
passes the one the schedule asks for). They compose: ``Warmup(100, Cosine(0.1, total=10_000))`` ramps up
linearly for 100 steps and then follows the cosine, shifted to start at the end of the warm-up.

Batch-size schedules are called with the epoch and return an int; the batch size changes only between epochs,
so an epoch is always one permutation cut into equal batches. The trainer caps every value at N.

Both kinds have ``to_dict()`` (class name and fields) so a configuration that holds them is JSON and can be
compared on resume. A plain callable also works wherever a schedule is expected; it is then recorded by its
``__qualname__`` only, so resume cannot check that it is unchanged.
"""
import math
from dataclasses import dataclass, fields

UNITS = ("step", "epoch")


class _Schedule:
    def to_dict(self):
        """``{"type": class name, field: value, ...}``; a nested schedule becomes its own dict."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {"type": type(self).__name__, **{k: describe(v) if callable(v) else v for k, v in values.items()}}


def _check_unit(unit):
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")


# ---- learning rate --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Constant(_Schedule):
    """:math:`\\eta_t = \\eta`."""

    lr: float
    unit: str = "step"

    def __post_init__(self):
        _check_unit(self.unit)

    def __call__(self, t):
        return float(self.lr)


@dataclass(frozen=True)
class StepDecay(_Schedule):
    r"""Piecewise constant: :math:`\eta_t = \eta\,\gamma^{\#\{m \in \text{milestones}: m \le t\}}`.

    ``StepDecay(0.1, milestones=(100, 150), gamma=0.1, unit="epoch")``: 0.1, then 0.01 from epoch 100 on, 0.001
    from epoch 150 on.
    """

    lr: float
    milestones: tuple = ()
    gamma: float = 0.1
    unit: str = "step"

    def __post_init__(self):
        _check_unit(self.unit)
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        if list(self.milestones) != sorted(self.milestones):
            raise ValueError(f"milestones must be increasing, got {self.milestones}")

    def __call__(self, t):
        return float(self.lr) * float(self.gamma) ** sum(1 for m in self.milestones if m <= t)


@dataclass(frozen=True)
class Cosine(_Schedule):
    r"""Cosine decay (Loshchilov & Hutter 2017, one cycle) from ``lr`` to ``lr_min`` over ``total``:

    .. math:: \eta_t = \eta_{min} + \tfrac12(\eta - \eta_{min})\,(1 + \cos(\pi \min(t, T)/T)),

    so :math:`\eta_0 = \eta`, :math:`\eta_{T/2}` is the midpoint and :math:`\eta_t = \eta_{min}` for :math:`t \ge T`.
    """

    lr: float
    total: int
    lr_min: float = 0.0
    unit: str = "step"

    def __post_init__(self):
        _check_unit(self.unit)
        if int(self.total) < 1:
            raise ValueError(f"Cosine needs total >= 1, got {self.total}")

    def __call__(self, t):
        frac = min(max(t, 0), self.total) / self.total
        return float(self.lr_min + 0.5 * (self.lr - self.lr_min) * (1.0 + math.cos(math.pi * frac)))


@dataclass(frozen=True)
class Warmup(_Schedule):
    r"""Linear warm-up for ``steps`` units, then ``after`` (a schedule or a constant), shifted by ``steps``:

    .. math::
        \eta_t = \eta^{after}_0 \cdot \tfrac{t + 1}{w} \;(t < w), \qquad \eta_t = \eta^{after}_{t - w} \;(t \ge w).

    The first step already moves (at :math:`\eta/w`), the last warm-up step reaches :math:`\eta^{after}_0`
    (Goyal et al. 2017's gradual warm-up). ``after``'s own unit must equal this one's.
    """

    steps: int
    after: object  # a learning-rate schedule, or a float for a constant after the warm-up
    unit: str = "step"

    def __post_init__(self):
        _check_unit(self.unit)
        if int(self.steps) < 1:
            raise ValueError(f"Warmup needs steps >= 1, got {self.steps}")
        if not callable(self.after):
            object.__setattr__(self, "after", Constant(float(self.after), unit=self.unit))
        if getattr(self.after, "unit", self.unit) != self.unit:
            raise ValueError(f"Warmup counts in {self.unit!r} but its schedule in {self.after.unit!r}")

    def __call__(self, t):
        if t < self.steps:
            return float(self.after(0)) * (t + 1) / self.steps
        return float(self.after(t - self.steps))


def as_lr_schedule(lr):
    """A float becomes ``Constant(lr)``; a schedule or callable passes through."""
    if callable(lr):
        return lr
    lr = float(lr)
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"the learning rate must be a finite number > 0, got {lr!r}")
    return Constant(lr)


def lr_unit(schedule):
    """``"step"`` or ``"epoch"``: what the trainer passes to ``schedule`` (callables without ``unit``: step)."""
    return getattr(schedule, "unit", "step")


# ---- batch size -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConstantBatch(_Schedule):
    """:math:`B_e = B`."""

    size: int

    def __post_init__(self):
        if int(self.size) < 1:
            raise ValueError(f"batch size must be >= 1, got {self.size}")

    def __call__(self, epoch):
        return int(self.size)


@dataclass(frozen=True)
class GeometricBatch(_Schedule):
    r"""Dynamic sampling (Byrd et al. 2012; Friedlander & Schmidt 2012): the batch grows geometrically,

    .. math:: B_e = \min(B_{max}, \lceil B_0\, r^{\lfloor e / k \rfloor} \rceil),

    ``start`` :math:`B_0`, ``factor`` :math:`r \ge 1`, ``every`` :math:`k` epochs, ``max`` :math:`B_{max}`
    (``None``: only the trainer's cap at N).
    """

    start: int
    factor: float = 2.0
    every: int = 1
    max: int | None = None

    def __post_init__(self):
        if int(self.start) < 1 or not self.factor >= 1 or int(self.every) < 1:
            raise ValueError(f"GeometricBatch needs start >= 1, factor >= 1, every >= 1; got {self}")

    def __call__(self, epoch):
        # round() first so that 64 * 1.5**2 = 144.00000000000003 does not become 145
        size = math.ceil(round(self.start * self.factor ** (epoch // self.every), 9))
        return size if self.max is None else min(size, int(self.max))


@dataclass(frozen=True)
class WarmStartBatch(_Schedule):
    """Small batches for the first ``epochs`` epochs, then large ones (Keskar et al. 2017, section 4.1)."""

    small: int
    large: int
    epochs: int

    def __post_init__(self):
        if min(int(self.small), int(self.large)) < 1 or int(self.epochs) < 0:
            raise ValueError(f"WarmStartBatch needs small, large >= 1 and epochs >= 0; got {self}")

    def __call__(self, epoch):
        return int(self.small) if epoch < self.epochs else int(self.large)


def as_batch_schedule(batch_size):
    """An int becomes ``ConstantBatch(batch_size)``; a schedule or callable passes through."""
    return batch_size if callable(batch_size) else ConstantBatch(int(batch_size))


def describe(schedule):
    """A JSON-able description: ``to_dict()`` for the schedules here, the qualified name for other callables."""
    if isinstance(schedule, _Schedule):
        return schedule.to_dict()
    return {"type": "callable", "name": getattr(schedule, "__qualname__", type(schedule).__name__)}
