"""Models brought in from PyTorch (and as parameter lists): identical outputs, and the loss, gradient and exact Hessian
against torch.func's; clear errors for what minisgd cannot represent. PyTorch is optional: these skip without it."""
import numpy as np
import pytest

from minisgd import MLP
from minisgd.errors import UnsupportedModelError
from minisgd.testing import assert_allclose_relative
from support import torch_order

try:
    import torch
    nn = torch.nn
except ImportError:  # PyTorch is optional: only the from_params tests run without it
    torch = nn = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (optional: pip install torch)")


def torch_derivatives(model, X, y, loss):
    """Loss, gradient ``(P,)`` and Hessian ``(P, P)`` in torch's parameter order, by torch.func."""
    from torch.func import functional_call, grad, hessian
    named = [(name, p.shape) for name, p in model.named_parameters()]
    sizes = [int(np.prod(shape)) for _, shape in named]
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

    def objective(flat):
        params = {name: piece.reshape(shape) for (name, shape), piece in zip(named, torch.split(flat, sizes))}
        out = functional_call(model, params, (Xt,))
        if loss == "cross_entropy":
            return nn.functional.cross_entropy(out, yt)
        return 0.5 * ((out - yt) ** 2).sum(dim=1).mean()

    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return (float(objective(flat)), grad(objective)(flat).numpy(), hessian(objective)(flat).numpy())


MODELS = {
    "tanh-ce": (lambda: nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.Tanh(), nn.Linear(6, 3)),
                "cross_entropy"),
    "relu-ce": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(5, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3)),
                "cross_entropy"),
    "gelu-mse": (lambda: nn.Sequential(nn.Linear(5, 6), nn.GELU(approximate="tanh"), nn.Linear(6, 2)), "mse"),
    "silu-mse": (lambda: nn.Sequential(nn.Linear(5, 4), nn.SiLU(), nn.Linear(4, 4), nn.SiLU(), nn.Linear(4, 2)), "mse"),
    "softplus-ce": (lambda: nn.Sequential(nn.Linear(5, 6), nn.Softplus(), nn.Linear(6, 3)), "cross_entropy"),
    "sigmoid-ce": (lambda: nn.Sequential(nn.Linear(5, 6), nn.Sigmoid(), nn.Linear(6, 3)), "cross_entropy"),
    "linear-mse": (lambda: nn.Sequential(nn.Linear(5, 3)), "mse"),
}


@pytest.fixture(params=list(MODELS))
def imported(request):
    torch.manual_seed(0)
    build, loss = MODELS[request.param]
    model = build().double().eval()
    rng = np.random.default_rng(1)
    X = rng.standard_normal((12, 5))
    K = model(torch.from_numpy(X)).shape[1]
    y = rng.integers(0, K, 12) if loss == "cross_entropy" else rng.standard_normal((12, K))
    net, theta = MLP.from_torch(model, loss=loss)
    return model, net, theta, X, y, loss


@needs_torch
def test_identical_outputs_and_round_trip(imported):
    model, net, theta, X, y, loss = imported
    out = model(torch.from_numpy(X)).detach().numpy()
    # the same float64 GEMMs, in another library: a few ulps
    assert_allclose_relative(net.forward(theta, X), out, rtol=1e-14, relative_to="max", what="outputs")
    back = net.to_torch(theta)
    assert_allclose_relative(back(torch.from_numpy(X)).detach().numpy(), out, rtol=1e-14, relative_to="max",
                             what="to_torch outputs")
    np.testing.assert_array_equal(MLP.from_torch(back, loss=loss)[1], theta)


@needs_torch
def test_loss_gradient_and_hessian_against_torch_func(imported):
    model, net, theta, X, y, loss = imported
    value, g, H = torch_derivatives(model, X, y, loss)
    perm = torch_order(net)
    assert net.loss(theta, X, y) == pytest.approx(value, rel=1e-13)
    # hand-derived against autodiff, float64: both are rounding apart (~1e-15); 1e-10 of the largest entry
    assert_allclose_relative(net.loss_and_grad(theta, X, y)[1], g[perm], rtol=1e-10, relative_to="max",
                             what="gradient vs torch.func.grad")
    assert_allclose_relative(net.hessian(theta, X, y), H[np.ix_(perm, perm)], rtol=1e-10, relative_to="max",
                             what="Hessian vs torch.func.hessian")


