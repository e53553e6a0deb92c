"""Symmetric test matrices with known traces and diagonals: a decaying spectrum, an indefinite one, a low-rank one, and
the Hessian and KFAC operators of a small network (the estimators take any operator)."""
import numpy as np
import pytest

from minisgd import MLP
from minisgd.curvature.operators import KFAC, Hessian


def spectrum_matrix(eigenvalues, seed=0):
    """``U diag(eigenvalues) U^T`` with a random orthogonal U."""
    P = len(eigenvalues)
    U, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((P, P)))
    return (U * eigenvalues) @ U.T


def low_rank(P=200, rank=8, seed=1):
    return spectrum_matrix(np.r_[np.linspace(1.0, 5.0, rank), np.zeros(P - rank)], seed)


def network_operators():
    rng = np.random.default_rng(2)
    net = MLP([6, 10, 8, 3], "tanh", "cross_entropy", l2=1e-3)
    theta = net.init(seed=1) + 0.3 * rng.standard_normal(net.num_params)
    X, y = rng.standard_normal((50, 6)), rng.integers(0, 3, 50)
    return {"hessian-operator": Hessian(net, theta, X, y), "kfac-operator": KFAC(net, theta, X, y)}


MATRICES = {
    "decaying": lambda: spectrum_matrix(1.0 / np.arange(1, 301) ** 1.5),
    "indefinite": lambda: spectrum_matrix(np.random.default_rng(3).standard_normal(150)),
    **{name: (lambda name=name: network_operators()[name]) for name in ("hessian-operator", "kfac-operator")},
}


def exact(A):
    """``(trace, diagonal)`` of a dense array or of an operator (its exact methods)."""
    if isinstance(A, np.ndarray):
        return float(np.trace(A)), np.diag(A).copy()
    return A.trace(), np.asarray(A.diagonal())


@pytest.fixture(params=list(MATRICES), scope="module")
def matrix(request):
    return MATRICES[request.param]()
