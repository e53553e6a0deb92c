"""Trace, diagonal, SLQ, Hutchinson and per-example HVPs against the exact Hessian (an independent route)."""
import numpy as np
import pytest

import minisgd as ms
from minisgd import spectrum

NETS = [
    ([5, 7, 6, 3], "tanh", "cross_entropy", 0.0),
    ([4, 9, 2], "softplus", "mse", 1e-2),
    ([6, 5, 5, 5, 4], "relu", "cross_entropy", 1e-3),
]


@pytest.fixture(params=NETS, ids=lambda p: f"{p[1]}-{p[2]}-{len(p[0]) - 1}layers-l2={p[3]}")
def problem(request):
    sizes, act, loss, l2 = request.param
    rng = np.random.default_rng(11)
    net = ms.MLP(sizes, activation=act, loss=loss, l2=l2)
    theta = net.init(seed=5) + 0.2 * rng.standard_normal(net.num_params)
    X = rng.standard_normal((60, sizes[0]))
    y = rng.integers(0, sizes[-1], 60) if loss == "cross_entropy" else rng.standard_normal((60, sizes[-1]))
    return net, theta, X, y, net.hessian(theta, X, y)


def test_diagonal_and_trace_equal_the_dense_hessians(problem):
    net, theta, X, y, H = problem
    # Two routes with different summation orders: agreement to 1e-12 of the largest entry.
    np.testing.assert_allclose(net.hessian_diagonal(theta, X, y), np.diag(H), rtol=0, atol=1e-12 * abs(H).max())
    np.testing.assert_allclose(spectrum.hessian_trace(net, theta, X, y), np.trace(H), rtol=1e-12)


def test_diagonal_in_chunks_and_on_array_api_strict(problem):
    net, theta, X, y, H = problem
    xs = pytest.importorskip("array_api_strict")
    # 7 examples a chunk: the last chunk is partial; the sum over chunks is the same sum reordered.
    chunked = ms.hessian.hessian_diagonal(net, theta, X, y, chunk_elements=7 * max(net.sizes[1:]) ** 2)
    np.testing.assert_allclose(chunked, np.diag(H), rtol=0, atol=1e-12 * abs(H).max())
    strict = net.hessian_diagonal(xs.asarray(theta), xs.asarray(X), xs.asarray(y))
    np.testing.assert_allclose(np.asarray(strict), np.diag(H), rtol=0, atol=1e-12 * abs(H).max())


def test_hessian_factor_squares_to_the_loss_hessian():
    rng = np.random.default_rng(2)
    Z = 3 * rng.standard_normal((20, 5))
    for loss, y in [("cross_entropy", rng.integers(0, 5, 20)), ("mse", rng.standard_normal((20, 5)))]:
        fn = ms.losses.get(loss)
        R = fn.hessian_factor(Z, y)
        np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), fn.hessian(Z, y), rtol=0, atol=1e-14)


def test_per_example_hvps_are_single_example_hessians_times_v(problem):
    net, theta, X, y, H = problem
    v = np.random.default_rng(0).standard_normal(net.num_params)
    rows = net.per_example_hvps(theta, X, y, v)
    assert rows.shape == (X.shape[0], net.num_params)
    for n in (0, 17, 59):  # H_n from the block formula on a one-example batch (l2 included in both)
        H_n = net.hessian(theta, X[n:n + 1], y[n:n + 1])
        np.testing.assert_allclose(rows[n], H_n @ v, rtol=0, atol=1e-12 * abs(H_n).max() * abs(v).max() * 10)
    np.testing.assert_allclose(rows.mean(axis=0), H @ v, rtol=0, atol=1e-12 * abs(H @ v).max())


def test_hutchinson_is_within_its_error_of_the_exact_trace(problem):
    net, theta, X, y, H = problem
    est = spectrum.hutchinson_trace(net, theta, X, y, num_probes=200, batch=50, seed=3)
    assert est.samples.shape == (200,) and est.stderr > 0
    # Unbiased with standard error stderr: 4 standard errors fail with probability < 1e-4.
    assert abs(est.mean - np.trace(H)) <= 4 * est.stderr


