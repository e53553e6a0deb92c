r"""minisgd: exact curvature of small MLPs, derived by hand, to study how batch size shapes SGD.

Shape letters used in every docstring:

    N  examples            d  input dimension        K  outputs (classes)
    P  parameters          k  directions (columns of V in an HVP)
    B  minibatch size      n_l  width of layer l (n_0 = d, n_L = K)

Public API::

    net = minisgd.MLP([d, n_1, ..., K], activation="tanh", loss="cross_entropy", l2=0.0)
    theta = net.init(seed=0)                        # (P,)
    loss, grad = net.loss_and_grad(theta, X, y)     # float, (P,)
    G = net.per_example_grads(theta, X, y)          # (N, P)
    Hv = net.hvp(theta, X, y, V)                    # (P,) or (P, k)
    H = net.hessian(theta, X, y)                    # (P, P)
"""
from . import (activations, backend, callbacks, checkpoint, errors, landscape, losses, noise, optim, sampling, schedules,
               reparametrize, sharpness, spectrum, stability, temperature)
from .callbacks import GradientNoise, StopTraining, TopEigenvalue, every, gradient_noise, top_eigenvalue
from .checkpoint import CheckpointError, ConfigMismatchError
from .optim import SGD, Adam, Momentum, Nesterov, make_optimizer
from .sampling import Sampler
from .train import (DivergenceError, TrainConfig, TrainResult, batch_sequence, load_run, planned_steps,
                    train)
from .errors import (BackendUnavailableError, HessianTooLargeError, LabelError, NonFiniteError,
                     ShapeError)
from .hessian import hessian_flops, hessian_from_hvps, hessian_memory_bytes
from .mlp import MLP, Layer

from . import scenarios, sweep  # noqa: E402 (last: the scenarios use the names above)

__version__ = "0.1.0"

__all__ = [
    # the network and its curvature
    "MLP", "Layer", "hessian_from_hvps", "hessian_flops", "hessian_memory_bytes",
    # training
    "TrainConfig", "TrainResult", "train", "DivergenceError", "load_run", "planned_steps", "batch_sequence",
    "every", "StopTraining", "top_eigenvalue", "gradient_noise", "TopEigenvalue", "GradientNoise",
    "SGD", "Momentum", "Nesterov", "Adam", "make_optimizer", "Sampler", "CheckpointError", "ConfigMismatchError",
    # errors
    "ShapeError", "NonFiniteError", "LabelError", "HessianTooLargeError", "BackendUnavailableError",
    # modules
    "activations", "losses", "backend", "errors", "noise", "stability", "temperature", "reparametrize", "spectrum",
    "sharpness", "landscape", "optim", "sampling", "schedules", "callbacks", "checkpoint", "sweep", "scenarios",
]
