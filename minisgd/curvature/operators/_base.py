r"""What every curvature operator shares: SciPy's ``LinearOperator`` interface on top of minisgd's exact products.

A :class:`CurvatureOperator` is a symmetric ``(P, P)`` ``scipy.sparse.linalg.LinearOperator`` for one network at
one point on one data set. Subclasses write ``_apply(V: (P, k)) -> (P, k)`` on the arrays of ``theta``'s library
and device (NumPy or CuPy), and say what ``to_dense``, ``diagonal`` and ``trace`` are. Here:

* **k directions at once**: ``A @ V`` for ``V: (P, k)`` is one call of the product for all k columns (in chunks of
  ``max_directions`` columns, so the ``(k, N, n_l)`` R-quantities stay within a memory budget);
* **the array stays where it is**: ``A @ V`` with a CuPy ``V`` on a CuPy operator stays on the GPU (SciPy's own
  ``dot`` would call ``np.asarray`` on it); a NumPy ``V`` (SciPy's ``eigsh``, ``cg``, ``lsmr``) goes to the
  operator's device and its product comes back as NumPy. The result lives where the input lives.
"""
import array_api_compat
import numpy as np
from scipy.sparse.linalg import LinearOperator

from ...backend import available_memory, device_of, namespace, to_device
from ...core.hessian import GIB
from ...errors import HessianTooLargeError, ShapeError

#: Numbers allowed in one call's per-direction work arrays (``k N sum(widths)`` times a few): 2^25 = 256 MiB in
#: float64. Directions beyond that go in several calls.
DIRECTION_BUDGET = 1 << 25
#: Numbers per per-example array when the examples are streamed in chunks (64 MiB in float64).
CHUNK_ELEMENTS = 1 << 23


def _device(array):
    return "gpu" if array_api_compat.is_cupy_array(array) else "cpu"


def _is_foreign(x):
    """An array of another library than NumPy (CuPy, array_api_strict): SciPy would convert it, we keep it."""
    return array_api_compat.is_array_api_obj(x) and not isinstance(x, np.ndarray)


class CurvatureOperator(LinearOperator):
    """A symmetric ``(P, P)`` curvature matrix of ``net`` at ``theta`` on ``(X, y)``, as a SciPy ``LinearOperator``.

    ``y`` may be None for operators that do not need targets (the true Fisher). ``max_directions`` caps the
    columns per product call (default: what fits :data:`DIRECTION_BUDGET`).
    """

    def __init__(self, net, theta, X, y=None, max_directions=None):
        theta, X, y = net._checked(theta, X, y, need_targets=y is not None)
        self.net, self.theta, self.X, self.y = net, theta, X, y
        self.xp = namespace(theta)
        P, N = net.num_params, X.shape[0]
        per_direction = 4 * N * sum(net.sizes[1:])  # R{z}, R{a}, deltas and a temporary per layer
        self.max_directions = max(1, DIRECTION_BUDGET // per_direction) if max_directions is None else max_directions
        # NumPy's dtype of the same name (CuPy's dtype is NumPy's; array_api_strict's prints as 'array_api_strict.float64')
        super().__init__(dtype=np.dtype(str(theta.dtype).rpartition(".")[2]), shape=(P, P))

    def __repr__(self):
        return f"{type(self).__name__}({self.net!r}, N={self.X.shape[0]}, on {_device(self.theta)})"

    # ---- what a subclass writes ------------------------------------------------------------------------------------

    def _apply(self, V):
        """``(P, k) -> (P, k)`` on theta's library and device."""
        raise NotImplementedError

    def diagonal(self):
        """``(P,)``: the diagonal, exactly, on theta's device."""
        raise NotImplementedError

    def to_dense(self):
        """``(P, P)``: the matrix, on theta's device; ``HessianTooLargeError`` when it would not fit."""
        self._check_dense_fits()
        P = self.shape[0]
        eye = self.xp.eye(P, dtype=self.theta.dtype, device=device_of(self.theta))
        return self._product(eye)

    def trace(self):
        """The trace, exactly (the sum of :meth:`diagonal`), as a float."""
        return float(self.xp.sum(self.diagonal()))

    # ---- products ----------------------------------------------------------------------------------------------

    def _product(self, V):
        """``A @ V`` for ``V: (P,)`` or ``(P, k)`` of any supported library; the result in ``V``'s library."""
        if V.ndim not in (1, 2) or V.shape[0] != self.shape[1]:
            raise ShapeError(f"{type(self).__name__} is {self.shape[0]} x {self.shape[1]}: V must have shape "
                             f"({self.shape[1]},) or ({self.shape[1]}, k), got {tuple(V.shape)}")
        here, there, library = _device(self.theta), _device(V), namespace(V)
        W = V if library is self.xp else self.xp.asarray(to_device(V, here))
        W = W if W.dtype == self.theta.dtype else self.xp.astype(W, self.theta.dtype)
        single = W.ndim == 1
        W = W[:, None] if single else W
        step = self.max_directions
        pieces = [self._apply(W[:, j:min(j + step, W.shape[1])]) for j in range(0, W.shape[1], step)]
        out = pieces[0] if len(pieces) == 1 else self.xp.concat(pieces, axis=1)
        out = out[:, 0] if single else out
        return out if library is self.xp else library.asarray(to_device(out, there))

    def _matmat(self, X):
        return self._product(X)

    def _matvec(self, x):
        return self._product(x.reshape(-1))

    _rmatvec = _matvec  # symmetric: A^T = A
    _rmatmat = _matmat

    def _adjoint(self):
        return self

    def dot(self, x):
        """``A @ x``; arrays of another library than NumPy (CuPy) stay in it (SciPy would convert them)."""
        return self._product(x) if _is_foreign(x) else super().dot(x)

    def matvec(self, x):
        return self._product(x) if _is_foreign(x) else super().matvec(x)

    def matmat(self, X):
        return self._product(X) if _is_foreign(X) else super().matmat(X)

    # ---- helpers for subclasses ------------------------------------------------------------------------------------

    def _check_dense_fits(self, copies=2):
        """Raise ``HessianTooLargeError`` unless ``copies`` ``(P, P)`` arrays fit in the memory available."""
        P, itemsize = self.shape[0], np.dtype(self.dtype).itemsize
        need, have = copies * P * P * itemsize, available_memory(self.xp)
        if need > have:
            raise HessianTooLargeError(
                f"{type(self).__name__}.to_dense() needs a {P} x {P} matrix ({P * P * itemsize / GIB:.2f} GiB, "
                f"{need / GIB:.2f} GiB with work space) but {have / GIB:.2f} GiB are available; use the operator's "
                "products (A @ V, scipy's eigsh), its diagonal and trace, or the estimators instead.")
