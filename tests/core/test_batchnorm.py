"""Batch normalization: training mode (batch statistics) and eval mode (the fold), every derivative against central
finite differences in float64, the forward passes against a direct computation of the normalization, the eval
Hessian against the HVP-assembled one, Gauss-Newton against the output Jacobian. Tolerances: the FD error is about
1e-10 for these O(1) quantities (minisgd.testing), so 1e-6 relative to the largest entry leaves four decades."""
import numpy as np
import pytest

import minisgd as ms
from minisgd.core import batchnorm, losses
from minisgd.errors import BatchNormModeError, ShapeError
from minisgd.testing import assert_allclose_relative, finite_difference_jacobian

RTOL = 1e-6
NETS = [([4, 3, 2], "tanh", "cross_entropy", 0.0), ([4, 3, 3, 2], "softplus", "cross_entropy", 0.1),
        ([3, 4, 3, 4, 2], "gelu", "mse", 0.05), ([5, 4, 3], "sigmoid", "mse", 0.0)]
IDS = ["1hidden-tanh-ce", "2hidden-softplus-ce-l2", "3hidden-gelu-mse-l2", "1hidden-sigmoid-mse"]


class Problem:
    def __init__(self, sizes, activation, loss, l2, N=7, seed=0):
        rng = np.random.default_rng(seed)
        self.net = ms.MLP(sizes, activation=activation, loss=loss, l2=l2, batch_norm=True)
        theta = self.net.init(seed=seed)
        for bn in self.net.bn_layers:  # gamma away from 1 and beta away from 0, so every term of the fold counts
            theta[bn.start:bn.stop] += 0.3 * rng.standard_normal(2 * bn.width)
        theta[self.net.layers[0].stop - sizes[1]:self.net.layers[0].stop] = 0.2 * rng.standard_normal(sizes[1])
        self.theta = theta
        self.X = rng.standard_normal((N, sizes[0]))
        K = sizes[-1]
        self.y = rng.integers(0, K, N) if loss == "cross_entropy" else rng.standard_normal((N, K))
        stats = self.net.initial_statistics()
        for mu, var in batchnorm.split_statistics(self.net, stats):
            mu[:] = 0.5 * rng.standard_normal(mu.shape[0])
            var[:] = rng.uniform(0.3, 2.0, var.shape[0])
        self.stats = stats
        self.eval = self.net.eval_mode(stats)


@pytest.fixture(params=NETS, ids=IDS)
def p(request):
    return Problem(*request.param)


def direct_forward(net, theta, X, stats=None):
    """The BN net written out layer by layer from its definition (no fold): batch statistics when ``stats`` is
    None, else the given running ones."""
    params, norm = net.unflatten(theta), batchnorm.normalization_params(net, theta)
    running = None if stats is None else batchnorm.split_statistics(net, stats)
    a = X
    for l, (W, b) in enumerate(params):
        z = a @ W + b
        if l == len(params) - 1:
            return z
        mu, var = (z.mean(0), z.var(0)) if running is None else running[l]
        u = norm[l][0] * (z - mu) / np.sqrt(var + net.bn_eps) + norm[l][1]
        a = net.activation.f(u)


def fd(f, x):
    return finite_difference_jacobian(f, x)


# ---- layout and API -----------------------------------------------------------------------------------------------

def test_layout_gamma_beta_after_each_hidden_layer_and_init():
    net = ms.MLP([6, 5, 4, 3], activation="relu", batch_norm=True)
    assert net.num_params == (7 * 5 + 5 * 2) + (6 * 4 + 4 * 2) + 5 * 3
    assert [bn.start for bn in net.bn_layers] == [net.layers[0].stop, net.layers[1].stop]
    assert net.layers[1].start == net.bn_layers[0].stop and net.num_statistics == 2 * (5 + 4)
    theta = net.init(seed=3)
    for gamma, beta in batchnorm.normalization_params(net, theta):
        assert np.all(gamma == 1.0) and np.all(beta == 0.0)
    assert "batch_norm=True" in repr(net) and "eval mode" in repr(net.eval_mode(net.initial_statistics()))


