"""Lanczos against dense eigh, and against matrices whose spectrum is known in closed form."""
import numpy as np
import pytest

import minisgd as ms
from minisgd.curvature import eigen
from support import HostCopies, needs_gpu

# Lanczos with full reorthogonalization converges to the extreme eigenvalues with residual
# beta_m |s_m| <= tol * |lambda_max|; at tol = 1e-10 the eigenvalue error is below the residual
# (symmetric case: |theta - lambda| <= residual), so 1e-9 relative to |lambda_max| is a safe bound.
TOL = 1e-10
EIG_RTOL = 1e-9

NETS = [
    ([6, 10, 10, 3], "tanh", "cross_entropy"),
    ([5, 8, 2], "softplus", "mse"),
    ([4, 6, 6, 6, 3], "gelu", "cross_entropy"),
]


@pytest.fixture(params=NETS, ids=lambda p: f"{p[1]}-{p[2]}-{len(p[0]) - 1}layers")
def problem(request):
    sizes, act, loss = request.param
    rng = np.random.default_rng(7)
    net = ms.MLP(sizes, activation=act, loss=loss, l2=1e-3)
    theta = net.init(seed=3) + 0.3 * rng.standard_normal(net.num_params)
    X = rng.standard_normal((80, sizes[0]))
    y = rng.integers(0, sizes[-1], 80) if loss == "cross_entropy" else rng.standard_normal((80, sizes[-1]))
    return net, theta, X, y


@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_lanczos_matches_dense_eigh(problem, which):
    net, theta, X, y = problem
    w = np.linalg.eigvalsh(net.hessian(theta, X, y))
    expected = w[::-1][:4] if which == "largest" else w[:4]
    s = ms.curvature.eigen.hessian_spectrum(net, theta, X, y, k=4, which=which, method="lanczos", tol=TOL,
                                     return_vectors=True)
    assert s.method == "lanczos" and 4 <= s.iterations <= net.num_params
    np.testing.assert_allclose(s.values, expected, rtol=0, atol=EIG_RTOL * abs(w).max())
    # The vectors are eigenvectors of the exact Hessian, orthonormal, and in the order of the values.
    H = net.hessian(theta, X, y)
    np.testing.assert_allclose(H @ s.vectors, s.vectors * s.values, rtol=0, atol=1e-8 * abs(w).max())
    np.testing.assert_allclose(s.vectors.T @ s.vectors, np.eye(4), atol=1e-10)


def test_exact_route_returns_all_eigenvalues_sorted(problem):
    net, theta, X, y = problem
    s = ms.curvature.eigen.hessian_spectrum(net, theta, X, y, k=None, method="exact")
    assert s.method == "exact" and s.values.shape == (net.num_params,)
    assert np.all(np.diff(s.values) <= 0)
    np.testing.assert_allclose(s.values.sum(), np.trace(net.hessian(theta, X, y)), rtol=1e-12)


def test_auto_picks_lanczos_when_the_hessian_does_not_fit(problem):
    net, theta, X, y = problem
    assert ms.curvature.eigen.hessian_spectrum(net, theta, X, y, k=2, method="auto").method == "exact"
    s = ms.curvature.eigen.hessian_spectrum(net, theta, X, y, k=2, method="auto", max_memory=1000, tol=TOL)
    assert s.method == "lanczos"
    w = np.linalg.eigvalsh(net.hessian(theta, X, y))
    np.testing.assert_allclose(s.values, w[::-1][:2], atol=EIG_RTOL * abs(w).max())


def test_lanczos_on_a_known_diagonal_spectrum():
    # Closed form: a diagonal operator's eigenvalues are its entries. A bulk in [0, 1] with outliers at
    # both ends (as Hessians have): the outliers are separated, so Lanczos finds them in few steps.
    d = np.concatenate([[-3.0, -2.0], np.linspace(0.0, 1.0, 300), [5.0, 7.0, 10.0]])
    q0 = np.random.default_rng(0).standard_normal(d.size)
    s = eigen.lanczos(lambda v: d * v, q0, k=3, which="largest", tol=TOL)
    np.testing.assert_allclose(s.values, [10.0, 7.0, 5.0], rtol=1e-9)
    assert s.iterations < 100
    s = eigen.lanczos(lambda v: d * v, q0, k=2, which="smallest", tol=TOL)
    np.testing.assert_allclose(s.values, [-3.0, -2.0], rtol=1e-9)