@needs_torch
def test_float32_models_and_missing_biases():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.ReLU(), nn.Linear(6, 3)).eval()  # float32
    net, theta = MLP.from_torch(model, loss=nn.CrossEntropyLoss())
    layer = net.layers[0]
    np.testing.assert_array_equal(theta[layer.start + 4 * 6:layer.stop], 0.0)  # the zero bias
    X = np.random.default_rng(3).standard_normal((8, 4))
    out = model(torch.from_numpy(X).float()).detach().numpy()
    # minisgd runs the float32 weights in float64: the difference is torch's float32 rounding, ~1e-7 relative
    assert_allclose_relative(net.forward(theta, X), out, rtol=1e-5, relative_to="max", what="float32 model")
    assert net.loss_fn.name == "cross_entropy" and MLP.from_torch(model, loss=nn.MSELoss())[0].loss_fn.name == "mse"


@pytest.mark.parametrize("model, match", [
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.Conv1d(1, 1, 1)), "module 1 is Conv1d"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2)), "approximate='tanh'"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.Softplus(beta=2.0), nn.Linear(4, 2)), "beta = 1"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh()), "ends with an activation"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)),
     "different activations"),
    (lambda: nn.Sequential(nn.Tanh(), nn.Linear(3, 2)), "does not follow a Linear"),
    (lambda: nn.Linear(3, 2), "takes an nn.Sequential"),
    (lambda: nn.Sequential(nn.Dropout()), "no Linear layer"),
])
@needs_torch
def test_what_cannot_be_represented_is_named(model, match):
    with pytest.raises(UnsupportedModelError, match=match):
        MLP.from_torch(model())


@needs_torch
def test_unsupported_losses_are_named():
    model = nn.Sequential(nn.Linear(3, 2))
    with pytest.raises(UnsupportedModelError, match="label smoothing"):
        MLP.from_torch(model, loss=nn.CrossEntropyLoss(label_smoothing=0.1))
    with pytest.raises(UnsupportedModelError, match="NLLLoss is not supported"):
        MLP.from_torch(model, loss=nn.NLLLoss())


def test_from_params_lists_and_flax_dicts():
    rng = np.random.default_rng(4)
    W0, b0, W1, b1 = rng.standard_normal((4, 6)), rng.standard_normal(6), rng.standard_normal((6, 3)), None
    X = rng.standard_normal((5, 4))
    expected = np.tanh(X @ W0 + b0) @ W1  # the second layer's bias is None: zero
    net, theta = MLP.from_params([(W0, b0), (W1, b1)], activation="tanh")
    assert net.sizes == (4, 6, 3)
    np.testing.assert_allclose(net.forward(theta, X), expected, rtol=1e-14)
    flax = {"params": {"Dense_0": {"kernel": W0, "bias": b0}, "Dense_1": {"kernel": W1, "bias": np.zeros(3)}}}
    np.testing.assert_array_equal(MLP.from_params(flax, activation="tanh")[1], theta)
    with pytest.raises(UnsupportedModelError, match="expected W"):
        MLP.from_params([(W0, b0), (W1.T, None)])
    with pytest.raises(UnsupportedModelError, match="no 'kernel'"):
        MLP.from_params({"Dense_0": {"weight": W0}})
    with pytest.raises(UnsupportedModelError, match="unknown activation"):
        MLP.from_params([(W0, b0)], activation="elu")


def test_from_params_reads_jax_arrays():
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(5)
    W, b = rng.standard_normal((3, 2)), rng.standard_normal(2)
    net, theta = MLP.from_params([(jnp.asarray(W), jnp.asarray(b))], activation="identity", loss="mse")
    np.testing.assert_allclose(net.forward(theta, np.eye(3)), W + b, rtol=1e-6)  # JAX defaults to float32
