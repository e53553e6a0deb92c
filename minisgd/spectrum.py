r"""Eigenvalues of the Hessian: exact (``eigh`` of the dense matrix) or Lanczos on Hessian-vector products.

Lanczos (with full reorthogonalization) builds an orthonormal basis :math:`Q_m` of the Krylov space
:math:`\{q, Hq, \dots, H^{m-1} q\}` in which :math:`Q_m^T H Q_m = T_m` is tridiagonal; the eigenvalues of
:math:`T_m` (Ritz values) converge to the extreme eigenvalues of :math:`H` first. For a Ritz pair
:math:`(\theta_i, Q_m s_i)` the residual is exactly :math:`\lVert H Q_m s_i - \theta_i Q_m s_i \rVert =
\beta_m |s_{m,i}|` (Golub & Van Loan, *Matrix Computations*, 10.1.4), which is the convergence test here.
Full reorthogonalization (twice, "twice is enough") keeps :math:`Q_m` orthonormal to rounding, so no
spurious copies of converged eigenvalues appear.

Contract (as scipy's ``eigsh`` states its own): ``values`` are returned in descending order for
``which="largest"`` and ascending for ``which="smallest"``; ``vectors[:, i]`` belongs to ``values[i]``;
without convergence a ``ConvergenceError`` carries the partial result.
"""
from dataclasses import dataclass

import numpy as np

from .backend import available_memory, device_of, namespace, to_numpy
from .hessian import hessian_memory_bytes

METHODS = ("auto", "exact", "lanczos")
WHICH = ("largest", "smallest")


@dataclass
class Spectrum:
    """Eigenvalues ``values: (k,)`` (and ``vectors: (P, k)`` on request) and how they were obtained.

    method: "exact" (dense eigh) or "lanczos"; iterations: Lanczos steps (HVPs), 0 for exact;
    residuals: ``(k,)`` bounds on ``|H v - lambda v|`` (exact: computed; Lanczos: beta_m |s_m|).
    """

    values: np.ndarray
    vectors: object = None
    method: str = "exact"
    iterations: int = 0
    residuals: np.ndarray = None
    which: str = "largest"


class ConvergenceError(RuntimeError):
    """Lanczos did not reach the tolerance; ``.partial`` holds the best Ritz pairs found."""

    def __init__(self, message, partial):
        super().__init__(message)
        self.partial = partial


def lanczos(matvec, q0, k=1, which="largest", max_iter=None, tol=1e-8, return_vectors=False):
    r"""The ``k`` extreme eigenpairs of a symmetric operator from ``matvec(v: (P,)) -> (P,)``.

    q0: ``(P,)`` start vector (any nonzero; normalized here). Stops when the ``k`` wanted Ritz values have
    residual bounds :math:`\beta_m |s_{m,i}| \le \mathrm{tol} \cdot \max_j |\theta_j|`, or when the Krylov
    space is exhausted (an invariant subspace: the Ritz values are then exact). ``max_iter`` defaults to
    ``min(P, max(4 k + 40, 100))``.
    """
    if which not in WHICH:
        raise ValueError(f"which must be one of {WHICH}, got {which!r}")
    xp = namespace(q0)
    P = q0.shape[0]
    if not 1 <= k <= P:
        raise ValueError(f"k must lie in [1, P = {P}], got {k}")
    max_iter = min(P, max(4 * k + 40, 100)) if max_iter is None else min(P, max_iter)
    Q = xp.zeros((max_iter + 1, P), dtype=q0.dtype, device=device_of(q0))  # rows: the Lanczos basis
    Q[0, :] = q0 / xp.linalg.vector_norm(q0)
    alphas, betas = [], []
    result = None
    for j in range(max_iter):
        w = matvec(Q[j, :])
        alphas.append(float(xp.sum(w * Q[j, :])))
        for _ in range(2):  # full reorthogonalization against the whole basis, twice
            w = w - (Q[: j + 1, :].T @ (Q[: j + 1, :] @ w))
        beta = float(xp.linalg.vector_norm(w))
        betas.append(beta)
        m = j + 1
        if m < k and beta > 0:
            Q[m, :] = w / beta
            continue
        result = _ritz(alphas, betas, k, which)
        theta, S, bounds = result
        scale = max(abs(theta).max(), np.finfo(np.float64).tiny)
        exhausted = beta <= 1e-12 * scale
        if exhausted or np.all(bounds <= tol * scale):
            return _spectrum(Q[:m, :], theta, S, bounds, m, which, return_vectors)
        Q[m, :] = w / beta
    theta, S, bounds = result
    partial = _spectrum(Q[:max_iter, :], theta, S, bounds, max_iter, which, return_vectors)
    raise ConvergenceError(
        f"Lanczos did not converge in {max_iter} iterations: residual bounds {bounds} against tolerance "
        f"{tol:g} x {max(abs(theta)):.3g}; raise max_iter or tol (the partial result is in .partial)", partial)