def test_lanczos_exhausting_a_low_rank_operator_is_exact():
    # A rank-3 operator and a start vector in its range: the Krylov space closes after exactly 3 steps
    # (beta = 0) and the Ritz values are the exact eigenvalues.
    rng = np.random.default_rng(1)
    U, _ = np.linalg.qr(rng.standard_normal((50, 3)))
    A = U @ np.diag([5.0, -2.0, 0.5]) @ U.T
    s = eigen.lanczos(lambda v: A @ v, U @ rng.standard_normal(3), k=2, which="largest")
    assert s.iterations == 3
    np.testing.assert_allclose(s.values, [5.0, 0.5], atol=1e-12)


def test_no_convergence_raises_with_partial_result():
    d = np.linspace(1.0, 1.0001, 500)  # clustered: hopeless in 5 steps
    with pytest.raises(eigen.ConvergenceError, match="did not converge in 5 iterations") as info:
        eigen.lanczos(lambda v: d * v, np.ones(500), k=2, max_iter=5, tol=1e-14)
    assert info.value.partial.values.shape == (2,) and info.value.partial.iterations == 5


def test_top_eigenvalues_on_array_api_strict(problem):
    xs = pytest.importorskip("array_api_strict")
    net, theta, X, y = problem
    ref = eigen.top_eigenvalues(net, theta, X, y, k=2, tol=TOL).values
    got = eigen.top_eigenvalues(net, xs.asarray(theta), xs.asarray(X), xs.asarray(y), k=2, tol=TOL).values
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_a_lanczos_step_copies_to_the_host_once(problem):
    """On a stand-in GPU a Lanczos step reads the device once (alpha_j with beta_j, for the Ritz values): the
    inputs are checked once, not at every Hessian-vector product. Counted as the difference between 20 and 10
    steps; the Ritz values are NumPy's."""
    pytest.importorskip("array_api_strict")
    net, theta, X, y = problem
    copies = {}
    for steps in (10, 20):
        with HostCopies() as host, pytest.raises(ms.ConvergenceError) as info:  # tol 0: runs every step
            eigen.hessian_spectrum(net, *(host.asarray(a) for a in (theta, X, y)), k=2, method="lanczos",
                                   max_iter=steps, tol=0.0)
        copies[steps] = host.count
    assert copies[20] - copies[10] == 10
    with pytest.raises(ms.ConvergenceError) as ref:
        eigen.hessian_spectrum(net, theta, X, y, k=2, method="lanczos", max_iter=20, tol=0.0)
    np.testing.assert_allclose(info.value.partial.values, ref.value.partial.values, rtol=1e-12)


@needs_gpu
def test_cupy_spectra_match_numpy(problem):
    """Every eigenvalue (cuSOLVER's eigh) and the top three by Lanczos on CuPy against NumPy's, float64."""
    import cupy
    net, theta, X, y = problem
    on_gpu = [cupy.asarray(a) for a in (theta, X, y)]
    for kwargs in ({"method": "exact", "k": None}, {"method": "lanczos", "k": 3, "tol": TOL}):
        ref = eigen.hessian_spectrum(net, theta, X, y, **kwargs).values
        got = eigen.hessian_spectrum(net, *on_gpu, **kwargs).values
        np.testing.assert_allclose(got, ref, rtol=EIG_RTOL, atol=1e-12 * np.abs(ref).max())


def test_bad_arguments():
    with pytest.raises(ValueError, match="which must be one of"):
        eigen.lanczos(lambda v: v, np.ones(3), which="middle")
    with pytest.raises(ValueError, match="k must lie in"):
        eigen.lanczos(lambda v: v, np.ones(3), k=5)


@pytest.mark.parametrize("part", ["gauss_newton", "residual"])
def test_parts_have_the_spectra_of_their_dense_matrices(problem, part):
    net, theta, X, y = problem
    dense = {"gauss_newton": net.gauss_newton, "residual": net.residual}[part](theta, X, y)
    s = ms.curvature.eigen.hessian_spectrum(net, theta, X, y, k=None, method="exact", part=part)
    np.testing.assert_allclose(s.values, np.linalg.eigvalsh(dense)[::-1], atol=1e-12 * abs(dense).max())
    if part == "gauss_newton":
        assert s.values[-1] >= -1e-12 * s.values[0]  # positive semi-definite up to rounding
    ends = {"largest": s.values[:2], "smallest": s.values[::-1][:2]}
    # G's smallest eigenvalues are a cluster at l2 (its null space), where Lanczos converges slowly: the top only
    for which in ("largest",) if part == "gauss_newton" else ("largest", "smallest"):
        lz = ms.curvature.eigen.hessian_spectrum(net, theta, X, y, k=2, which=which, method="lanczos", part=part,
                                                 tol=TOL)
        # Lanczos on the part's own products (G v; H v - G v) against eigh of its dense matrix
        np.testing.assert_allclose(lz.values, ends[which], rtol=0, atol=EIG_RTOL * abs(s.values).max())
    with pytest.raises(ValueError, match="needs method='exact'"):
        ms.curvature.eigen.hessian_spectrum(net, theta, X, y, k=None, method="lanczos", part=part)


