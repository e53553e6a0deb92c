r"""Bring your own model: a PyTorch ``nn.Sequential`` MLP, or plain per-layer parameters (JAX, Flax, NumPy), as a
minisgd :class:`~minisgd.core.mlp.MLP` and its ``theta``, and back to PyTorch.

minisgd's layer is :math:`z = a W + b` with ``W: (n_in, n_out)``; ``torch.nn.Linear`` computes :math:`a W_t^T + b`
with ``W_t: (n_out, n_in)``, so ``W = W_t.T``; JAX/Flax's ``Dense`` already stores ``kernel: (n_in, n_out)``. The
network must be Linear, activation, Linear, ..., Linear with one activation kind on every hidden layer (what
``MLP`` represents), ending in a Linear layer whose outputs are the logits (cross-entropy) or the predictions (mse).

Supported PyTorch activations: ``Tanh``, ``ReLU``, ``Sigmoid``, ``SiLU``, ``Softplus`` (``beta=1``; above torch's
``threshold=20`` it returns x where minisgd keeps :math:`\log(1 + e^x)`, a difference below 2e-9),
``GELU(approximate="tanh")`` (minisgd's GELU is the tanh form; the exact, erf-based ``GELU()`` differs by up to
5e-4 and is refused). ``Identity``, ``Dropout`` (the analysed network is the one in eval mode) and a leading
``Flatten`` are skipped. ``Linear(bias=False)`` gets a zero bias (the Hessian then has the bias rows too). Anything
else raises :class:`~minisgd.errors.UnsupportedModelError` naming the module.

Losses: ``"cross_entropy"`` is ``nn.CrossEntropyLoss()`` (mean over examples); minisgd's ``"mse"`` is
:math:`\frac1N\sum_n \frac12 \lVert z_n - y_n \rVert^2`, so ``nn.MSELoss()`` (mean over N and K, no 1/2) is
``2 / K`` times it, and its Hessian too. PyTorch is imported only when a function here that needs it runs.
"""
import numpy as np

from ..backend import to_device, to_numpy
from ..errors import ExtraNotInstalledError, UnsupportedModelError
from .activations import NAMES as ACTIVATIONS
from .mlp import MLP

# torch.nn class name -> minisgd activation name (GELU and Softplus are checked for their options)
_TORCH_ACTIVATIONS = {"Tanh": "tanh", "ReLU": "relu", "Sigmoid": "sigmoid", "SiLU": "silu", "Softplus": "softplus",
                      "GELU": "gelu"}
_SKIPPED = ("Identity", "Dropout")
_TORCH_LOSSES = {"CrossEntropyLoss": "cross_entropy", "MSELoss": "mse"}


def _torch():
    try:
        import torch
    except ImportError as exc:
        raise ExtraNotInstalledError("this needs PyTorch, which is not installed: `pip install torch` "
                                     "(or `pip install 'minisgd[bench]'`)") from exc
    return torch


def _activation_of(module, position):
    """The minisgd activation name of a torch activation module, or ``UnsupportedModelError``."""
    kind = type(module).__name__
    if kind == "GELU" and getattr(module, "approximate", "none") != "tanh":
        raise UnsupportedModelError(f"module {position} is nn.GELU(approximate={module.approximate!r}); minisgd's GELU "
                                    "is the tanh approximation: use nn.GELU(approximate='tanh') (the two differ by up "
                                    "to 5e-4), or retrain with it")
    if kind == "Softplus" and float(module.beta) != 1.0:
        raise UnsupportedModelError(f"module {position} is nn.Softplus(beta={module.beta}); minisgd's softplus has "
                                    "beta = 1")
    return _TORCH_ACTIVATIONS[kind]


def _loss_name(loss):
    """A minisgd loss name from a name or a torch loss module (default options only)."""
    if isinstance(loss, str):
        return loss
    kind = type(loss).__name__
    if kind not in _TORCH_LOSSES:
        raise UnsupportedModelError(f"loss {kind} is not supported; use nn.CrossEntropyLoss, nn.MSELoss or the names "
                                    "'cross_entropy' / 'mse'")
    if getattr(loss, "reduction", "mean") != "mean" or getattr(loss, "weight", None) is not None \
            or getattr(loss, "label_smoothing", 0.0):
        raise UnsupportedModelError(f"{kind} with reduction={loss.reduction!r}, a class weight or label smoothing is "
                                    "not minisgd's loss; minisgd's losses are the mean over examples, unweighted")
    return _TORCH_LOSSES[kind]


