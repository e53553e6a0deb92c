"""Every curvature operator on a batch-normalized net in eval mode against the dense matrices of
``net.eval_mode(stats)`` (a second route: the fold's sandwich T^T M T + D of the plain network's dense matrix, or the
per-example gradients), and the refusal of a training-mode BN net, whose curvature couples the examples."""
import numpy as np
import pytest

from minisgd import MLP
from minisgd.core import batchnorm
from minisgd.curvature.operators import EmpiricalFisher, Fisher, GaussNewton, Hessian, Residual
from minisgd.errors import BatchNormModeError

from .conftest import check_against_dense

BN_NETS = [
    ([5, 7, 6, 3], "tanh", "cross_entropy", 0.0),
    ([4, 9, 2], "softplus", "mse", 1e-2),
    ([6, 5, 5, 5, 4], "relu", "cross_entropy", 1e-3),
]


def make_bn_problem(sizes, activation, loss, l2, n=40, seed=11):
    """``(eval-mode net, theta, X, y)``: gamma and beta away from 1 and 0, running statistics of another batch (so
    that every term of the fold is nonzero)."""
    rng = np.random.default_rng(seed)
    net = MLP(sizes, activation=activation, loss=loss, l2=l2, batch_norm=True)
    theta = net.init(seed=5) + 0.3 * rng.standard_normal(net.num_params)
    X = rng.standard_normal((n, sizes[0]))
    y = rng.integers(0, sizes[-1], n) if loss == "cross_entropy" else rng.standard_normal((n, sizes[-1]))
    stats = batchnorm.train_forward(net, theta, rng.standard_normal((n, sizes[0])) + 0.5).statistics
    return net.eval_mode(stats), theta, X, y


@pytest.fixture(params=BN_NETS, ids=lambda p: f"{p[1]}-{p[2]}-{len(p[0]) - 1}layers-l2={p[3]}")
def bn(request):
    return make_bn_problem(*request.param)


@pytest.mark.parametrize("cls, dense_of", [(Hessian, "hessian"), (GaussNewton, "gauss_newton"),
                                           (Residual, "residual")])
def test_operators_equal_the_eval_mode_dense_matrices(bn, cls, dense_of):
    net, theta, X, y = bn
    dense = getattr(net, dense_of)(theta, X, y)
    op = cls(net, theta, X, y)
    check_against_dense(op, dense, f"{cls.__name__} (BN eval)")
    np.testing.assert_allclose(op.to_dense(), dense, rtol=0, atol=1e-12 * abs(dense).max())


def test_the_fisher_is_the_gauss_newton_matrix(bn):
    """For the cross-entropy and the squared error, the exact Fisher equals G (an expectation over the model's
    labels against the loss Hessian's square root)."""
    net, theta, X, y = bn
    check_against_dense(Fisher(net, theta, X), net.gauss_newton(theta, X, y), "Fisher (BN eval)")


def test_the_empirical_fisher_is_the_second_moment_of_per_example_gradients(bn):
    net, theta, X, y = bn
    G = net.per_example_grads(theta, X, y) - net.l2 * theta  # (N, P): the data term's gradients
    ref = G.T @ G / X.shape[0] + net.l2 * np.eye(net.num_params)
    op = EmpiricalFisher(net, theta, X, y)
    check_against_dense(op, ref, "EmpiricalFisher (BN eval)")
    np.testing.assert_allclose(op.to_dense(), ref, rtol=0, atol=1e-12 * abs(ref).max())


@pytest.mark.parametrize("cls", [Hessian, GaussNewton, Residual, Fisher, EmpiricalFisher])
def test_a_training_mode_bn_net_is_refused(cls):
    net = MLP([4, 5, 3], batch_norm=True)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((8, 4)), rng.integers(0, 3, 8)
    with pytest.raises(BatchNormModeError, match="eval_mode"):
        cls(net, net.init(0), X, y)
