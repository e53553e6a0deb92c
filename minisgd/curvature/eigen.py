r"""Eigenvalues of the Hessian: exact (``eigh`` of the dense matrix) or Lanczos on Hessian-vector products.

Lanczos (with full reorthogonalization) builds an orthonormal basis :math:`Q_m` of the Krylov space
:math:`\{q, Hq, \dots, H^{m-1} q\}` in which :math:`Q_m^T H Q_m = T_m` is tridiagonal; the eigenvalues of
:math:`T_m` (Ritz values) converge to the extreme eigenvalues of :math:`H` first. For a Ritz pair
:math:`(\theta_i, Q_m s_i)` the residual is exactly :math:`\lVert H Q_m s_i - \theta_i Q_m s_i \rVert =
\beta_m |s_{m,i}|` (Golub & Van Loan, *Matrix Computations*, 10.1.4), which is the convergence test here.
Full reorthogonalization (twice, "twice is enough") keeps :math:`Q_m` orthonormal to rounding, so no
spurious copies of converged eigenvalues appear.

Block Lanczos (Golub & Underwood 1977) runs the same iteration on ``b`` vectors at once: each step is one
batched HVP of ``b`` directions (a few GEMMs, 0.4-0.6x the cost of ``b`` separate products), ``T_m`` is block
tridiagonal, and a Ritz pair's residual is :math:`\lVert B_m S_{m,i} \rVert` with :math:`S_{m,i}` the last ``b``
entries of its vector in the basis. It takes fewer *steps* than Lanczos and finds a cluster of ``b`` close
eigenvalues as easily as one, but more products in all (on the CPU, where a batched product saves only ~20% per
direction, Lanczos stays faster for well-separated top eigenvalues).

Contract (as scipy's ``eigsh`` states its own): ``values`` are returned in descending order for
``which="largest"`` and ascending for ``which="smallest"``; ``vectors[:, i]`` belongs to ``values[i]``;
without convergence a ``ConvergenceError`` carries the partial result.
"""
from dataclasses import dataclass

import numpy as np

from ..backend import available_memory, device_of, namespace, to_numpy
from ..core.hessian import PARTS, hessian_memory_bytes
from ..errors import ConvergenceError
from ..threads import blas_threads
from .estimators import Estimate
from .estimators.hutchinson import hutchinson_trace as _hutchinson_trace
from .operators import Hessian

METHODS = ("auto", "exact", "lanczos", "block_lanczos")
WHICH = ("largest", "smallest")


@dataclass
class Spectrum:
    """Eigenvalues ``values: (k,)`` (and ``vectors: (P, k)`` on request) and how they were obtained.

    method: "exact" (dense eigh) or "lanczos"; iterations: Lanczos steps (HVPs), 0 for exact;
    residuals: ``(k,)`` bounds on ``|H v - lambda v|`` (exact: computed; Lanczos: ``beta_m |s_m|``).
    """

    values: np.ndarray
    vectors: object = None
    method: str = "exact"
    iterations: int = 0
    residuals: np.ndarray = None
    which: str = "largest"



def _lanczos_iterations(matvec, q0, max_iter):
    """Yield ``(m, alphas, betas, Q)`` after each Lanczos step with full reorthogonalization (twice).

    ``Q: (max_iter + 1, P)`` holds the basis in its first rows; ``betas[m - 1]`` is the norm of the next
    residual, zero (to rounding) when the Krylov space is exhausted.
    """
    xp = namespace(q0)
    P = q0.shape[0]
    Q = xp.zeros((max_iter + 1, P), dtype=q0.dtype, device=device_of(q0))
    Q[0, :] = q0 / xp.linalg.vector_norm(q0)
    alphas, betas = [], []
    for j in range(max_iter):
        w = matvec(Q[j, :])
        alpha = xp.sum(w * Q[j, :])
        with blas_threads(2.0 * P * (j + 1)):  # matrix-vector products against the basis
            for _ in range(2):
                w = w - (Q[: j + 1, :].T @ (Q[: j + 1, :] @ w))
        # the step's one device-to-host copy: the Ritz values on the host need alpha_j and beta_j
        alpha, beta = (float(v) for v in to_numpy(xp.stack([alpha, xp.linalg.vector_norm(w)])))
        alphas.append(alpha)
        betas.append(beta)
        if beta > 0:
            Q[j + 1, :] = w / beta
        yield j + 1, alphas, betas, Q


