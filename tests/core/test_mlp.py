"""Bad inputs raise the documented error types, with messages that name the problem, from every method."""
from __future__ import annotations

import numpy as np
import pytest

from cases import select
from minisgd import MLP, LabelError, NonFiniteError, ShapeError
from minisgd.core import activations
from minisgd.core import losses

CE = select(loss="cross_entropy", activation="tanh", depth=2)[0]
MSE = select(loss="mse", activation="silu")[0]

# Every public method that takes (theta, X, y); V is added for hvp.
METHODS_WITH_TARGETS = ["loss", "per_example_losses", "loss_and_grad", "per_example_grads",
                        "per_example_grad_norms", "hvp", "hessian", "gauss_newton", "residual",
                        "check_inputs", "hvp_operator"]
METHODS_WITHOUT_TARGETS = ["forward", "output_jacobian", "predict"]


def call(net, method, theta, X, y=None, V=None):
    fn = getattr(net, method)
    if method in METHODS_WITHOUT_TARGETS:
        return fn(theta, X)
    if method == "hvp":
        return fn(theta, X, y, np.ones(net.num_params) if V is None else V)
    if method == "hvp_operator":  # checks when it is made, not at each product
        return fn(theta, X, y)(np.ones(net.num_params))
    return fn(theta, X, y)


@pytest.fixture
def ce():
    return CE.problem()


@pytest.fixture
def mse():
    return MSE.problem()


ALL_METHODS = METHODS_WITH_TARGETS + METHODS_WITHOUT_TARGETS


def test_valid_inputs_do_not_raise(ce):
    """Baseline for the tests below: the unmodified problem is accepted by every method."""
    for method in ALL_METHODS:
        out = call(ce.net, method, ce.theta, ce.X, ce.y)
        values = out if isinstance(out, tuple) else (out,)  # loss_and_grad returns (loss, grad)
        assert all(np.all(np.isfinite(np.asarray(v, dtype=float))) for v in values), method


def test_checked_inputs_feed_the_unchecked_functions(mse):
    """check_inputs canonicalizes what the loops then use without checks: X cast to theta's dtype, 1-d mse targets
    (N,) as (N, 1); hvp_operator's products are hvp's."""
    net = MLP([mse.X.shape[1], 4, 1], activation="tanh", loss="mse")
    theta = net.init(seed=0).astype(np.float32)
    t, X, y = net.check_inputs(theta, mse.X, mse.y[:, 0])
    assert t is theta and X.dtype == np.float32 and y.shape == (mse.N, 1) and y.dtype == np.float32
    assert net.check_inputs(theta, mse.X)[2] is None
    V = np.random.default_rng(0).standard_normal((net.num_params, 3)).astype(np.float32)
    np.testing.assert_array_equal(net.hvp_operator(theta, mse.X, mse.y[:, 0])(V), net.hvp(theta, mse.X, mse.y[:, 0], V))


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("bad", ["extra_column", "one_d", "three_d"])
def test_wrong_X_shape(ce, method, bad):
    X = {"extra_column": np.hstack([ce.X, ce.X[:, :1]]), "one_d": ce.X[:, 0].copy(),
         "three_d": ce.X[None]}[bad]
    with pytest.raises(ShapeError, match=r"\bX\b.*shape|shape.*\bX\b"):
        call(ce.net, method, ce.theta, X, ce.y)


@pytest.mark.parametrize("method", METHODS_WITH_TARGETS)
def test_y_length_mismatch(ce, method):
    with pytest.raises(ShapeError, match=rf"\({ce.N},\)|{ce.N}"):
        call(ce.net, method, ce.theta, ce.X, ce.y[:-1])


@pytest.mark.parametrize("method", METHODS_WITH_TARGETS)
def test_mse_target_shape_mismatch(mse, method):
    Y = np.hstack([mse.y, mse.y[:, :1]])  # (N, K + 1)
    with pytest.raises(ShapeError, match=rf"\({mse.N}, {mse.K}\)"):
        call(mse.net, method, mse.theta, mse.X, Y)


@pytest.mark.parametrize("method", METHODS_WITH_TARGETS)
@pytest.mark.parametrize("bad_label", ["too_large", "negative"])
def test_labels_out_of_range(ce, method, bad_label):
    y = ce.y.copy()
    y[2] = ce.K if bad_label == "too_large" else -1
    with pytest.raises(LabelError, match=rf"\[0, ?{ce.K}\)"):  # names the valid range [0, K)
        call(ce.net, method, ce.theta, ce.X, y)