def _ritz(alphas, betas, k, which):
    """Ritz values ``(k,)``, their vectors in the Lanczos basis ``S: (m, k)`` and residual bounds."""
    m = len(alphas)
    T = np.diag(alphas) + np.diag(betas[: m - 1], 1) + np.diag(betas[: m - 1], -1)
    theta, S = np.linalg.eigh(T)  # ascending
    pick = slice(None, None, -1) if which == "largest" else slice(None)
    theta, S = theta[pick][:k], S[:, pick][:, :k]
    return theta, S, np.abs(betas[m - 1] * S[m - 1, :])


def _spectrum(Q, theta, S, bounds, iterations, which, return_vectors):
    vectors = None
    if return_vectors:
        xp = namespace(Q)
        vectors = Q.T @ xp.asarray(S, dtype=Q.dtype, device=device_of(Q))  # (P, k)
    return Spectrum(values=theta, vectors=vectors, method="lanczos", iterations=iterations,
                    residuals=bounds, which=which)


def exact_spectrum(H, k=None, which="largest", return_vectors=False):
    """All (or the ``k`` extreme) eigenpairs of a dense symmetric ``H: (P, P)`` by ``eigh``."""
    xp = namespace(H)
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
                     seed=0, tol=1e-8, max_iter=None, max_memory=None):
    """The ``k`` extreme Hessian eigenvalues (``k=None``: all, exact only), exactly or by Lanczos.

    ``method="auto"`` forms the Hessian when it and ``eigh``'s work space (about twice the matrix) fit in
    memory, else runs Lanczos on ``net.hvp``; ``Spectrum.method`` says which was used.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    xp = namespace(theta)
    itemsize = 4 if theta.dtype == xp.float32 else 8
    if method == "auto":
        need = hessian_memory_bytes(net, X.shape[0], itemsize) + 2 * itemsize * net.num_params ** 2
        have = available_memory(xp) if max_memory is None else max_memory
        method = "exact" if need <= have else "lanczos"
    if method == "exact":
        H = net.hessian(theta, X, y, max_memory=max_memory)
        return exact_spectrum(H, k, which, return_vectors)
    if k is None:
        raise ValueError("k=None (the whole spectrum) needs method='exact'")
    q0 = np.random.default_rng(seed).standard_normal(net.num_params)
    q0 = xp.asarray(q0, dtype=theta.dtype, device=device_of(theta))
    return lanczos(lambda v: net.hvp(theta, X, y, v), q0, k, which, max_iter, tol, return_vectors)


def top_eigenvalues(net, theta, X, y, k=1, seed=0, tol=1e-6, max_iter=None):
    """The ``k`` largest Hessian eigenvalues by Lanczos on HVPs (cheap: no ``P x P`` matrix)."""
    return hessian_spectrum(net, theta, X, y, k=k, which="largest", method="lanczos", seed=seed, tol=tol,
                            max_iter=max_iter)