def lanczos(matvec, q0, k=1, which="largest", max_iter=None, tol=1e-8, return_vectors=False):
    r"""The ``k`` extreme eigenpairs of a symmetric operator from ``matvec(v: (P,)) -> (P,)``.

    q0: ``(P,)`` start vector (any nonzero; normalized here). Stops when the ``k`` wanted Ritz values have
    residual bounds :math:`\beta_m |s_{m,i}| \le \mathrm{tol} \cdot \max_j |\theta_j|`, or when the Krylov
    space is exhausted (an invariant subspace: the Ritz values are then exact). ``max_iter`` defaults to
    ``min(P, max(4 k + 40, 100))``.
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    P = q0.shape[0]
    if not 1 <= k <= P:
        raise ValueError(f"k must lie in [1, P = {P}], got {k}")
    max_iter = min(P, max(4 * k + 40, 100)) if max_iter is None else min(P, max(k, max_iter))
    for m, alphas, betas, Q in _lanczos_iterations(matvec, q0, max_iter):
        if m < k and betas[-1] > 0:
            continue
        theta, S, bounds = _ritz(alphas, betas, k, which)
        scale = max(abs(theta).max(), np.finfo(np.float64).tiny)
        if betas[-1] <= 1e-12 * scale or np.all(bounds <= tol * scale):
            return _spectrum(Q[:m, :], theta, S, bounds, m, which, return_vectors)
    partial = _spectrum(Q[:max_iter, :], theta, S, bounds, max_iter, which, return_vectors)
    raise ConvergenceError(
        f"Lanczos did not converge in {max_iter} iterations: residual bounds {bounds} against tolerance "
        f"{tol:g} x {max(abs(theta)):.3g}; raise max_iter or tol (the partial result is in .partial)", partial)


def block_lanczos(matmat, Q0, k=1, which="largest", max_iter=None, tol=1e-8, return_vectors=False):
    r"""The ``k`` extreme eigenpairs of a symmetric operator from ``matmat(V: (P, b)) -> (P, b)``, ``b`` directions
    per step.

    Q0: ``(P, b)`` start block of full column rank (orthonormalized here), ``b >= 1``. Full
    reorthogonalization (twice) against the whole basis. Stops when the ``k`` wanted Ritz pairs have residuals
    :math:`\lVert B_m S_{m,i} \rVert \le \mathrm{tol} \cdot \max_j |\theta_j|`, or the Krylov space is exhausted.
    ``max_iter`` counts operator applications to single vectors (``b`` per step), as for ``lanczos``; it defaults
    to ``min(P, max(4 k + 40, 100) + b)``. ``Spectrum.iterations`` is that count too.
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    xp = namespace(Q0)
    P, b = Q0.shape
    if not 1 <= k <= P:
        raise ValueError(f"k must lie in [1, P = {P}], got {k}")
    max_iter = min(P, max(4 * k + 40, 100) + b) if max_iter is None else min(P, max(k, max_iter))
    # The basis as rows (like lanczos's Q): each block is a contiguous (width, P) slab, its transpose what
    # matmat takes; a column layout made every block a strided slice of a wide matrix (5x slower).
    Q = xp.zeros((min(P, max_iter + b), P), dtype=Q0.dtype, device=device_of(Q0))
    T = np.zeros((Q.shape[0], Q.shape[0]))
    Q[:b, :] = xp.linalg.qr(Q0)[0].T
    m, width = 0, b  # m: basis vectors before the current block; width: the current block's vectors
    while True:
        block, m_next = slice(m, m + width), m + width
        W = matmat(Q[block, :].T).T  # (width, P): one batched HVP
        room = min(b, Q.shape[0] - m_next)  # the basis never outgrows P (nor max_iter + b) vectors
        with blas_threads(2.0 * P * m_next * width):  # thin GEMMs against the basis: threads only when worth it
            A = Q[block, :] @ W.T
            for _ in range(2):  # "twice is enough": W orthogonal to the whole basis to rounding
                basis = Q[:m_next, :]
                W = W - (W @ basis.T) @ basis
            if room < width:  # W spans at most `room` new directions: keep its leading singular vectors
                Qn = xp.linalg.svd(W, full_matrices=False)[2][:room, :]
            else:
                Qn = xp.linalg.qr(W.T)[0].T
                basis = Q[:m_next, :]
                Qn = xp.linalg.qr((Qn - (Qn @ basis.T) @ basis).T)[0].T  # a rank-deficient W leaves noise rows
            B = Qn @ W.T  # (room, width): T's block below the diagonal, exact for whatever Qn spans
        Q[m_next:m_next + room, :] = Qn
        A, B = (np.asarray(to_numpy(M), dtype=np.float64) for M in (A, B))  # the step's device-to-host copy
        T[block, block] = 0.5 * (A + A.T)
        T[m_next:m_next + room, block] = B
        T[block, m_next:m_next + room] = B.T
        if m_next >= k:
            theta, S = np.linalg.eigh(T[:m_next, :m_next])
            pick = slice(None, None, -1) if which == "largest" else slice(None)
            theta, S = theta[pick][:k], S[:, pick][:, :k]
            bounds = np.linalg.norm(B @ S[m:m_next, :], axis=0)
            scale = max(abs(theta).max(), np.finfo(np.float64).tiny)
            exhausted = m_next >= P or np.linalg.norm(B) <= 1e-12 * scale  # invariant subspace: Ritz values exact
            if exhausted or np.all(bounds <= tol * scale):
                return _spectrum(Q[:m_next, :], theta, S, bounds, m_next, which, return_vectors, "block_lanczos")
        m, width = m_next, room
        if m >= max_iter or room == 0:
            break
    partial = _spectrum(Q[:m, :], theta, S, bounds, m, which, return_vectors, "block_lanczos")
    raise ConvergenceError(
        f"block Lanczos did not converge in {m} products: residual bounds {bounds} against tolerance "
        f"{tol:g} x {max(abs(theta)):.3g}; raise max_iter or tol (the partial result is in .partial)", partial)


