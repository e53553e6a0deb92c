r"""minisgd: exact curvature of small MLPs, derived by hand, to study how batch size shapes SGD.

Shape letters used in every docstring:

    N  examples            d  input dimension        K  outputs (classes)
    P  parameters          k  directions (columns of V in an HVP)
    B  minibatch size      n_l  width of layer l (n_0 = d, n_L = K)

Public API::

    net = minisgd.MLP([d, n_1, ..., K], activation="tanh", loss="cross_entropy", l2=0.0)
    bn = minisgd.MLP([d, n_1, ..., K], activation="relu", batch_norm=True)   # training mode; bn.eval_mode(stats)
    theta = net.init(seed=0)                        # (P,)
    loss, grad = net.loss_and_grad(theta, X, y)     # float, (P,)
    G = net.per_example_grads(theta, X, y)          # (N, P)
    Hv = net.hvp(theta, X, y, V)                    # (P,) or (P, k)
    H = net.hessian(theta, X, y)                    # (P, P)
    result = minisgd.training.train(net, theta, X, y, minisgd.TrainConfig(optimizer="adam", lr=1e-3, epochs=5))

The parts, each a subpackage, imports pointing down only (``tests/test_architecture.py`` checks it):

    minisgd.core        the hand-derived math: activations, losses, passes, backprop, hvp, hessian, mlp
    minisgd.training    optimizers, sampling, schedules, train, checkpoints, callbacks, noise injection
    minisgd.curvature   spectra (exact, Lanczos, SLQ), traces, sharpness measures, landscapes
    minisgd.theory      closed forms to check against: gradient noise, linear stability, temperature, rescaling
    minisgd.data        MNIST and synthetic problems, preprocessing
    minisgd.experiments, minisgd.sweep, minisgd.cli, minisgd.plotting   the experiments and the interface

``import minisgd`` loads the core and training only; the other subpackages load on first use (``minisgd.curvature``
works as an attribute), and nothing here imports the interface, the experiments, matplotlib, tqdm or Dask.
"""
import importlib

from ._version import __version__
from .core.hessian import hessian_flops, hessian_from_hvps, hessian_memory_bytes
from .core.mlp import MLP, Layer
from .errors import (BackendUnavailableError, BatchNormModeError, CheckpointError, ConfigError, ConfigMismatchError, ConvergenceError,
                     DataError, DivergenceError, HessianTooLargeError, LabelError, MinisgdError, NonFiniteError,
                     ShapeError)
from .training.callbacks import (GradientNoise, StopTraining, TopEigenvalue, doubling, every, gradient_noise,
                                 top_eigenvalue)
from .training.optim import SGD, Adam, Momentum, Nesterov, make_optimizer
from .training.sampling import Sampler
from .training.train import TrainConfig, TrainResult, batch_sequence, load_run, planned_steps, train

_SUBPACKAGES = ("backend", "core", "training", "curvature", "theory", "data", "errors", "testing")


def __getattr__(name):
    """``minisgd.curvature`` and the other library subpackages, imported on first use (PEP 562)."""
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'minisgd' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBPACKAGES))


__all__ = [
    # the network and its curvature
    "MLP", "Layer", "hessian_from_hvps", "hessian_flops", "hessian_memory_bytes",
    # training
    "TrainConfig", "TrainResult", "train", "load_run", "planned_steps", "batch_sequence",
    "every", "doubling", "StopTraining", "top_eigenvalue", "gradient_noise", "TopEigenvalue", "GradientNoise",
    "SGD", "Momentum", "Nesterov", "Adam", "make_optimizer", "Sampler",
    # errors
    "MinisgdError", "BatchNormModeError", "ShapeError", "NonFiniteError", "LabelError", "ConfigError", "ConfigMismatchError", "DataError",
    "HessianTooLargeError", "BackendUnavailableError", "CheckpointError", "DivergenceError", "ConvergenceError",
    "__version__",
]
