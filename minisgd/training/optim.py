r"""Optimizers: pure update rules on the flat parameter vector, with their state passed explicitly.

One convention for every optimizer in this file (as jax's stax states its own once)::

    opt = Adam(beta1=0.9, beta2=0.999, eps=1e-8)
    state = opt.init(theta)                              # dict: {"step": 0, name: (P,) array, ...}
    theta, state = opt.update(theta, grad, state, lr)    # new arrays; theta, grad and state are not changed

``state`` is a plain dict of ``(P,)`` arrays plus the integer ``"step"`` (updates done so far), so a checkpoint
stores it with ``numpy.savez`` and a resumed run continues bit for bit. The learning rate is an argument of
``update`` (a schedule gives it step by step), not part of the optimizer. Every rule is written against the array
API (the namespace comes from ``theta``), so the same code runs on NumPy, CuPy and array_api_strict arrays.

Weight decay, coefficient :math:`\lambda` (``weight_decay``), in one of two forms (``decoupled``):

* ``decoupled=False`` (L2): the gradient becomes :math:`g + \lambda\theta` before the rule below, exactly the
  gradient of :math:`f + \frac{\lambda}{2}\lVert\theta\rVert^2`; momentum and Adam then also act on it.
* ``decoupled=True`` (Loshchilov & Hutter 2019, "AdamW"): the rule below uses the plain :math:`g`, and the
  parameters shrink separately, :math:`\theta \leftarrow \theta - \eta\lambda\theta_t - \eta\,u_t` with
  :math:`u_t` the rule's step direction. For plain SGD both forms give the same iterates.

This is not the ``l2`` of :class:`minisgd.MLP`, which is part of the loss (and so of its Hessian); optimizer weight
decay changes only the update.
"""
from dataclasses import asdict, dataclass

from ..backend import namespace

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")


def _check_decay(weight_decay):
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")


def _zeros(theta):
    return namespace(theta).zeros_like(theta)


def _l2(theta, grad, weight_decay, decoupled):
    """The gradient the rule sees: ``g + wd * theta`` for L2 weight decay, ``g`` otherwise."""
    return grad + weight_decay * theta if weight_decay and not decoupled else grad


def _step(theta, direction, lr, weight_decay, decoupled):
    """``theta - lr * direction``, minus ``lr * wd * theta`` for decoupled weight decay, as a new array."""
    lr = float(lr)  # a NumPy float64 scalar would promote float32 parameters to float64
    if weight_decay and decoupled:
        direction = direction + weight_decay * theta
    if direction.dtype != theta.dtype:  # mixed precision: let the usual promotion decide the result's dtype
        return theta - lr * direction
    new = direction * (-lr)  # one allocation, then in place: as fast as ``theta -= lr * direction``, and the same
    new += theta  # bits, since a - b == (-b) + a exactly in IEEE arithmetic
    return new


class _Rule:
    """Shared plumbing: a dict of the hyperparameters (for configs and checkpoints) and a readable repr."""

    name = ""

    def to_dict(self):
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class SGD(_Rule):
    r"""Plain (stochastic) gradient descent, :math:`\theta_{t+1} = \theta_t - \eta_t g_t`. State: the step only."""

    weight_decay: float = 0.0  # lambda (see the module docstring)
    decoupled: bool = False  # True: decoupled weight decay; False: L2 added to the gradient

    name = "sgd"

    def __post_init__(self):
        _check_decay(self.weight_decay)

    def init(self, theta):
        return {"step": 0}

    def update(self, theta, grad, state, lr):
        g = _l2(theta, grad, self.weight_decay, self.decoupled)
        return _step(theta, g, lr, self.weight_decay, self.decoupled), {"step": state["step"] + 1}


@dataclass(frozen=True)
class Momentum(_Rule):
    r"""Heavy-ball momentum (Polyak 1964) in the form PyTorch uses, velocity without the ``1 - mu`` factor:

    .. math::
        v_{t+1} = \mu v_t + g_t, \qquad \theta_{t+1} = \theta_t - \eta_t v_{t+1}, \qquad v_0 = 0.

    With a constant step this is :math:`\theta_{t+1} = \theta_t - \eta g_t + \mu(\theta_t - \theta_{t-1})`.
    State: ``{"step", "velocity"}``.
    """

    mu: float = 0.9  # momentum coefficient, 0 <= mu < 1
    weight_decay: float = 0.0
    decoupled: bool = False

    name = "momentum"

    def __post_init__(self):
        if not 0 <= self.mu < 1:
            raise ValueError(f"momentum mu must lie in [0, 1), got {self.mu!r}")
        _check_decay(self.weight_decay)

    def init(self, theta):
        return {"step": 0, "velocity": _zeros(theta)}

    def update(self, theta, grad, state, lr):
        g = _l2(theta, grad, self.weight_decay, self.decoupled)
        v = self.mu * state["velocity"] + g
        return _step(theta, v, lr, self.weight_decay, self.decoupled), {"step": state["step"] + 1, "velocity": v}