def _ritz(alphas, betas, k, which):
    """Ritz values ``(k,)``, their vectors in the Lanczos basis ``S: (m, k)`` and residual bounds."""
    m = len(alphas)
    T = np.diag(alphas) + np.diag(betas[: m - 1], 1) + np.diag(betas[: m - 1], -1)
    theta, S = np.linalg.eigh(T)  # ascending
    pick = slice(None, None, -1) if which == "largest" else slice(None)
    theta, S = theta[pick][:k], S[:, pick][:, :k]
    return theta, S, np.abs(betas[m - 1] * S[m - 1, :])


def _spectrum(Q, theta, S, bounds, iterations, which, return_vectors, method="lanczos"):
    """The ``Spectrum`` of Ritz values ``theta``; with ``return_vectors`` the Ritz vectors ``Q^T S: (P, k)`` from the
    basis ``Q: (m, P)`` and ``S: (m, k)``."""
    vectors = None
    if return_vectors:
        xp = namespace(Q)
        vectors = Q.T @ xp.asarray(S, dtype=Q.dtype, device=device_of(Q))  # (P, k)
    return Spectrum(values=theta, vectors=vectors, method=method, iterations=iterations,
                    residuals=bounds, which=which)


def exact_spectrum(H, k=None, which="largest", return_vectors=False):
    """All (or the ``k`` extreme) eigenpairs of a dense symmetric ``H: (P, P)`` by ``eigh``."""
    xp = namespace(H)
    P = H.shape[0]
    # The largest call: divide and conquer's top merge, a (P, P/2) @ (P/2, P) GEMM, with vectors; without,
    # the tridiagonal reduction's rank-2k updates of 32 columns each, 4 * 32 P^2 flops at most.
    with blas_threads(float(P) ** 3 if return_vectors else 128.0 * P ** 2):
        if return_vectors:
            w, V = xp.linalg.eigh(H)
        else:
            w, V = xp.linalg.eigvalsh(H), None
    w = to_numpy(w)
    order = np.arange(w.shape[0])[::-1] if which == "largest" else np.arange(w.shape[0])
    order = order[:k] if k is not None else order
    values = w[order]
    if V is not None:
        V = xp.take(V, xp.asarray(order.copy(), device=device_of(V)), axis=1)
    return Spectrum(values=values, vectors=V, method="exact", iterations=0, which=which,
                    residuals=np.zeros_like(values))