def test_slq_quadrature_is_exact_for_low_degree_moments(problem):
    net, theta, X, y, H = problem
    steps, probes = 8, 3
    dens = spectrum.spectral_density(net, theta, X, y, num_probes=probes, steps=steps, seed=4)
    np.testing.assert_allclose(dens.weights.sum(axis=1), 1.0, rtol=1e-12)
    # Gauss quadrature with m nodes is exact for degree <= 2m - 1: sum tau^2 theta^j = q^T H^j q.
    rng = np.random.default_rng(4)  # the same probes, drawn in the same order
    for p in range(probes):
        q = rng.standard_normal(net.num_params)
        q /= np.linalg.norm(q)
        Hq = q.copy()
        for j in range(1, 2 * steps):
            Hq = H @ Hq
            exact = q @ Hq
            quad = np.sum(dens.weights[p] * dens.nodes[p] ** j)
            scale = np.linalg.norm(H, 2) ** j
            assert abs(quad - exact) <= 1e-9 * scale, (p, j, quad, exact)


def test_slq_density_integrates_to_one_and_matches_the_spectrum(problem):
    net, theta, X, y, H = problem
    dens = spectrum.spectral_density(net, theta, X, y, num_probes=20, steps=40, seed=1)
    # Trapezoid rule on a grid of spacing ~0.1 sigma covering +-5 sigma beyond the extreme nodes.
    assert abs(np.trapezoid(dens.density, dens.grid) - 1.0) < 1e-5
    w = np.linalg.eigvalsh(H)
    mean_est = np.sum(dens.weights * dens.nodes, axis=1)  # q^T H q per probe: tr(H)/P in expectation
    assert abs(mean_est.mean() - w.mean()) <= 4 * mean_est.std(ddof=1) / np.sqrt(mean_est.size)
    assert dens.nodes.max() == pytest.approx(w.max(), rel=1e-6)  # extreme Ritz values converge first


def test_layer_spectra_are_the_diagonal_blocks(problem):
    net, theta, X, y, H = problem
    spectra = spectrum.layer_spectra(net, theta, X, y)
    assert list(spectra) == [layer.name for layer in net.layers]
    for layer in net.layers:
        block = H[layer.start:layer.stop, layer.start:layer.stop]
        np.testing.assert_allclose(spectra[layer.name], np.linalg.eigvalsh(block)[::-1], atol=1e-12 * abs(H).max())


def test_over_subsets_measures_disjoint_subsets(problem):
    net, theta, X, y, H = problem
    est = spectrum.over_subsets(lambda Xs, ys: Xs.shape[0] * 1000 + ys.shape[0], X, y, num_subsets=4)
    np.testing.assert_array_equal(est.samples, [15015.0] * 4)  # 60 // 4 = 15 examples each
    est = spectrum.over_subsets(lambda Xs, ys: spectrum.hessian_trace(net, theta, Xs, ys), X, y, num_subsets=3)
    order = np.random.default_rng(0).permutation(60)
    first = spectrum.hessian_trace(net, theta, X[order[:20]], y[order[:20]])
    assert est.samples[0] == pytest.approx(first, rel=1e-12) and est.stderr == pytest.approx(est.samples.std(ddof=1))
    with pytest.raises(ValueError, match="disjoint subsets"):
        spectrum.over_subsets(lambda Xs, ys: 0.0, X, y, num_subsets=7, subset_size=10)


@pytest.mark.parametrize("part", ["full", "gauss_newton", "residual"])
def test_frobenius_norm_without_the_hessian_equals_the_dense_one(problem, part, monkeypatch):
    net, theta, X, y, H = problem
    dense = {"full": H, "gauss_newton": net.gauss_newton(theta, X, y), "residual": net.residual(theta, X, y)}[part]
    expected = float(np.sum(dense ** 2))
    # Same entries, summed in another order: 1e-12 relative.
    assert ms.hessian.hessian_frobenius_squared(net, theta, X, y, part) == pytest.approx(expected, rel=1e-12)
    monkeypatch.setattr(ms.hessian, "_workspace_budget", lambda P: 30)  # many small chunks
    assert ms.hessian.hessian_frobenius_squared(net, theta, X, y, part) == pytest.approx(expected, rel=1e-12)
