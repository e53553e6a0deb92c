"""The rescaling-invariant measures of minisgd.sharpness (relative sharpness, the Fisher-Rao norm) against dense
references, finite differences, and their invariance under Dinh et al.'s rescalings (minisgd.reparametrize).

Tolerances: dense references agree to rounding (rtol 1e-10); Lanczos at tol 1e-10 leaves an eigenvalue error below
its residual bound, so rtol 1e-8; central differences with h = 1e-5 on a tanh net have truncation error
~h^2 |l'''| ~ 1e-10 relative to the O(1) derivatives, so rtol 1e-7.
"""
import numpy as np
import pytest

import minisgd as ms
from minisgd import sharpness
from minisgd.reparametrize import rescale


def problem(sizes=(5, 7, 6, 3), activation="relu", seed=0, N=40):
    rng = np.random.default_rng(seed)
    net = ms.MLP(list(sizes), activation=activation, loss="cross_entropy")
    theta = net.init(seed=seed, scheme="he") + 0.2 * rng.standard_normal(net.num_params)
    X, y = rng.standard_normal((N, sizes[0])), rng.integers(0, sizes[-1], N)
    return net, theta, X, y


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_relative_sharpness_against_the_dense_matrix(activation):
    net, theta, X, y = problem(activation=activation)
    H = net.hessian(theta, X, y)
    T = np.diag(np.abs(theta))
    exact = sharpness.relative_sharpness(net, theta, X, y, method="exact")
    lanczos = sharpness.relative_sharpness(net, theta, X, y, method="lanczos", tol=1e-10)
    assert (exact.method, lanczos.method) == ("exact", "lanczos")
    np.testing.assert_allclose(exact.top_eigenvalue, np.linalg.eigvalsh(T @ H @ T)[-1], rtol=1e-10)
    np.testing.assert_allclose(exact.trace, np.trace(T @ H @ T), rtol=1e-10)
    np.testing.assert_allclose(exact.radial, theta @ H @ theta, rtol=1e-10)
    np.testing.assert_allclose(lanczos.top_eigenvalue, exact.top_eigenvalue, rtol=1e-8)
    assert (lanczos.trace, lanczos.radial) == (exact.trace, exact.radial)
    assert set(exact.as_dict()) == {"relative_top_eigenvalue", "relative_trace", "radial_curvature"}


def test_relative_trace_is_the_second_order_term_of_magnitude_aware_noise():
    net, theta, X, y = problem()
    s = 1e-2
    e = sharpness.expected_sharpness(net, theta, X, y, sigma=s * np.abs(theta), num_samples=4)
    rel = sharpness.relative_sharpness(net, theta, X, y, method="exact")
    np.testing.assert_allclose(e.second_order, s ** 2 / 2 * rel.trace, rtol=1e-12)


@pytest.mark.parametrize("sizes, factors", [((5, 7, 3), (1e3, 1e-3)), ((5, 7, 6, 3), (1e-3, 1e3, 1.0)),
                                            ((5, 7, 6, 3), (30.0, 1e-2, 1 / 0.3))])
def test_invariant_under_rescaling_where_the_top_eigenvalue_is_not(sizes, factors):
    net, theta, X, y = problem(sizes, seed=len(sizes))
    theta2 = rescale(net, theta, factors)
    top = ms.spectrum.hessian_spectrum(net, theta, X, y, k=1, method="exact").values[0]
    top2 = ms.spectrum.hessian_spectrum(net, theta2, X, y, k=1, method="exact").values[0]
    assert max(top / top2, top2 / top) > 100
    for method in ("exact", "lanczos"):
        r = sharpness.relative_sharpness(net, theta, X, y, method=method, tol=1e-10)
        r2 = sharpness.relative_sharpness(net, theta2, X, y, method=method, tol=1e-10)
        np.testing.assert_allclose([r2.top_eigenvalue, r2.trace, r2.radial], [r.top_eigenvalue, r.trace, r.radial],
                                   rtol=1e-8)
    np.testing.assert_allclose(sharpness.fisher_rao_norm(net, theta2, X, y),
                               sharpness.fisher_rao_norm(net, theta, X, y), rtol=1e-10)


def test_fisher_rao_norm_against_finite_differences():
    """<theta, g_n> is the derivative of l_n(theta + t theta) at t = 0: central differences, per example."""
    net, theta, X, y = problem(activation="tanh", seed=3)
    h = 1e-5
    up, down = net.per_example_losses(theta + h * theta, X, y), net.per_example_losses(theta - h * theta, X, y)
    slopes = (up - down) / (2 * h)
    expected = np.mean(slopes ** 2)
    np.testing.assert_allclose(sharpness.fisher_rao_norm(net, theta, X, y), expected, rtol=1e-7)
    np.testing.assert_allclose(sharpness.fisher_rao_norm(net, theta, X, y, chunk=7),
                               sharpness.fisher_rao_norm(net, theta, X, y), rtol=1e-13)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        sharpness.fisher_rao_norm(net, theta, X, y, chunk=0)
    with pytest.raises(ValueError, match="method must be"):
        sharpness.relative_sharpness(net, theta, X, y, method="eigh")