def test_hutchinson_is_within_its_error_of_the_exact_trace(dense_problem):
    net, theta, X, y, H = dense_problem
    est = eigen.hutchinson_trace(net, theta, X, y, num_probes=200, batch=50, seed=3)
    assert est.samples.shape == (200,) and est.stderr > 0
    # Unbiased with standard error stderr: 4 standard errors fail with probability < 1e-4.
    assert abs(est.mean - np.trace(H)) <= 4 * est.stderr


def test_slq_quadrature_is_exact_for_low_degree_moments(dense_problem):
    net, theta, X, y, H = dense_problem
    steps, probes = 8, 3
    dens = eigen.spectral_density(net, theta, X, y, num_probes=probes, steps=steps, seed=4)
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


def test_slq_density_integrates_to_one_and_matches_the_spectrum(dense_problem):
    net, theta, X, y, H = dense_problem
    dens = eigen.spectral_density(net, theta, X, y, num_probes=20, steps=40, seed=1)
    # Trapezoid rule on a grid of spacing ~0.1 sigma covering +-5 sigma beyond the extreme nodes.
    assert abs(np.trapezoid(dens.density, dens.grid) - 1.0) < 1e-5
    w = np.linalg.eigvalsh(H)
    mean_est = np.sum(dens.weights * dens.nodes, axis=1)  # q^T H q per probe: tr(H)/P in expectation
    assert abs(mean_est.mean() - w.mean()) <= 4 * mean_est.std(ddof=1) / np.sqrt(mean_est.size)
    assert dens.nodes.max() == pytest.approx(w.max(), rel=1e-6)  # extreme Ritz values converge first


def test_layer_spectra_are_the_diagonal_blocks(dense_problem):
    net, theta, X, y, H = dense_problem
    spectra = eigen.layer_spectra(net, theta, X, y)
    assert list(spectra) == [layer.name for layer in net.layers]
    for layer in net.layers:
        block = H[layer.start:layer.stop, layer.start:layer.stop]
        np.testing.assert_allclose(spectra[layer.name], np.linalg.eigvalsh(block)[::-1], atol=1e-12 * abs(H).max())


def test_over_subsets_measures_disjoint_subsets(dense_problem):
    net, theta, X, y, H = dense_problem
    est = eigen.over_subsets(lambda Xs, ys: Xs.shape[0] * 1000 + ys.shape[0], X, y, num_subsets=4)
    np.testing.assert_array_equal(est.samples, [15015.0] * 4)  # 60 // 4 = 15 examples each
    est = eigen.over_subsets(lambda Xs, ys: eigen.hessian_trace(net, theta, Xs, ys), X, y, num_subsets=3)
    order = np.random.default_rng(0).permutation(60)
    first = eigen.hessian_trace(net, theta, X[order[:20]], y[order[:20]])
    assert est.samples[0] == pytest.approx(first, rel=1e-12) and est.stderr == pytest.approx(est.samples.std(ddof=1))
    with pytest.raises(ValueError, match="disjoint subsets"):
        eigen.over_subsets(lambda Xs, ys: 0.0, X, y, num_subsets=7, subset_size=10)


@pytest.mark.parametrize("which", ["largest", "smallest"])
@pytest.mark.parametrize("block", [1, 3, 4])
def test_block_lanczos_matches_dense_eigh(problem, which, block):
    net, theta, X, y = problem
    H = net.hessian(theta, X, y)
    w = np.linalg.eigvalsh(H)
    expected = w[::-1][:4] if which == "largest" else w[:4]
    s = eigen.hessian_spectrum(net, theta, X, y, k=4, which=which, method="block_lanczos", block=block, tol=TOL,
                               return_vectors=True)
    assert s.method == "block_lanczos" and 4 <= s.iterations <= net.num_params + block
    np.testing.assert_allclose(s.values, expected, rtol=0, atol=EIG_RTOL * abs(w).max())
    np.testing.assert_allclose(H @ s.vectors, s.vectors * s.values, rtol=0, atol=1e-8 * abs(w).max())
    np.testing.assert_allclose(s.vectors.T @ s.vectors, np.eye(4), atol=1e-10)
    # The stated residuals bound the true ones (to rounding).
    true = np.linalg.norm(H @ s.vectors - s.vectors * s.values, axis=0)
    assert np.all(true <= s.residuals + 1e-10 * abs(w).max())