@dataclass(frozen=True)
class Nesterov(Momentum):
    r"""Nesterov momentum in the PyTorch form (Sutskever et al. 2013, rewritten at the look-ahead point):

    .. math::
        v_{t+1} = \mu v_t + g_t, \qquad \theta_{t+1} = \theta_t - \eta_t (g_t + \mu v_{t+1}), \qquad v_0 = 0,

    where :math:`g_t` is the gradient at :math:`\theta_t` (no second gradient evaluation).
    State: ``{"step", "velocity"}``; hyperparameters and checks as :class:`Momentum`.
    """

    name = "nesterov"

    def update(self, theta, grad, state, lr):
        g = _l2(theta, grad, self.weight_decay, self.decoupled)
        v = self.mu * state["velocity"] + g
        theta = _step(theta, g + self.mu * v, lr, self.weight_decay, self.decoupled)
        return theta, {"step": state["step"] + 1, "velocity": v}


@dataclass(frozen=True)
class Adam(_Rule):
    r"""Adam (Kingma & Ba 2015, Algorithm 1) with bias correction; :math:`\epsilon` outside the square root:

    .. math::
        m_{t+1} = \beta_1 m_t + (1-\beta_1) g_t, \qquad
        v_{t+1} = \beta_2 v_t + (1-\beta_2) g_t^2, \\
        \hat m = \frac{m_{t+1}}{1-\beta_1^{t+1}}, \qquad \hat v = \frac{v_{t+1}}{1-\beta_2^{t+1}}, \qquad
        \theta_{t+1} = \theta_t - \eta_t \frac{\hat m}{\sqrt{\hat v} + \epsilon},

    with :math:`m_0 = v_0 = 0` and the step count :math:`t` starting at 0 (PyTorch's ``Adam``; with
    ``decoupled=True`` and ``weight_decay > 0``, PyTorch's ``AdamW``). State: ``{"step", "m", "v"}``.
    """

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    decoupled: bool = False

    name = "adam"

    def __post_init__(self):
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"Adam needs 0 <= beta1, beta2 < 1, got {self.beta1!r}, {self.beta2!r}")
        if not self.eps > 0:
            raise ValueError(f"Adam's eps must be > 0, got {self.eps!r}")
        _check_decay(self.weight_decay)

    def init(self, theta):
        return {"step": 0, "m": _zeros(theta), "v": _zeros(theta)}

    def update(self, theta, grad, state, lr):
        xp = namespace(theta)
        g = _l2(theta, grad, self.weight_decay, self.decoupled)
        t = state["step"] + 1
        m = self.beta1 * state["m"] + (1 - self.beta1) * g
        v = self.beta2 * state["v"] + (1 - self.beta2) * (g * g)
        m_hat = m / (1 - self.beta1 ** t)
        v_hat = v / (1 - self.beta2 ** t)
        theta = _step(theta, m_hat / (xp.sqrt(v_hat) + self.eps), lr, self.weight_decay, self.decoupled)
        return theta, {"step": t, "m": m, "v": v}


_CLASSES = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adam": Adam}


def make_optimizer(name, **hyper):
    """The optimizer called ``name`` (one of ``OPTIMIZERS``) with hyperparameters ``hyper``.

    Hyperparameters the rule does not have are an error, e.g. ``make_optimizer("sgd", mu=0.9)``.
    An optimizer object passes through unchanged (then ``hyper`` must be empty).
    """
    if isinstance(name, _Rule):
        if hyper:
            raise ValueError(f"hyperparameters {sorted(hyper)} given beside an optimizer object {name!r}; "
                             "set them on the object")
        return name
    try:
        cls = _CLASSES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}") from None
    try:
        return cls(**hyper)
    except TypeError:
        fields = sorted(cls.__dataclass_fields__)
        raise ValueError(f"optimizer {name!r} takes {', '.join(fields)}; got {sorted(hyper)}") from None



def proximal_step(grad, theta_t, rho, rule, state, lr, steps, grad_t=None):
    r"""Conservative training (Li et al. 2014, *Efficient mini-batch training for stochastic optimization*; one of
    Keskar et al. 2017's remedies): the next iterate approximately minimizes the batch loss plus a proximal term,

    .. math::
        \theta_{t+1} \approx \arg\min_\theta\; F(\theta) = f_{\mathcal B}(\theta)
        + \frac{\rho}{2}\lVert\theta - \theta_t\rVert^2,

    found by ``steps`` updates of ``rule`` (any optimizer here, its ``state`` carried through and returned) on
    :math:`F`, whose gradient is :math:`\nabla f_{\mathcal B}(\theta) + \rho(\theta - \theta_t)`. For a quadratic
    :math:`f_{\mathcal B}(\theta) = \frac12\theta^T H\theta - b^T\theta` the minimizer is
    :math:`(H + \rho I)^{-1}(\rho\,\theta_t + b)`, and with plain SGD at step :math:`\eta` the error after
    :math:`k` steps is :math:`(I - \eta(H + \rho I))^k` times the initial one (what the tests check).

    ``grad``: :math:`\theta \mapsto \nabla f_{\mathcal B}(\theta)`, ``(P,) -> (P,)``; ``grad_t``: its value at
    ``theta_t`` when already known (saves one evaluation). ``rho = 0`` and ``steps = 1`` is one ordinary update.
    Returns ``(theta_{t+1}, state)``.
    """
    if not rho >= 0 or int(steps) < 1:
        raise ValueError(f"the proximal step needs rho >= 0 and steps >= 1, got rho={rho!r}, steps={steps!r}")
    theta = theta_t
    for k in range(int(steps)):
        g = grad_t if k == 0 and grad_t is not None else grad(theta)
        if k > 0 and rho:
            g = g + rho * (theta - theta_t)  # zero at the first inner step, where theta = theta_t
        theta, state = rule.update(theta, g, state, lr)
    return theta, state
