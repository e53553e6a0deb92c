"""Exact Hessian, Gauss-Newton matrix and residual: symmetry, finite differences, closed forms, memory."""
from __future__ import annotations

import numpy as np
import pytest

from cases import CASES, select
from minisgd import HessianTooLargeError
from minisgd.core import losses
from minisgd.backend import to_numpy
from minisgd.testing import assert_allclose_relative, finite_difference_jacobian
import minisgd as ms
from minisgd.curvature import eigen


def hessian(p):
    return to_numpy(p.net.hessian(p.theta, p.X, p.y))


def gauss_newton(p):
    return to_numpy(p.net.gauss_newton(p.theta, p.X, p.y))


def loss_hessians(p, Z):
    y = p.y.reshape(Z.shape) if p.case.loss == "mse" else p.y
    return np.asarray(losses.get(p.case.loss).hessian(Z, y))  # (N, K, K)


def test_hessian_shape_and_symmetry(problem):
    H = hessian(problem)
    assert H.shape == (problem.P, problem.P)
    assert np.all(np.isfinite(H))
    # symmetric up to rounding of the two mirrored blocks: 1e-12 relative to the largest entry
    assert np.max(np.abs(H - H.T)) <= 1e-12 * np.max(np.abs(H)), "hessian is not symmetric"


def test_hessian_matches_finite_differences_of_gradient(problem):
    p = problem
    H = hessian(p)
    H_fd = finite_difference_jacobian(lambda t: to_numpy(p.net.loss_and_grad(t, p.X, p.y)[1]), p.theta)
    # Dense central FD (h = 1e-5) of an O(1) gradient, column by column: per-entry error
    # ~ eps |g| / h + h^2 |g'''| / 6 ~ 1e-10. rtol 1e-6 relative to max |H| (entries near 0 carry the
    # absolute FD error of the large ones), atol 1e-9.
    assert_allclose_relative(H, H_fd, rtol=1e-6, atol=1e-9, relative_to="max",
                             what=f"{p.case.id} hessian vs FD Jacobian of the gradient")


def test_hessian_matches_hvp_with_identity(problem):
    p = problem
    H = hessian(p)
    H_hvp = to_numpy(p.net.hvp(p.theta, p.X, p.y, np.eye(p.P)))
    # two exact, independently derived routes (block formulas vs R-operator): same products summed in
    # different orders, ~1e-15 relative rounding; 1e-10 relative to the largest entry.
    assert_allclose_relative(H, H_hvp, rtol=1e-10, relative_to="max",
                             what=f"{p.case.id} hessian vs hvp(V = I)")


def test_gauss_newton_is_psd(problem):
    G = gauss_newton(problem)
    assert G.shape == (problem.P, problem.P)
    # symmetric (1e-12 relative to max) and positive semi-definite: sum of J^T A J with A PSD, plus l2 I.
    # eigvalsh rounding is ~eps * P * max eig, so min eig >= -1e-10 * max eig.
    assert np.max(np.abs(G - G.T)) <= 1e-12 * np.max(np.abs(G))
    eig = np.linalg.eigvalsh(0.5 * (G + G.T))
    assert eig.min() >= -1e-10 * eig.max(), (eig.min(), eig.max())
    assert eig.min() >= problem.l2 - 1e-10 * eig.max()  # l2 I shifts every eigenvalue up by l2


def test_gauss_newton_from_output_jacobian(problem):
    p = problem
    J = to_numpy(p.net.output_jacobian(p.theta, p.X))  # (N, K, P)
    A = loss_hessians(p, to_numpy(p.net.forward(p.theta, p.X)))
    expected = np.einsum("nkp,nkl,nlq->pq", J, A, J) / p.N + p.l2 * np.eye(p.P)
    # the same sum of products in a different order: 1e-11 relative to the largest entry
    assert_allclose_relative(gauss_newton(p), expected, rtol=1e-11, relative_to="max",
                             what=f"{p.case.id} gauss_newton vs (1/N) sum J^T A J + l2 I")


def test_gauss_newton_from_finite_difference_jacobian(problem):
    """Independent of output_jacobian: J by central differences of forward."""
    p = problem
    J = finite_difference_jacobian(lambda t: to_numpy(p.net.forward(t, p.X)), p.theta)  # (N, K, P)
    A = loss_hessians(p, to_numpy(p.net.forward(p.theta, p.X)))
    expected = np.einsum("nkp,nkl,nlq->pq", J, A, J) / p.N + p.l2 * np.eye(p.P)
    # FD error of J ~1e-10 relative, propagated linearly through J^T A J: 1e-6 relative to max
    assert_allclose_relative(gauss_newton(p), expected, rtol=1e-6, atol=1e-9, relative_to="max",
                             what=f"{p.case.id} gauss_newton vs J_fd^T A J_fd")