def hessian_spectrum(net, theta, X, y, k=20, which="largest", method="auto", return_vectors=False,
                     seed=0, tol=1e-8, max_iter=None, max_memory=None, part="full", block=None):
    """The ``k`` extreme Hessian eigenvalues (``k=None``: all, exact only), exactly or by Lanczos.

    ``method="block_lanczos"`` runs block Lanczos with ``block`` directions per step (default ``k``): one batched
    HVP per step instead of one HVP.

    ``method="auto"`` forms the Hessian when it and ``eigh``'s work space (about twice the matrix) fit in
    memory, else runs Lanczos on ``net.hvp_operator``; ``Spectrum.method`` says which was used. ``part`` takes the
    spectrum of the Hessian (``"full"``), its Gauss-Newton part G (Lanczos on ``net.gauss_newton_vp_operator``) or
    its residual H - G (Lanczos on the difference of the two products).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    xp = namespace(theta)
    itemsize = 4 if theta.dtype == xp.float32 else 8
    if method == "auto":
        need = hessian_memory_bytes(net, X.shape[0], itemsize) + 2 * itemsize * net.num_params ** 2
        have = available_memory(xp) if max_memory is None else max_memory
        method = "exact" if need <= have else "lanczos"
    if method == "exact":
        H = {"full": net.hessian, "gauss_newton": net.gauss_newton, "residual": net.residual}[part](
            theta, X, y, max_memory=max_memory)
        return exact_spectrum(H, k, which, return_vectors)
    if k is None:
        raise ValueError("the whole spectrum (k=None) needs method='exact' (Lanczos finds the extreme eigenvalues)")
    if method == "block_lanczos":
        Q0 = np.random.default_rng(seed).standard_normal((net.num_params, block or k))
        Q0 = xp.asarray(Q0, dtype=theta.dtype, device=device_of(theta))
        return block_lanczos(_part_product(net, theta, X, y, part), Q0, k, which, max_iter, tol, return_vectors)
    q0 = np.random.default_rng(seed).standard_normal(net.num_params)
    q0 = xp.asarray(q0, dtype=theta.dtype, device=device_of(theta))
    return lanczos(_part_product(net, theta, X, y, part), q0, k, which, max_iter, tol, return_vectors)


def _part_product(net, theta, X, y, part):
    """``v -> H v``, ``G v`` or ``(H - G) v`` for ``part`` "full", "gauss_newton" or "residual", inputs checked once."""
    if part == "full":
        return net.hvp_operator(theta, X, y)
    gvp = net.gauss_newton_vp_operator(theta, X, y)
    if part == "gauss_newton":
        return gvp
    hvp = net.hvp_operator(theta, X, y)
    return lambda v: hvp(v) - gvp(v)


def top_eigenvalues(net, theta, X, y, k=1, seed=0, tol=1e-6, max_iter=None):
    """The ``k`` largest Hessian eigenvalues by Lanczos on HVPs (cheap: no ``P x P`` matrix).

    Single-vector Lanczos, not block Lanczos: for the top 10 of 784-512-512-10 block Lanczos needed 78-220 products
    (blocks of 2-10) where Lanczos needed 50, and a batched product saves only ~20% per direction on the CPU
    (benchmarks/bench_top_eigenvalues.py). ``hessian_spectrum(..., method="block_lanczos")`` is there for clusters
    of close eigenvalues."""
    return hessian_spectrum(net, theta, X, y, k=k, which="largest", method="lanczos", seed=seed, tol=tol,
                            max_iter=max_iter)


@dataclass
class SpectralDensity:
    """Stochastic Lanczos quadrature: per probe, Ritz values ``nodes: (num_probes, m)`` with Gaussian
    quadrature ``weights`` (each row sums to 1), and the smoothed density on ``grid``."""

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float


def _probe_lanczos(matmat, Q0, steps):
    r"""Lanczos with full reorthogonalization (twice) run for ``b`` independent start vectors at once, the rows of
    ``Q0: (b, P)``: per step one batched product ``matmat(V: (P, b))``, each probe reorthogonalized against its own
    basis only. Returns ``(alphas, betas, sizes)``: ``(b, steps)`` arrays of each probe's tridiagonal and how many
    steps each took before its Krylov space was exhausted (then its later entries are 0)."""
    xp = namespace(Q0)
    b, P = Q0.shape
    Q = xp.zeros((b, steps + 1, P), dtype=Q0.dtype, device=device_of(Q0))
    Q[:, 0, :] = Q0 / xp.linalg.vector_norm(Q0, axis=1, keepdims=True)
    alphas, betas = np.zeros((b, steps)), np.zeros((b, steps))
    sizes = np.full(b, steps)
    for j in range(steps):
        W = matmat(Q[:, j, :].T).T  # (b, P): one batched HVP for every probe's step
        alpha = xp.sum(W * Q[:, j, :], axis=1)
        with blas_threads(2.0 * b * P * (j + 1)):
            for _ in range(2):
                basis = Q[:, :j + 1, :]  # (b, j + 1, P)
                W = W - xp.matmul(xp.permute_dims(basis, (0, 2, 1)), xp.matmul(basis, W[:, :, None]))[:, :, 0]
        beta = xp.linalg.vector_norm(W, axis=1)
        alphas[:, j], betas[:, j] = (np.asarray(to_numpy(v), dtype=np.float64) for v in (alpha, beta))
        done = (sizes == steps) & (betas[:, j] <= 1e-12 * np.max(np.abs(alphas[:, :j + 1]), axis=1))
        sizes[done] = j + 1  # Krylov space exhausted: the quadrature is exact; this probe stops here
        live = xp.asarray((sizes == steps).astype(np.float64)[:, None], dtype=Q0.dtype, device=device_of(Q0))
        Q[:, j + 1, :] = live * W / xp.where(beta > 0, beta, 1.0)[:, None]
    for p in range(b):
        alphas[p, sizes[p]:] = betas[p, sizes[p]:] = 0.0
    return alphas, betas, sizes


def spectral_density(net, theta, X, y, num_probes=10, steps=80, grid_size=1000, sigma=None, seed=0, batch=None):
    r"""Eigenvalue density of the Hessian by stochastic Lanczos quadrature (Ghorbani et al. 2019).

    For a unit probe :math:`q`, ``steps`` Lanczos steps give :math:`T_m = S \Theta S^T`; then
    :math:`q^T f(H) q \approx \sum_i \tau_i^2 f(\theta_i)` with :math:`\tau_i = S_{1i}`, exact for
    polynomials of degree :math:`\le 2m - 1`. Averaging over Gaussian probes estimates
    :math:`\frac1P \mathrm{tr} f(H)`; with :math:`f` a Gaussian kernel of width ``sigma`` (default: 1% of
    the spectral range) it gives the density :math:`\phi(t) = \frac1P \sum_j \mathcal N(t; \lambda_j, \sigma^2)`,
    which integrates to one.

    The probes run ``batch`` at a time (default: as many as a quarter of the free memory holds, their bases
    being ``(steps + 1, P)`` each), every step one batched HVP for all of them.
    """
    xp = namespace(theta)
    P = net.num_params
    steps = min(steps, P)
    if batch is None:
        basis_bytes = (steps + 1) * P * (4 if theta.dtype == xp.float32 else 8)
        batch = max(1, min(num_probes, int(available_memory(xp) // (4 * basis_bytes))))
    rng = np.random.default_rng(seed)
    matmat = net.hvp_operator(theta, X, y)
    nodes = np.zeros((num_probes, steps))
    weights = np.zeros((num_probes, steps))
    for p0 in range(0, num_probes, batch):
        probes = np.stack([rng.standard_normal(P) for _ in range(min(batch, num_probes - p0))])  # one probe at a time
        alphas, betas, sizes = _probe_lanczos(matmat, xp.asarray(probes, dtype=theta.dtype, device=device_of(theta)),
                                              steps)
        for p, (a, bt, m) in enumerate(zip(alphas, betas, sizes), start=p0):
            T = np.diag(a[:m]) + np.diag(bt[: m - 1], 1) + np.diag(bt[: m - 1], -1)
            theta_p, S = np.linalg.eigh(T)
            nodes[p, :m], weights[p, :m] = theta_p, S[0, :] ** 2
    lo, hi = nodes[weights > 0].min(), nodes[weights > 0].max()
    sigma = 0.01 * max(hi - lo, 1e-12) if sigma is None else sigma
    grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, grid_size)
    kernel = np.exp(-0.5 * ((grid[:, None, None] - nodes[None]) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    density = np.sum(kernel * weights[None], axis=(1, 2)) / num_probes
    return SpectralDensity(grid, density, nodes, weights, sigma)


def hessian_trace(net, theta, X, y):
    """Exact trace of the Hessian, from its diagonal (O(N P) work, no ``P x P`` matrix)."""
    return float(namespace(theta).sum(net.hessian_diagonal(theta, X, y)))


def hutchinson_trace(net, theta, X, y, num_probes=64, batch=16, seed=0):
    r"""Hutchinson's estimator :math:`\mathrm{tr} H = \mathbb E[v^T H v]`, Rademacher :math:`v`, with its
    standard error; the probes go ``batch`` at a time through one HVP
    (:func:`minisgd.curvature.estimators.hutchinson_trace` on the Hessian operator)."""
    return _hutchinson_trace(Hessian(net, theta, X, y, max_directions=batch), num_probes, seed=seed, batch=batch)


def layer_spectra(net, theta, X, y, k=None, max_memory=None):
    """Eigenvalues (descending) of each layer's diagonal block ``H_ll`` of the exact Hessian: per-layer
    sharpness. Returns ``{layer name: values}``."""
    H = net.hessian(theta, X, y, max_memory=max_memory)
    return {layer.name: exact_spectrum(H[layer.start:layer.stop, layer.start:layer.stop], k).values
            for layer in net.layers}


def over_subsets(measure, X, y, num_subsets=5, subset_size=None, seed=0):
    """``measure(X_s, y_s) -> float`` on disjoint random subsets: mean, spread (std over subsets), values.

    A curvature measured on a small Hessian batch can vary tenfold between batches; this says by how much.
    ``subset_size`` defaults to ``N // num_subsets``.
    """
    xp = namespace(X)
    N = X.shape[0]
    size = N // num_subsets if subset_size is None else subset_size
    if size < 1 or size * num_subsets > N:
        raise ValueError(f"{num_subsets} disjoint subsets of {size} examples need more than the {N} given")
    order = np.random.default_rng(seed).permutation(N)
    values = []
    for s in range(num_subsets):
        idx = xp.asarray(order[s * size:(s + 1) * size], device=device_of(X))
        values.append(float(measure(xp.take(X, idx, axis=0), xp.take(y, idx, axis=0))))
    values = np.asarray(values)
    return Estimate(float(values.mean()), float(values.std(ddof=1)) if num_subsets > 1 else 0.0, values)