def test_training_mode_refuses_what_couples_the_examples(p):
    for method in ("per_example_grads", "per_example_grad_norms", "hessian", "gauss_newton", "residual",
                   "hessian_diagonal", "gauss_newton_diagonal"):
        with pytest.raises(BatchNormModeError, match="eval_mode"):
            getattr(p.net, method)(p.theta, p.X, p.y)
    with pytest.raises(BatchNormModeError):
        p.net.hvp(p.theta, p.X, p.y, p.theta)
    with pytest.raises(ValueError):  # the error is a ValueError too
        p.net.output_jacobian(p.theta, p.X)


def test_bad_batches_and_statistics_are_named():
    p = Problem([4, 3, 2], "tanh", "cross_entropy", 0.0)
    with pytest.raises(ShapeError, match="at least 2 examples"):
        p.net.loss(p.theta, p.X[:1], p.y[:1])
    with pytest.raises(ShapeError, match="running statistics"):
        p.net.eval_mode(p.stats[:-1]).loss(p.theta, p.X, p.y)
    bad = p.stats.copy()
    bad[3] = -1.0  # a variance
    with pytest.raises(ValueError, match="variances"):
        p.net.eval_mode(bad).loss(p.theta, p.X, p.y)
    with pytest.raises(ValueError, match="no batch normalization"):
        ms.MLP([4, 3, 2]).eval_mode(p.stats)
    with pytest.raises(ValueError, match="bn_eps"):
        ms.MLP([4, 3, 2], batch_norm=True, bn_eps=0.0)
    # one example is fine in eval mode
    assert p.eval.forward(p.theta, p.X[:1]).shape == (1, 2)


# ---- training mode ------------------------------------------------------------------------------------------------

def test_training_forward_normalizes_with_the_batch_statistics(p):
    assert_allclose_relative(p.net.forward(p.theta, p.X), direct_forward(p.net, p.theta, p.X), rtol=1e-13,
                             relative_to="max")


def test_training_gradient_matches_finite_differences(p):
    _, grad = p.net.loss_and_grad(p.theta, p.X, p.y)
    assert_allclose_relative(grad, fd(lambda t: p.net.loss(t, p.X, p.y), p.theta), rtol=RTOL, relative_to="max")


def test_training_bias_gradient_of_a_normalized_layer_is_zero(p):
    _, grad = p.net.loss_and_grad(p.theta, p.X, p.y)  # the mean subtraction removes b exactly
    for layer in p.net.layers[:-1]:
        b = grad[layer.stop - layer.fan_out:layer.stop] - p.net.l2 * p.theta[layer.stop - layer.fan_out:layer.stop]
        assert np.max(np.abs(b)) < 1e-14 * max(1.0, np.max(np.abs(grad)))


def test_training_weighted_gradient_matches_finite_differences(p):
    w = np.random.default_rng(5).standard_normal(p.X.shape[0])

    def weighted(t):
        return w @ p.net.per_example_losses(t, p.X, p.y) + 0.5 * p.net.l2 * w.sum() * t @ t
    assert_allclose_relative(p.net.weighted_gradient(p.theta, p.X, p.y, w), fd(weighted, p.theta), rtol=RTOL,
                             relative_to="max")