def test_residual_is_hessian_minus_gauss_newton(problem):
    p = problem
    S = to_numpy(p.net.residual(p.theta, p.X, p.y))
    H = hessian(p)
    # S may be computed by its own recursion; rounding ~1e-15 of max |H|: 1e-10 relative to max |H|.
    assert S.shape == H.shape
    err = np.max(np.abs(S - (H - gauss_newton(p))))
    assert err <= 1e-10 * np.max(np.abs(H)), f"residual != hessian - gauss_newton (max diff {err:.3e})"


@pytest.mark.parametrize("case", select(depth=1), ids=[c.id for c in select(depth=1)])
def test_depth_one_residual_vanishes(case):
    """With one (linear) layer, z is linear in theta, so H = G for any loss: the residual is zero."""
    p = case.problem()
    S = to_numpy(p.net.residual(p.theta, p.X, p.y))
    H = hessian(p)
    # exactly zero in exact arithmetic; allow rounding of H - G: 1e-12 relative to max |H|
    assert np.max(np.abs(S)) <= 1e-12 * np.max(np.abs(H))


DEEP_LINEAR_MSE = [c for c in CASES if c.activation == "identity" and c.loss == "mse" and c.depth >= 2]


@pytest.mark.parametrize("case", DEEP_LINEAR_MSE, ids=[c.id for c in DEEP_LINEAR_MSE])
def test_deep_linear_residual_does_not_vanish(case):
    """A product of weights is bilinear in theta: its residual sum_n r_n d^2 z_n is nonzero."""
    p = case.problem()
    S = to_numpy(p.net.residual(p.theta, p.X, p.y))
    # the residual is O(|r| |x|) ~ O(1) here; 1e-3 of max |H| is far above rounding (1e-15)
    assert np.max(np.abs(S)) >= 1e-3 * np.max(np.abs(hessian(p)))


LINEAR_MSE = select(depth=1, activation="identity", loss="mse")


@pytest.mark.parametrize("case", LINEAR_MSE, ids=[c.id for c in LINEAR_MSE])
def test_linear_mse_hessian_closed_form(case):
    """Linear regression, half squared error: H = (X~^T X~ / N) kron I_K + l2 I with X~ = [X, 1].

    In the flat layout [W; b] row-major, parameter (i, k) (input i, output k; i = d is the bias) sits at
    index i * K + k, so H[(i, k), (j, l)] = (X~^T X~)_{ij} delta_{kl} / N: exactly kron(X~^T X~ / N, I_K).
    """
    p = case.problem()
    Xt = np.hstack([p.X, np.ones((p.N, 1))])
    expected = np.kron(Xt.T @ Xt / p.N, np.eye(p.K)) + case.l2 * np.eye(p.P)
    # same products, different summation order: 1e-12 relative to the largest entry
    for what, M in (("hessian", hessian(p)), ("gauss_newton", gauss_newton(p))):
        assert_allclose_relative(M, expected, rtol=1e-12, relative_to="max", what=f"{case.id} {what} closed form")


@pytest.mark.parametrize("method", ["hessian", "gauss_newton", "residual"])
def test_memory_budget_raises(method):
    p = CASES[-1].problem()
    P = p.P
    small = 8 * P * P // 2  # half of what the (P, P) float64 result alone needs
    with pytest.raises(HessianTooLargeError, match=r"(?i)memory|GiB|MiB|bytes"):
        getattr(p.net, method)(p.theta, p.X, p.y, max_memory=small)
    with pytest.raises(MemoryError):  # HessianTooLargeError is a MemoryError
        getattr(p.net, method)(p.theta, p.X, p.y, max_memory=1)
    # a generous explicit budget (1 GiB for a 224 x 224 matrix) works
    M = to_numpy(getattr(p.net, method)(p.theta, p.X, p.y, max_memory=2 ** 30))
    assert M.shape == (P, P)


def test_hessian_of_sum_of_batches_is_weighted_mean():
    """H is a mean over examples: H(X) = (N1 H(X1) + N2 H(X2)) / N for the data-dependent part."""
    case = CASES[6]
    p = case.problem()
    n1 = 3
    H = hessian(p)
    H1 = to_numpy(p.net.hessian(p.theta, p.X[:n1], p.y[:n1]))
    H2 = to_numpy(p.net.hessian(p.theta, p.X[n1:], p.y[n1:]))
    # the l2 I term is not averaged: subtract it before weighting, add once. 1e-12 relative to max.
    I = np.eye(p.P) * case.l2
    expected = (n1 * (H1 - I) + (p.N - n1) * (H2 - I)) / p.N + I
    assert_allclose_relative(H, expected, rtol=1e-12, relative_to="max", what="hessian of the union of batches")


@pytest.mark.parametrize("part", ["hessian", "gauss_newton", "residual"])
def test_chunked_assembly_matches_unchunked(problem, part, monkeypatch):
    """White-box: the Hessian is assembled in row chunks sized by a work-space budget that these small
    nets never exceed, so shrink the budget to force many chunks (one row of [W; b] at a time)."""
    import minisgd.core.hessian as hessian_module

    p = problem
    whole = to_numpy(getattr(p.net, part)(p.theta, p.X, p.y))
    if not hasattr(hessian_module, "_workspace_budget"):
        pytest.skip("minisgd.core.hessian no longer sizes its chunks with _workspace_budget")
    monkeypatch.setattr(hessian_module, "_workspace_budget", lambda P: 1)
    chunked = to_numpy(getattr(p.net, part)(p.theta, p.X, p.y))
    # same GEMMs on row subsets: only BLAS blocking differs, 1e-12 relative to the largest entry
    assert_allclose_relative(chunked, whole, rtol=1e-12, relative_to="max", what=f"{p.case.id} {part} chunked")