@pytest.mark.parametrize("method", METHODS_WITH_TARGETS)
def test_float_labels_for_cross_entropy(ce, method):
    with pytest.raises(LabelError, match=r"(?i)integer"):
        call(ce.net, method, ce.theta, ce.X, ce.y.astype(np.float64))


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_X(ce, method, value):
    X = ce.X.copy()
    X[1, 0] = value
    with pytest.raises(NonFiniteError, match=r"\bX\b.*(NaN|inf)"):
        call(ce.net, method, ce.theta, X, ce.y)


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_non_finite_theta(ce, method, value):
    theta = ce.theta.copy()
    theta[3] = value
    with pytest.raises(NonFiniteError, match=r"theta.*(NaN|inf)"):
        call(ce.net, method, theta, ce.X, ce.y)


@pytest.mark.parametrize("method", ALL_METHODS)
@pytest.mark.parametrize("delta", [-1, +1])
def test_wrong_theta_length(ce, method, delta):
    theta = np.zeros(ce.P + delta)
    with pytest.raises(ShapeError, match=rf"theta.*\({ce.P},\)"):  # names the expected shape (P,)
        call(ce.net, method, theta, ce.X, ce.y)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_theta_not_one_dimensional(ce, method):
    with pytest.raises(ShapeError, match=r"theta"):
        call(ce.net, method, ce.theta[None, :], ce.X, ce.y)


@pytest.mark.parametrize("shape", ["P+1", "P-1,k", "k,P", "P,k,1"])
def test_V_with_wrong_shape(ce, shape):
    P = ce.P
    V = np.ones({"P+1": (P + 1,), "P-1,k": (P - 1, 2), "k,P": (2, P), "P,k,1": (P, 2, 1)}[shape])
    with pytest.raises(ShapeError, match=rf"\bV\b.*\({P},"):
        ce.net.hvp(ce.theta, ce.X, ce.y, V)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_integer_X(ce, method):
    X = np.round(ce.X * 10).astype(np.int64)
    # The contract lists "dtype of X integer" among the checked errors without naming a class; a TypeError
    # (the library's choice) or a ValueError subclass are both acceptable, the message must name the dtype.
    with pytest.raises((TypeError, ValueError), match=r"(?i)\bX\b.*(float|dtype)"):
        call(ce.net, method, ce.theta, X, ce.y)


def test_unknown_activation():
    with pytest.raises(ValueError, match=r"swish") as info:
        MLP([2, 3, 2], activation="swish")
    assert all(name in str(info.value) for name in activations.NAMES)  # lists the valid names


def test_unknown_loss():
    with pytest.raises(ValueError, match=r"hinge") as info:
        MLP([2, 3, 2], loss="hinge")
    assert "cross_entropy" in str(info.value) and "mse" in str(info.value)
    with pytest.raises(ValueError, match=r"hinge"):
        losses.get("hinge")


@pytest.mark.parametrize("sizes", [[3], []])
def test_too_few_sizes(sizes):
    with pytest.raises(ValueError, match=r"sizes"):
        MLP(sizes)


def test_bad_init_arguments(ce):
    with pytest.raises(ValueError, match=r"xavier"):
        ce.net.init(seed=0, scheme="xavier")
    with pytest.raises(ValueError, match=r"float16"):
        ce.net.init(seed=0, dtype="float16")


@pytest.mark.parametrize("scheme,var", [("lecun", lambda i, o: 1 / i), ("glorot", lambda i, o: 2 / (i + o)),
                                        ("he", lambda i, o: 2 / i)])
def test_init(scheme, var):
    """Not an error test, but the cheapest place: init shapes, dtypes, determinism and scale."""
    net = MLP([200, 100, 10], activation="relu")
    theta = net.init(seed=3, scheme=scheme)
    assert theta.shape == (net.num_params,) and theta.dtype == np.float64
    np.testing.assert_array_equal(theta, net.init(seed=3, scheme=scheme))  # same seed, same theta
    assert not np.array_equal(theta, net.init(seed=4, scheme=scheme))
    t32 = net.init(seed=3, scheme=scheme, dtype="float32")
    assert t32.dtype == np.float32
    np.testing.assert_array_equal(t32, theta.astype(np.float32))  # drawn in float64 then cast
    for (W, b), layer in zip(net.unflatten(theta), net.layers):
        np.testing.assert_array_equal(b, 0.0)  # biases start at zero
        # sample variance of 20000 / 1000 Gaussian draws: relative std sqrt(2/n) <= 4.5%; allow 15% (>3 sigma)
        assert np.var(W) == pytest.approx(var(layer.fan_in, layer.fan_out), rel=0.15)