def from_torch(model, loss="cross_entropy", l2=0.0, dtype="float64", device="cpu"):
    """``(net, theta)`` with ``net.forward(theta, X)`` equal to ``model(X)`` (to the rounding of ``dtype``).

    ``model``: an ``nn.Sequential`` of Linear layers and one supported activation kind (module docstring);
    ``loss``: ``"cross_entropy"``, ``"mse"`` or the torch loss module; ``theta`` in ``dtype`` on ``device``."""
    torch = _torch()
    if not isinstance(model, torch.nn.Sequential):
        raise UnsupportedModelError(f"from_torch takes an nn.Sequential of Linear layers and activations, got "
                                    f"{type(model).__name__}; wrap the layers: nn.Sequential(*layers)")
    kept = [(i, m) for i, m in enumerate(model) if type(m).__name__ not in _SKIPPED
            and not (type(m).__name__ == "Flatten" and i == 0)]
    params, activations, norms = [], [], []
    for i, m in kept:
        kind = type(m).__name__
        if isinstance(m, torch.nn.BatchNorm1d):
            norms.append(_batch_norm_of(m, i, len(params), len(activations), len(norms)))
        elif isinstance(m, torch.nn.Linear):
            if params and len(activations) < len(params):
                activations.append("identity")  # two Linear layers in a row: nothing between them
            W = m.weight.detach().cpu().numpy().T  # torch's (n_out, n_in) -> (n_in, n_out)
            b = np.zeros(W.shape[1]) if m.bias is None else m.bias.detach().cpu().numpy()
            params.append((W, b))
        elif kind in _TORCH_ACTIVATIONS:
            if not params or len(activations) == len(params):
                raise UnsupportedModelError(f"module {i} ({kind}) does not follow a Linear layer; minisgd's MLP is "
                                            "Linear, activation, Linear, ..., Linear")
            activations.append(_activation_of(m, i))
        else:
            raise UnsupportedModelError(f"module {i} is {kind}, which minisgd cannot represent; supported: Linear, "
                                        f"{', '.join(_TORCH_ACTIVATIONS)}, and {', '.join(_SKIPPED)} (skipped)")
    if not params:
        raise UnsupportedModelError("the model has no Linear layer")
    if len(activations) == len(params):
        raise UnsupportedModelError(f"the model ends with an activation ({type(kept[-1][1]).__name__}); minisgd's "
                                    "outputs are the last Linear layer's: drop the final activation (for "
                                    "classification the loss applies the softmax)")
    if norms:
        return _with_batch_norm(model, params, norms, _one_activation(activations), _loss_name(loss), l2, dtype,
                                device)
    return from_params(params, activation=_one_activation(activations), loss=_loss_name(loss), l2=l2, dtype=dtype,
                       device=device)


def _batch_norm_of(m, position, linears, activations, norms):
    """``(gamma, beta, mean, var, eps)`` of an ``nn.BatchNorm1d`` between a hidden Linear and its activation."""
    if not (linears == norms + 1 and activations == linears - 1):
        raise UnsupportedModelError(f"module {position} (BatchNorm1d) does not sit between a Linear layer and its "
                                    "activation; minisgd's BN layer is Linear -> BatchNorm1d -> activation")
    if not m.affine or not m.track_running_stats or m.momentum != 0.1:
        raise UnsupportedModelError(f"module {position} is BatchNorm1d(affine={m.affine}, track_running_stats="
                                    f"{m.track_running_stats}, momentum={m.momentum}); minisgd's BN has a scale and "
                                    "shift, running statistics and momentum 0.1 (torch's defaults)")
    return tuple(t.detach().cpu().numpy().astype(np.float64) for t in (m.weight, m.bias, m.running_mean,
                                                                           m.running_var)) + (float(m.eps),)


def _with_batch_norm(model, params, norms, activation, loss, l2, dtype, device):
    """``(net, theta)`` of a BN model: the training-mode net if ``model.training``, else its eval-mode net at the
    model's running statistics, so that outputs match the mode the model is in."""
    if len(norms) != len(params) - 1 or len({eps for *_, eps in norms}) != 1:
        raise UnsupportedModelError(f"{len(norms)} BatchNorm1d layers (eps {sorted({e for *_, e in norms})}) for "
                                    f"{len(params) - 1} hidden layers; minisgd normalizes every hidden layer, with one "
                                    "eps, or none")
    plain, _ = from_params(params, activation=activation)
    net = MLP(plain.sizes, activation=activation, loss=loss, l2=l2, batch_norm=True, bn_eps=norms[0][-1])
    theta = np.zeros(net.num_params)
    for layer, (W, b) in zip(net.layers, params):
        theta[layer.start:layer.stop] = np.concatenate([W.ravel(), np.zeros(W.shape[1]) if b is None else b])
    for bn, (gamma, beta, *_) in zip(net.bn_layers, norms):
        theta[bn.start:bn.stop] = np.concatenate([gamma, beta])
    theta = to_device(theta.astype(dtype), device)
    if model.training:
        return net, theta
    stats = np.concatenate([v for _, _, mean, var, _ in norms for v in (mean, var)])
    return net.eval_mode(to_device(stats.astype(dtype), device)), theta