def test_running_statistics_follow_torch_rule(p):
    loss, grad, batch = batchnorm.train_loss_and_grad(p.net, p.theta, p.X, p.y)
    z = p.X @ p.net.unflatten(p.theta)[0][0] + p.net.unflatten(p.theta)[0][1]
    mu, var = batchnorm.split_statistics(p.net, batch)[0]
    assert_allclose_relative(mu, z.mean(0), rtol=1e-13, relative_to="max")
    assert_allclose_relative(var, z.var(0), rtol=1e-13, relative_to="max")
    N = p.X.shape[0]
    new = batchnorm.update_running_statistics(p.net, p.stats, batch, N)
    run_mu, run_var = batchnorm.split_statistics(p.net, new)[0]
    old_mu, old_var = batchnorm.split_statistics(p.net, p.stats)[0]
    assert_allclose_relative(run_mu, 0.9 * old_mu + 0.1 * z.mean(0), rtol=1e-13)
    assert_allclose_relative(run_var, 0.9 * old_var + 0.1 * z.var(0, ddof=1), rtol=1e-13)


# ---- eval mode ------------------------------------------------------------------------------------------------------

def test_eval_forward_is_the_normalization_with_fixed_statistics(p):
    assert_allclose_relative(p.eval.forward(p.theta, p.X), direct_forward(p.net, p.theta, p.X, p.stats),
                             rtol=1e-13, relative_to="max")


def test_fold_jacobian_and_its_transpose(p):
    T = fd(lambda t: batchnorm.fold(p.net, t, p.stats), p.theta)  # (P', P)
    V = np.random.default_rng(1).standard_normal((3, p.net.num_params))
    U = np.random.default_rng(2).standard_normal((3, p.net.plain.num_params))
    assert_allclose_relative(batchnorm.fold_jvp(p.net, p.theta, p.stats, V), V @ T.T, rtol=RTOL, relative_to="max")
    assert_allclose_relative(batchnorm.fold_vjp(p.net, p.theta, p.stats, U), U @ T, rtol=RTOL, relative_to="max")


def test_eval_gradient_matches_finite_differences(p):
    loss, grad = p.eval.loss_and_grad(p.theta, p.X, p.y)
    assert loss == pytest.approx(p.eval.loss(p.theta, p.X, p.y), rel=1e-14)
    assert_allclose_relative(grad, fd(lambda t: p.eval.loss(t, p.X, p.y), p.theta), rtol=RTOL, relative_to="max")


def test_eval_per_example_gradients_norms_and_weighted_sum(p):
    G = p.eval.per_example_grads(p.theta, p.X, p.y)
    J = fd(lambda t: p.eval.per_example_losses(t, p.X, p.y), p.theta) + p.net.l2 * p.theta[None, :]
    assert_allclose_relative(G, J, rtol=RTOL, relative_to="max")
    assert_allclose_relative(p.eval.per_example_grad_norms(p.theta, p.X, p.y), np.linalg.norm(J, axis=1), rtol=RTOL)
    w = np.random.default_rng(3).standard_normal(p.X.shape[0])
    assert_allclose_relative(p.eval.weighted_gradient(p.theta, p.X, p.y, w), w @ J, rtol=RTOL, relative_to="max")


def test_eval_output_jacobian_matches_finite_differences(p):
    J = p.eval.output_jacobian(p.theta, p.X)
    J_fd = fd(lambda t: p.eval.forward(t, p.X), p.theta)  # (N, K, P)
    assert_allclose_relative(J, J_fd, rtol=RTOL, relative_to="max")


def test_eval_hessian_matches_finite_differences_and_hvp_assembly(p):
    H = p.eval.hessian(p.theta, p.X, p.y)
    H_fd = fd(lambda t: p.eval.loss_and_grad(t, p.X, p.y)[1], p.theta)
    assert_allclose_relative(H, H_fd, rtol=RTOL, relative_to="max")
    assert_allclose_relative(H, ms.hessian_from_hvps(p.eval, p.theta, p.X, p.y, columns_per_call=7), rtol=1e-12,
                             relative_to="max")
    assert np.max(np.abs(H - H.T)) <= 1e-13 * np.max(np.abs(H))
    assert_allclose_relative(p.eval.hessian_diagonal(p.theta, p.X, p.y), np.diag(H), rtol=1e-12, relative_to="max")


