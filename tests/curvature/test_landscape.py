"""Landscapes: interpolation endpoints are the two models, slices of a quadratic equal the quadratic
model, filter normalization gives the right column norms.

Tolerances. A loss evaluated at the same parameters by two routes agrees to rounding (~1e-16 relative);
endpoints use rtol 1e-12. On an exactly quadratic loss the slice and its model differ by rounding of
O(1) numbers only: rtol 1e-10.
"""
import numpy as np
import pytest

import minisgd as ms
from minisgd.curvature import landscape
from minisgd.data import Dataset


def classification_problem(seed=0):
    rng = np.random.default_rng(seed)
    net = ms.MLP([6, 10, 3], activation="tanh", loss="cross_entropy", l2=1e-3)
    X, y = rng.standard_normal((50, 6)), rng.integers(0, 3, 50)
    X_test, y_test = rng.standard_normal((30, 6)), rng.integers(0, 3, 30)
    return net, net.init(seed=seed), net.init(seed=seed + 1), (X, y, X_test, y_test)


def quadratic_problem():
    """Linear regression [4, 3] (identity, mse): the loss is exactly quadratic in theta (P = 15)."""
    rng = np.random.default_rng(2)
    net = ms.MLP([4, 3], activation="identity", loss="mse", l2=1e-2)
    return net, rng.standard_normal(15), rng.standard_normal((20, 4)), rng.standard_normal((20, 3))


# ---- interpolation -----------------------------------------------------------------------------------------

def test_interpolation_endpoints_are_the_two_models():
    net, small, large, (X, y, Xt, yt) = classification_problem()
    curve = landscape.interpolate(net, small, large, (X, y, Xt, yt))
    np.testing.assert_array_equal(curve.alphas, np.linspace(-1, 2, 25))
    i0, i1 = 8, 16  # alpha = 0 and alpha = 1, exactly, on linspace(-1, 2, 25)
    assert curve.alphas[i0] == 0.0 and curve.alphas[i1] == 1.0
    for i, theta in ((i0, small), (i1, large)):
        np.testing.assert_allclose(curve.train_loss[i], net.loss(theta, X, y), rtol=1e-12)
        np.testing.assert_allclose(curve.test_loss[i], net.loss(theta, Xt, yt), rtol=1e-12)
        np.testing.assert_allclose(curve.train_accuracy[i], net.accuracy(theta, X, y), rtol=1e-12)
        np.testing.assert_allclose(curve.test_accuracy[i], net.accuracy(theta, Xt, yt), rtol=1e-12)
    # in between: the point on the line, theta(alpha) = alpha large + (1 - alpha) small
    alpha = curve.alphas[3]
    np.testing.assert_allclose(curve.train_loss[3], net.loss(alpha * large + (1 - alpha) * small, X, y),
                               rtol=1e-12)


def test_interpolation_accepts_a_dataset_and_evaluates_in_chunks():
    net, small, large, (X, y, Xt, yt) = classification_problem(seed=3)
    ds = Dataset("toy", X, y, Xt, yt, num_classes=3)
    alphas = np.array([-0.5, 0.0, 0.5, 1.0, 1.5])
    whole = landscape.interpolate(net, small, large, ds, alphas)
    chunked = landscape.interpolate(net, small, large, (X, y, Xt, yt), alphas, chunk=7)
    for field in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
        np.testing.assert_allclose(getattr(chunked, field), getattr(whole, field), rtol=1e-12)
    train_only = landscape.interpolate(net, small, large, (X, y), alphas)
    assert train_only.test_loss is None and train_only.test_accuracy is None


def test_interpolation_for_regression_has_no_accuracy():
    net, theta, X, y = quadratic_problem()
    curve = landscape.interpolate(net, theta, 0 * theta, (X, y), alphas=[0.0, 1.0])
    assert curve.train_accuracy is None
    np.testing.assert_allclose(curve.train_loss, [net.loss(theta, X, y), net.loss(0 * theta, X, y)], rtol=1e-12)


# ---- filter normalization -------------------------------------------------------------------------------------

def test_filter_normalized_direction_has_the_columns_norms_and_no_bias():
    net = ms.MLP([5, 7, 4, 3], activation="relu")
    theta = net.init(seed=0, scheme="he")
    d = landscape.filter_normalized_direction(net, theta, seed=1)
    for (W, b), (D, Db) in zip(net.unflatten(theta), net.unflatten(d)):
        np.testing.assert_allclose(np.linalg.norm(D, axis=0), np.linalg.norm(W, axis=0), rtol=1e-12)
        np.testing.assert_array_equal(Db, 0.0)
        cos = np.sum(D * W) / (np.linalg.norm(D) * np.linalg.norm(W))
        assert abs(cos) < 0.9  # random, not theta itself
    other = landscape.filter_normalized_direction(net, theta, seed=2)
    assert not np.allclose(d, other)
    np.testing.assert_array_equal(d, landscape.filter_normalized_direction(net, theta, seed=1))