def _one_activation(names):
    """The one activation of every hidden layer ("identity" for a linear model), or ``UnsupportedModelError``."""
    kinds = set(names)
    if len(kinds) > 1:
        raise UnsupportedModelError(f"the hidden layers use different activations {names} ('identity': two Linear "
                                    "layers in a row); minisgd's MLP has one activation on every hidden layer")
    return kinds.pop() if kinds else "identity"


def _layer_pairs(params):
    """``[(W, b), ...]`` from a list of pairs or a Flax-style mapping ``{name: {"kernel", "bias"}}`` (in order)."""
    if hasattr(params, "keys"):
        params = params.get("params", params)
        pairs = []
        for name, layer in params.items():
            if not hasattr(layer, "keys") or "kernel" not in layer:
                raise UnsupportedModelError(f"layer {name!r} has no 'kernel'; from_params takes Flax Dense parameters "
                                            "{name: {'kernel': (n_in, n_out), 'bias': (n_out,)}} or a list of (W, b)")
            pairs.append((layer["kernel"], layer.get("bias")))
        return pairs
    return [tuple(pair) for pair in params]


def from_params(params, activation="tanh", loss="cross_entropy", l2=0.0, dtype="float64", device="cpu"):
    """``(net, theta)`` from per-layer parameters: a list of ``(W: (n_in, n_out), b: (n_out,))`` of any array library
    (NumPy, JAX: what ``np.asarray`` reads), or Flax's ``{"params": {"Dense_0": {"kernel", "bias"}, ...}}`` in
    definition order; ``b`` may be None (zero)."""
    if activation not in ACTIVATIONS:
        raise UnsupportedModelError(f"unknown activation {activation!r}; minisgd has {', '.join(ACTIVATIONS)}")
    pairs = [(np.asarray(W, dtype=np.float64), None if b is None else np.asarray(b, dtype=np.float64))
             for W, b in _layer_pairs(params)]
    if not pairs:
        raise UnsupportedModelError("no layers given")
    sizes = [pairs[0][0].shape[0]]
    for l, (W, b) in enumerate(pairs):
        if W.ndim != 2 or W.shape[0] != sizes[-1] or (b is not None and b.shape != (W.shape[1],)):
            raise UnsupportedModelError(
                f"layer {l}: W has shape {W.shape} and b {None if b is None else b.shape}; expected W: ({sizes[-1]}, "
                f"n_out) (inputs x outputs; a torch weight is the transpose) and b: (n_out,)")
        sizes.append(W.shape[1])
    net = MLP(sizes, activation=activation, loss=loss, l2=l2)
    theta = net.flatten([(W, np.zeros(W.shape[1]) if b is None else b) for W, b in pairs])
    return net, to_device(theta.astype(dtype), device)


def to_torch(net, theta, stats=None):
    """An ``nn.Sequential`` with ``model(X) == net.forward(theta, X)``, in ``theta``'s dtype, on the CPU. A BN net
    gets ``nn.BatchNorm1d`` layers (Linear -> BatchNorm1d -> activation): in training mode, or with ``stats`` as
    running statistics and in eval mode (``model.eval()``)."""
    torch = _torch()
    kinds = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "silu": torch.nn.SiLU,
             "softplus": torch.nn.Softplus, "gelu": lambda: torch.nn.GELU(approximate="tanh")}
    dtype = torch.float64 if str(theta.dtype) == "float64" else torch.float32
    def tensor(a):
        return torch.from_numpy(np.ascontiguousarray(to_numpy(a)))

    modules = []
    norms = [] if not net.batch_norm else [
        (theta[bn.start:bn.start + bn.width], theta[bn.start + bn.width:bn.stop]) for bn in net.bn_layers]
    running = [] if stats is None else [(stats[s:s + n], stats[s + n:s + 2 * n]) for s, n in
                                        _statistics_offsets(net)]
    for l, (W, b) in enumerate(net.unflatten(theta)):
        linear = torch.nn.Linear(W.shape[0], W.shape[1], dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(tensor(W.T))
            linear.bias.copy_(tensor(b))
        modules.append(linear)
        if l < len(norms):
            bn = torch.nn.BatchNorm1d(W.shape[1], eps=net.bn_eps, momentum=0.1, dtype=dtype)
            with torch.no_grad():
                bn.weight.copy_(tensor(norms[l][0]))
                bn.bias.copy_(tensor(norms[l][1]))
                if running:
                    bn.running_mean.copy_(tensor(running[l][0]))
                    bn.running_var.copy_(tensor(running[l][1]))
            modules.append(bn)
        if l < net.num_layers - 1 and net.activation.name != "identity":
            modules.append(kinds[net.activation.name]())
    model = torch.nn.Sequential(*modules)
    return model.eval() if running else model


def _statistics_offsets(net):
    """``[(start, width), ...]`` of each BN layer's statistics in the flat ``stats`` (means, then variances)."""
    out, start = [], 0
    for bn in net.bn_layers:
        out.append((start, bn.width))
        start += 2 * bn.width
    return out