def test_eval_hvp_operator_and_per_example_hvps(p):
    V = np.random.default_rng(4).standard_normal((p.net.num_params, 3))
    HV = p.eval.hvp(p.theta, p.X, p.y, V)
    H_fd = fd(lambda t: p.eval.loss_and_grad(t, p.X, p.y)[1], p.theta)
    assert_allclose_relative(HV, H_fd @ V, rtol=RTOL, relative_to="max")
    assert_allclose_relative(p.eval.hvp_operator(p.theta, p.X, p.y)(V[:, 0]), HV[:, 0], rtol=1e-13, relative_to="max")
    rows = p.eval.per_example_hvps(p.theta, p.X, p.y, V[:, 0])
    J_fd = fd(lambda t: p.eval.per_example_grads(t, p.X, p.y), p.theta)  # (N, P, P)
    assert_allclose_relative(rows, J_fd @ V[:, 0], rtol=RTOL, relative_to="max")


def test_eval_gauss_newton_is_jacobian_sandwich_and_plus_residual_is_hessian(p):
    J = p.eval.output_jacobian(p.theta, p.X)  # (N, K, P), checked against FD above
    Z = p.eval.forward(p.theta, p.X)
    y = p.y.reshape(Z.shape) if p.net.loss_fn.name == "mse" else p.y
    A = np.asarray(losses.get(p.net.loss_fn.name).hessian(Z, y))
    GN = np.einsum("nkp,nkj,njq->pq", J, A, J) / p.X.shape[0] + p.net.l2 * np.eye(p.net.num_params)
    G = p.eval.gauss_newton(p.theta, p.X, p.y)
    assert_allclose_relative(G, GN, rtol=1e-12, relative_to="max")
    H, R = p.eval.hessian(p.theta, p.X, p.y), p.eval.residual(p.theta, p.X, p.y)
    assert_allclose_relative(G + R, H, rtol=1e-12, relative_to="max")
    V = np.random.default_rng(6).standard_normal((p.net.num_params, 2))
    assert_allclose_relative(p.eval.gauss_newton_vp(p.theta, p.X, p.y, V), GN @ V, rtol=1e-12, relative_to="max")
    assert_allclose_relative(p.eval.gauss_newton_vp_operator(p.theta, p.X, p.y)(V), GN @ V, rtol=1e-12,
                             relative_to="max")
    assert_allclose_relative(p.eval.gauss_newton_diagonal(p.theta, p.X, p.y), np.diag(GN), rtol=1e-12,
                             relative_to="max")


def test_eval_net_equals_the_plain_net_of_the_folded_parameters(p):
    folded = p.eval.folded(p.theta)
    assert_allclose_relative(p.net.plain.forward(folded, p.X), p.eval.forward(p.theta, p.X), rtol=1e-14,
                             relative_to="max")
    if p.net.loss_fn.name == "cross_entropy":
        expected = np.mean(direct_forward(p.net, p.theta, p.X, p.stats).argmax(1) == p.y)
        assert p.eval.accuracy(p.theta, p.X, p.y) == expected


# ---- against torch.nn.BatchNorm1d and torch.func (skip without PyTorch, as in CI) -----------------------------------

try:
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (optional: pip install torch)")


def torch_objective(p, model):
    """The loss of ``model`` as a function of a flat tensor in minisgd's layout (so torch.func's derivatives come in
    theta's order): each Linear's ``weight = W.T``, each BatchNorm1d's ``weight, bias = gamma, beta``."""
    from torch.func import functional_call
    net = p.net
    Xt = torch.from_numpy(p.X)
    yt = torch.from_numpy(p.y)
    linear_names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    bn_names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm1d)]

    def objective(flat):
        params = {}
        for name, layer in zip(linear_names, net.layers):
            split = layer.start + layer.fan_in * layer.fan_out
            params[f"{name}.weight"] = flat[layer.start:split].reshape(layer.fan_in, layer.fan_out).T
            params[f"{name}.bias"] = flat[split:layer.stop]
        for name, bn in zip(bn_names, net.bn_layers):
            params[f"{name}.weight"] = flat[bn.start:bn.start + bn.width]
            params[f"{name}.bias"] = flat[bn.start + bn.width:bn.stop]
        buffers = {n: b.clone() for n, b in model.named_buffers()}
        out = functional_call(model, {**params, **buffers}, (Xt,))
        data = (torch.nn.functional.cross_entropy(out, yt) if net.loss_fn.name == "cross_entropy"
                else 0.5 * ((out - yt) ** 2).sum(dim=1).mean())
        return data + 0.5 * net.l2 * (flat * flat).sum()
    return objective