@pytest.mark.parametrize("workers", ["2", "3"])
@pytest.mark.parametrize("part", ["hessian", "gauss_newton", "residual"])
def test_chunks_on_several_threads_assemble_the_same_matrix(problem, part, workers, monkeypatch):
    """Chunks computed side by side on threads (as many as MINISGD_BLAS_THREADS says, one row of [W; b] per chunk so
    that many run at once) give exactly the matrix one chunk at a time gives with one BLAS thread (the same GEMMs on
    the same rows: any race in the scatter or the shared factors would show), and the Hessian equals hvp(V = I)."""
    import minisgd.core.hessian as hessian_module
    from minisgd import threads

    p = problem
    monkeypatch.setattr(hessian_module, "_workspace_budget", lambda P: 1)
    monkeypatch.setenv(threads.ENV, "1")
    serial = to_numpy(getattr(p.net, part)(p.theta, p.X, p.y))
    pools = []

    class CountedPool(hessian_module.ThreadPoolExecutor):
        def __init__(self, max_workers):
            pools.append(max_workers)
            super().__init__(max_workers)

    monkeypatch.setattr(hessian_module, "ThreadPoolExecutor", CountedPool)
    monkeypatch.setenv(threads.ENV, workers)
    threaded = to_numpy(getattr(p.net, part)(p.theta, p.X, p.y))
    assert pools == [int(workers)]
    np.testing.assert_array_equal(threaded, serial)
    if part == "hessian":
        assert_allclose_relative(threaded, to_numpy(p.net.hvp(p.theta, p.X, p.y, np.eye(p.P))), rtol=1e-10,
                                 relative_to="max", what=f"{p.case.id} threaded hessian vs hvp(V = I)")


def test_hessian_from_hvps_matches_hessian(problem):
    """``minisgd.hessian_from_hvps`` (exported helper) assembles H from blocks of HVP columns."""
    import minisgd

    if not hasattr(minisgd, "hessian_from_hvps"):
        pytest.skip("minisgd.hessian_from_hvps is not exported")
    p = problem
    H_cols = to_numpy(minisgd.hessian_from_hvps(p.net, p.theta, p.X, p.y, columns_per_call=7))
    # two exact routes, different summation orders: 1e-10 relative to the largest entry (as hvp vs hessian)
    assert_allclose_relative(H_cols, hessian(p), rtol=1e-10, relative_to="max",
                             what=f"{p.case.id} hessian_from_hvps vs hessian")


def test_diagonal_and_trace_equal_the_dense_hessians(dense_problem):
    net, theta, X, y, H = dense_problem
    # Two routes with different summation orders: agreement to 1e-12 of the largest entry.
    np.testing.assert_allclose(net.hessian_diagonal(theta, X, y), np.diag(H), rtol=0, atol=1e-12 * abs(H).max())
    np.testing.assert_allclose(eigen.hessian_trace(net, theta, X, y), np.trace(H), rtol=1e-12)


def test_diagonal_in_chunks_and_on_array_api_strict(dense_problem):
    net, theta, X, y, H = dense_problem
    xs = pytest.importorskip("array_api_strict")
    # 7 examples a chunk: the last chunk is partial; the sum over chunks is the same sum reordered.
    chunked = ms.core.hessian.hessian_diagonal(net, theta, X, y, chunk_elements=7 * max(net.sizes[1:]) ** 2)
    np.testing.assert_allclose(chunked, np.diag(H), rtol=0, atol=1e-12 * abs(H).max())
    strict = net.hessian_diagonal(xs.asarray(theta), xs.asarray(X), xs.asarray(y))
    np.testing.assert_allclose(np.asarray(strict), np.diag(H), rtol=0, atol=1e-12 * abs(H).max())


@pytest.mark.parametrize("part", ["full", "gauss_newton", "residual"])
def test_frobenius_norm_without_the_hessian_equals_the_dense_one(dense_problem, part, monkeypatch):
    net, theta, X, y, H = dense_problem
    dense = {"full": H, "gauss_newton": net.gauss_newton(theta, X, y), "residual": net.residual(theta, X, y)}[part]
    expected = float(np.sum(dense ** 2))
    # Same entries, summed in another order: 1e-12 relative.
    assert ms.core.hessian.hessian_frobenius_squared(net, theta, X, y, part) == pytest.approx(expected, rel=1e-12)
    monkeypatch.setattr(ms.core.hessian, "_workspace_budget", lambda P: 30)  # many small chunks
    assert ms.core.hessian.hessian_frobenius_squared(net, theta, X, y, part) == pytest.approx(expected, rel=1e-12)