def test_block_lanczos_finds_a_repeated_eigenvalue():
    """diag(5, 5, 5, 4, ...): in exact arithmetic one vector's Krylov space holds one eigenvector of the triple 5
    (Lanczos finds the others only through rounding); a block of 3 holds all three."""
    d = np.concatenate([[5.0, 5.0, 5.0], np.linspace(0.0, 4.0, 60)])
    rng = np.random.default_rng(0)
    s = eigen.block_lanczos(lambda V: d[:, None] * V, rng.standard_normal((d.size, 3)), k=4, tol=1e-12)
    np.testing.assert_allclose(s.values, [5.0, 5.0, 5.0, 4.0], rtol=1e-10)


def test_block_lanczos_exhausts_a_small_space_exactly():
    A = np.random.default_rng(1).standard_normal((7, 7))
    A = A + A.T
    s = eigen.block_lanczos(lambda V: A @ V, np.eye(7, 3), k=7, tol=0.0)
    np.testing.assert_allclose(s.values, np.linalg.eigvalsh(A)[::-1], rtol=0, atol=1e-12 * abs(A).max())


def test_block_lanczos_without_convergence_carries_the_partial_result():
    d = np.linspace(1.0, 2.0, 500)
    with pytest.raises(ms.ConvergenceError) as info:
        eigen.block_lanczos(lambda V: d[:, None] * V, np.ones((500, 2)) + np.eye(500, 2), k=2, max_iter=6,
                            tol=1e-14)
    assert info.value.partial.values.shape == (2,) and info.value.partial.iterations == 6


def test_top_eigenvalues_and_block_lanczos_agree(problem):
    net, theta, X, y = problem
    w = np.linalg.eigvalsh(net.hessian(theta, X, y))[::-1]
    top = eigen.top_eigenvalues(net, theta, X, y, k=3, tol=TOL)
    block = eigen.hessian_spectrum(net, theta, X, y, k=3, method="block_lanczos", tol=TOL)
    assert top.method == "lanczos" and block.method == "block_lanczos"
    for s in (top, block):
        np.testing.assert_allclose(s.values, w[:3], rtol=0, atol=EIG_RTOL * abs(w).max())


def test_slq_in_batches_of_probes_is_slq_one_probe_at_a_time(dense_problem):
    """The probes share each step's batched HVP but not their bases: any batch gives the same quadrature."""
    net, theta, X, y, H = dense_problem
    one = eigen.spectral_density(net, theta, X, y, num_probes=5, steps=12, seed=2, batch=1)
    for batch in (2, 5):
        many = eigen.spectral_density(net, theta, X, y, num_probes=5, steps=12, seed=2, batch=batch)
        scale = np.linalg.norm(H, 2)
        np.testing.assert_allclose(many.nodes, one.nodes, rtol=0, atol=1e-9 * scale)
        np.testing.assert_allclose(many.weights, one.weights, rtol=0, atol=1e-9)


def test_probe_lanczos_stops_each_probe_where_its_krylov_space_ends():
    """diag(1, 2, 3) padded with copies: a probe in span(e1, e2) exhausts after 2 steps, one with all of
    1, 2, 3 after 3; both run in the same batch of 5 steps, and their tridiagonals hold the exact eigenvalues."""
    d = np.array([1.0, 2.0, 3.0, 3.0, 2.0, 1.0])
    Q0 = np.array([[1.0, 1.0, 0, 0, 0, 0], [1.0, 1.0, 1.0, 0, 0, 0]])
    alphas, betas, sizes = eigen._probe_lanczos(lambda V: d[:, None] * V, Q0, 5)
    assert list(sizes) == [2, 3]
    for p, expected in ((0, [1.0, 2.0]), (1, [1.0, 2.0, 3.0])):
        m = sizes[p]
        T = np.diag(alphas[p, :m]) + np.diag(betas[p, :m - 1], 1) + np.diag(betas[p, :m - 1], -1)
        np.testing.assert_allclose(np.linalg.eigvalsh(T), expected, rtol=0, atol=1e-12)
        assert np.all(alphas[p, m:] == 0)