# ---- slices with their quadratic model --------------------------------------------------------------------------

@pytest.mark.parametrize("direction", ["random", "eigen", "given"])
def test_1d_slice_of_a_quadratic_equals_the_quadratic_model(direction):
    net, theta, X, y = quadratic_problem()
    if direction == "given":
        direction = np.random.default_rng(5).standard_normal(net.num_params)
    s = landscape.slice_1d(net, theta, X, y, direction, ts=np.linspace(-2, 2, 17))
    np.testing.assert_allclose(s.loss, s.quadratic, rtol=1e-10)
    assert s.loss.max() - s.loss.min() > 0.1 * s.loss0  # the slice is not flat: the check has teeth
    np.testing.assert_allclose(s.loss[8], net.loss(theta, X, y), rtol=1e-15)  # t = 0


def test_eigen_slice_curvature_is_the_top_eigenvalue():
    net, theta, X, y = quadratic_problem()
    w = np.linalg.eigvalsh(net.hessian(theta, X, y))
    s = landscape.slice_1d(net, theta, X, y, "eigen")
    assert s.kind == "eigen"
    np.testing.assert_allclose(s.curvature[0, 0], w[-1], rtol=1e-12)
    s2 = landscape.slice_2d(net, theta, X, y, "eigen", ts=np.linspace(-1, 1, 5), ss=np.linspace(-1, 1, 4))
    np.testing.assert_allclose(s2.curvature, np.diag(w[::-1][:2]), rtol=1e-12, atol=1e-12 * w[-1])
    np.testing.assert_allclose(s2.loss, s2.quadratic, rtol=1e-10)


def test_2d_slice_of_a_quadratic_equals_the_quadratic_model_cross_term_included():
    net, theta, X, y = quadratic_problem()
    D = np.random.default_rng(6).standard_normal((net.num_params, 2))
    ts, ss = np.linspace(-1, 1, 5), np.linspace(-0.5, 1.5, 6)
    s = landscape.slice_2d(net, theta, X, y, D, ts=ts, ss=ss)
    assert s.loss.shape == (5, 6) and abs(s.curvature[0, 1]) > 0.1 * abs(s.curvature[0, 0])
    np.testing.assert_allclose(s.loss, s.quadratic, rtol=1e-10)
    np.testing.assert_allclose(s.loss[2, 4], net.loss(theta + ts[2] * D[:, 0] + ss[4] * D[:, 1], X, y),
                               rtol=1e-15)
    r = landscape.slice_2d(net, theta, X, y, "random", ts=ts, ss=ss)
    assert r.kind == "random" and r.directions.shape == (net.num_params, 2)
    np.testing.assert_allclose(r.loss, r.quadratic, rtol=1e-10)


def test_quadratic_model_of_a_nonlinear_net_is_accurate_to_third_order():
    # For a smooth non-quadratic loss, loss(t) - q(t) = t^3/6 f'''(0) + O(t^4): halving t divides the
    # gap by 8 (to within the O(t^4) term, here a few percent).
    net, theta, _, (X, y, _, _) = classification_problem(seed=4)
    h = 1e-2
    s = landscape.slice_1d(net, theta, X, y, "random", ts=np.array([h, h / 2]), seed=3)
    gap = s.loss - s.quadratic
    np.testing.assert_allclose(gap[0] / gap[1], 8.0, rtol=0.1)


def test_wrong_directions_are_refused():
    net, theta, X, y = quadratic_problem()
    with pytest.raises(ValueError, match="directions"):
        landscape.slice_1d(net, theta, X, y, "sideways")
    with pytest.raises(ValueError, match="direction"):
        landscape.slice_2d(net, theta, X, y, np.ones((net.num_params, 3)))
    with pytest.raises(ValueError, match="Dataset"):
        landscape.interpolate(net, theta, theta, (X,))


def test_array_api_strict_inputs_give_the_numpy_results():
    xp = pytest.importorskip("array_api_strict")
    net, small, large, (X, y, Xt, yt) = classification_problem(seed=5)
    strict = [xp.asarray(a) for a in (small, large, X, y)]
    curve = landscape.interpolate(net, small, large, (X, y, X, y), [0.0, 0.5], chunk=7)
    curve_s = landscape.interpolate(net, strict[0], strict[1], strict[2:] * 2, [0.0, 0.5], chunk=7)
    np.testing.assert_allclose(curve_s.test_loss, curve.test_loss, rtol=1e-12)
    np.testing.assert_allclose(curve_s.test_accuracy, curve.test_accuracy, rtol=1e-12)
    s = landscape.slice_2d(net, small, X, y, "random", ts=[0.0, 0.1], ss=[-0.1, 0.2])
    s_s = landscape.slice_2d(net, strict[0], strict[2], strict[3], "random", ts=[0.0, 0.1], ss=[-0.1, 0.2])
    np.testing.assert_allclose(s_s.loss, s.loss, rtol=1e-12)
    np.testing.assert_allclose(s_s.quadratic, s.quadratic, rtol=1e-12)