@needs_torch
def test_torch_training_mode_outputs_and_running_statistics(p):
    model = p.net.to_torch(p.theta)
    assert model.training
    out = model(torch.from_numpy(p.X)).detach().numpy()  # updates torch's running statistics from (0, 1)
    assert_allclose_relative(p.net.forward(p.theta, p.X), out, rtol=1e-12, relative_to="max")
    _, _, batch = batchnorm.train_loss_and_grad(p.net, p.theta, p.X, p.y)
    ours = batchnorm.update_running_statistics(p.net, p.net.initial_statistics(), batch, p.X.shape[0])
    theirs = np.concatenate([t.numpy() for m in model if isinstance(m, torch.nn.BatchNorm1d)
                             for t in (m.running_mean, m.running_var)])
    assert_allclose_relative(ours, theirs, rtol=1e-12, relative_to="max")


@needs_torch
def test_torch_eval_mode_outputs_and_round_trip(p):
    model = p.eval.to_torch(p.theta)
    assert not model.training
    out = model(torch.from_numpy(p.X)).detach().numpy()
    assert_allclose_relative(p.eval.forward(p.theta, p.X), out, rtol=1e-12, relative_to="max")
    net, theta = ms.MLP.from_torch(model, loss=p.net.loss_fn.name, l2=p.net.l2)
    assert "eval mode" in repr(net) and np.array_equal(theta, p.theta) and np.array_equal(net.stats, p.stats)
    trained, theta = ms.MLP.from_torch(model.train(), loss=p.net.loss_fn.name, l2=p.net.l2)
    assert trained.batch_norm and np.array_equal(theta, p.theta)


@needs_torch
def test_torch_func_derivatives_in_both_modes(p):
    from torch.func import grad, hessian
    flat = torch.from_numpy(p.theta.copy())
    train_model = p.net.to_torch(p.theta)
    g = grad(torch_objective(p, train_model))(flat).numpy()
    assert_allclose_relative(p.net.loss_and_grad(p.theta, p.X, p.y)[1], g, rtol=1e-10, relative_to="max")
    eval_model = p.eval.to_torch(p.theta)
    objective = torch_objective(p, eval_model)
    assert p.eval.loss(p.theta, p.X, p.y) == pytest.approx(float(objective(flat)), rel=1e-12)
    assert_allclose_relative(p.eval.loss_and_grad(p.theta, p.X, p.y)[1], grad(objective)(flat).numpy(), rtol=1e-10,
                             relative_to="max")
    assert_allclose_relative(p.eval.hessian(p.theta, p.X, p.y), hessian(objective)(flat).numpy(), rtol=1e-10,
                             relative_to="max")


@needs_torch
def test_from_torch_refuses_batch_norm_it_cannot_represent():
    nn = torch.nn
    with pytest.raises(ms.errors.UnsupportedModelError, match="between a Linear"):
        ms.MLP.from_torch(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4), nn.Linear(4, 2)))
    with pytest.raises(ms.errors.UnsupportedModelError, match="momentum"):
        ms.MLP.from_torch(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=0.2), nn.ReLU(), nn.Linear(4, 2)))
    with pytest.raises(ms.errors.UnsupportedModelError, match="every hidden layer"):
        ms.MLP.from_torch(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(),
                                        nn.Linear(4, 2)))
