r"""Block-diagonal operators in a per-layer Kronecker eigenbasis: what KFAC, EKFAC and their inverses share.

Layer l's parameters are the ``(I, O)`` matrix :math:`\tilde W_l = [W_l; b_l]` (``I = n_{l-1} + 1``,
``O = n_l``) flattened row-major, so its per-example gradient for an output-factor column j is
:math:`\tilde a \otimes d^{(j)}` (row-major ``kron``) and a Kronecker product acts on it as

.. math::
    (A \otimes B)\, \mathrm{vec}(X) = \mathrm{vec}(A X B^T) \qquad (\text{row-major vec}, X: (I, O)).

Here each block is :math:`(U_A \otimes U_B)\, \mathrm{diag}(\mathrm{vec}\, S)\, (U_A \otimes U_B)^T` with
orthogonal :math:`U_A: (I, I)`, :math:`U_B: (O, O)` and eigenvalues :math:`S: (I, O)`, plus the L2 term
:math:`\lambda I`; a product rotates into the basis (:math:`U_A^T X U_B`), scales by :math:`S + \lambda` (or
divides, for the inverse) and rotates back: four GEMMs per layer, for all k directions at once. The diagonal is
:math:`(U_A^{\odot 2})\, S\, (U_B^{\odot 2})^T` per layer, the trace :math:`\sum S + \lambda P`.

:func:`layer_statistics` streams the examples once through the backpropagated output factor
(:func:`minisgd.core.gauss_newton.backpropagated_factor`) and sums what KFAC and EKFAC need.
"""
import numpy as np

from ...backend import device_of, to_numpy
from ...core.gauss_newton import backpropagated_factor
from ...errors import ConfigError, UnsupportedModelError
from ._base import CHUNK_ELEMENTS, CurvatureOperator

def layer_statistics(net, theta, X, factor, statistic, chunk_elements=CHUNK_ELEMENTS):
    r"""``[sum over examples of statistic(l, ã, d) for each layer l]``, examples in chunks: ``ã: (n, I)`` the
    augmented inputs and ``d: (m, n, O)`` the backpropagated factor columns of the chunk's ``n`` examples;
    ``statistic`` returns a tuple of arrays, summed entry by entry."""
    N, m = X.shape[0], factor.shape[2]
    rows = max(1, chunk_elements // (m * max(net.sizes[1:])))
    totals = None
    for n0 in range(0, N, rows):
        n1 = min(N, n0 + rows)
        pieces = backpropagated_factor(net, theta, X[n0:n1, ...], factor[n0:n1, ...])
        values = [statistic(l, a, d) for l, (a, d) in enumerate(pieces)]
        totals = values if totals is None else [tuple(x + y for x, y in zip(t, v)) for t, v in zip(totals, values)]
    return totals


class KroneckerEigenOperator(CurvatureOperator):
    r"""Block-diagonal :math:`\bigoplus_l (U_{A,l} \otimes U_{B,l}) \mathrm{diag}(f(S_l)) (U_{A,l} \otimes
    U_{B,l})^T` with :math:`f(s) = (s + \text{shift})^{\text{power}}`; ``eigen`` lists ``(U_A, U_B, S)`` per layer.

    ``power=1, shift=l2`` is the approximation itself, ``power=-1, shift=l2 + damping`` its damped inverse."""

    def __init__(self, net, theta, X, y, eigen, shift, power=1, max_directions=None):
        if getattr(net, "batch_norm", False):  # a Kronecker factor per [W; b] block has no place for gamma and beta
            raise UnsupportedModelError(f"{type(self).__name__} has one Kronecker block per [W; b] layer and none for "
                                        f"batch normalization's gamma and beta: {net!r} is not supported; use the "
                                        "exact operators (Hessian, Gauss-Newton) on its eval-mode net")
        super().__init__(net, theta, X, y, max_directions)
        self.eigen, self.shift, self.power = eigen, float(shift), power

    def _values(self, S):
        return (S + self.shift) ** self.power

    def _apply(self, V):
        xp = self.xp
        k = V.shape[1]
        pieces = []
        for layer, (UA, UB, S) in zip(self.net.layers, self.eigen):
            X = xp.reshape(V[layer.start:layer.stop, :].T, (k, layer.fan_in + 1, layer.fan_out))  # (k, I, O)
            Y = xp.matmul(xp.matmul(UA.T, X), UB) * self._values(S)  # rotate in, scale: (k, I, O)
            pieces.append(xp.reshape(xp.matmul(xp.matmul(UA, Y), UB.T), (k, -1)))  # rotate back
        return xp.concat(pieces, axis=1).T

    def diagonal(self):
        xp = self.xp
        return xp.concat([xp.reshape((UA * UA) @ self._values(S) @ (UB * UB).T, (-1,)) for UA, UB, S in self.eigen])

    def trace(self):
        return float(sum(self.xp.sum(self._values(S)) for _, _, S in self.eigen))

    def eigenvalues(self):
        """``(P,)`` NumPy, descending: every eigenvalue in closed form (the blocks' :math:`f(S)`), no ``eigh``."""
        values = [to_numpy(self.xp.reshape(self._values(S), (-1,))) for _, _, S in self.eigen]
        return np.sort(np.concatenate(values))[::-1]

    def eigenpairs(self, k):
        """The ``k`` largest eigenvalues ``(k,)`` (NumPy, descending) and their eigenvectors ``(P, k)`` (on theta's
        device), in closed form: eigenvalue ``S[i, o]`` of layer l has the vector ``kron(U_A[:, i], U_B[:, o])`` in
        the layer's rows, zero elsewhere. Ties are broken by layer, then row-major position."""
        xp = self.xp
        values = np.concatenate([to_numpy(xp.reshape(self._values(S), (-1,))) for _, _, S in self.eigen])
        order = np.argsort(-values, kind="stable")[:k]
        vectors = xp.zeros((self.shape[0], order.size), dtype=self.theta.dtype, device=device_of(self.theta))
        offsets = np.cumsum([0] + [layer.size for layer in self.net.layers])  # layer l's eigenvalues start here
        for column, index in enumerate(order):
            l = int(np.searchsorted(offsets, index, side="right")) - 1
            layer, (UA, UB, _) = self.net.layers[l], self.eigen[l]
            i, o = divmod(int(index - offsets[l]), layer.fan_out)
            vectors[layer.start:layer.stop, column] = xp.reshape(UA[:, i][:, None] * UB[:, o][None, :], (-1,))
        return values[order], vectors

    def to_dense(self):
        self._check_dense_fits()
        xp = self.xp
        P = self.shape[0]
        dense = xp.zeros((P, P), dtype=self.theta.dtype, device=device_of(self.theta))
        for layer, (UA, UB, S) in zip(self.net.layers, self.eigen):
            U = xp.reshape(UA[:, None, :, None] * UB[None, :, None, :], (layer.size, layer.size))  # kron(UA, UB)
            dense[layer.start:layer.stop, layer.start:layer.stop] = (U * xp.reshape(self._values(S), (1, -1))) @ U.T
        return dense

    def inverse(self, damping=0.0):
        r"""The damped inverse :math:`(\text{this} + \delta I)^{-1}` as an operator of the same kind: the same
        eigenbasis, eigenvalues :math:`1 / (S + \lambda + \delta)` (exact, not the factored :math:`\pi`-damping
        of Martens & Grosse 2015). ``ConfigError`` unless every :math:`S + \lambda + \delta > 0`."""
        if self.power != 1:
            raise ConfigError("inverse() takes the approximation itself, not an inverse")
        shift = self.shift + float(damping)
        smallest = min(float(self.xp.min(S)) for _, _, S in self.eigen) + shift
        largest = max(float(self.xp.max(S)) for _, _, S in self.eigen) + shift
        if not smallest > 1e-12 * max(abs(largest), 1.0):
            raise ConfigError(f"{type(self).__name__} + {float(damping):g} I is singular or indefinite (smallest "
                              f"eigenvalue {smallest:.3g}, with l2 {self.net.l2:g}); pass damping > 0, e.g. "
                              f"damping={1e-3 * max(largest, 1e-12):.3g} (1e-3 of the largest eigenvalue)")
        return KroneckerEigenOperator(self.net, self.theta, self.X, self.y, self.eigen, shift, power=-1,
                                      max_directions=self.max_directions)
