r"""Output factors: the per-example ``F_n: (K, m)`` whose :math:`\frac1N \sum_n J_n^T F_n F_n^T J_n` is a curvature.

Every curvature of the Gauss-Newton family is such a sandwich; they differ in the output-space matrix
:math:`M_n = F_n F_n^T` (``kind``):

* ``gauss_newton``: a square root of the loss Hessian (``loss.hessian_factor``): :math:`M_n = A_n`, exactly;
* ``fisher``: :math:`\sqrt{p(c)}\, \nabla_z \ell(z_n, c)` for every class c:
  :math:`M_n = E_{c \sim p}[g g^T] = A_n`;
* ``mc``: :math:`\nabla_z \ell(z_n, y_s) / \sqrt S` for S labels :math:`y_s \sim p(y | z_n)`: unbiased for
  :math:`A_n`;
* ``empirical``: :math:`\nabla_z \ell(z_n, y_n)`, the data label's gradient: :math:`M_n = g_n g_n^T`.

``p(y | z)`` is the model's predictive distribution whose negative log-likelihood is the loss: the softmax for the
cross-entropy, :math:`\mathcal N(z, I)` for the half squared error. For both the true Fisher equals the
Gauss-Newton matrix (the loss is the negative log-likelihood of an exponential family in its natural parameters;
Martens 2020, *New insights and perspectives on the natural gradient method*, sec. 9.2); ``fisher`` reaches it by
the expectation over labels of the score's outer product, a route independent of the loss Hessian.
"""
import math

import numpy as np

from ...backend import device_of, namespace, to_device, to_numpy
from ...core.batchnorm import BatchNormEval, refuse_in_training_mode
from ...errors import ShapeError
from ._base import CHUNK_ELEMENTS, CurvatureOperator, _device

KINDS = ("gauss_newton", "fisher", "mc", "empirical")


def _labels(xp, like, values):
    """Integer labels ``values`` (host) on ``like``'s device."""
    return xp.asarray(to_device(np.ascontiguousarray(values), _device(like)), device=device_of(like))


def sample_targets(loss_fn, Z, num_samples, rng):
    """``num_samples`` target arrays drawn from the model's predictive distribution at outputs ``Z: (N, K)``:
    labels ``(N,)`` from the softmax (cross-entropy) or ``Z + N(0, I)`` (mse). Draws are made on the host from
    ``rng`` (a NumPy Generator), so a seed gives the same targets on every device."""
    xp = namespace(Z)
    N, K = Z.shape
    if loss_fn.name == "cross_entropy":
        cdf = np.cumsum(to_numpy(loss_fn.probabilities(Z)), axis=1)  # (N, K)
        u = rng.random((num_samples, N))
        labels = np.minimum((cdf[None, :, :] < u[:, :, None]).sum(axis=2), K - 1)  # inverse CDF: (S, N)
        return [_labels(xp, Z, labels[s]) for s in range(num_samples)]
    noise = rng.standard_normal((num_samples, N, K))
    return [Z + xp.asarray(to_device(noise[s], _device(Z)), dtype=Z.dtype, device=device_of(Z))
            for s in range(num_samples)]


def output_factor(net, theta, X, y, kind, mc_samples=1, seed=0):
    """``(N, K, m)``: the output factor of ``kind`` (see the module docstring) at ``theta`` on ``X``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if getattr(net, "batch_norm", False) and not isinstance(net, BatchNormEval):
        refuse_in_training_mode(f"the output factor ({kind}) and its curvature")
    xp, loss_fn = namespace(theta, X), net.loss_fn
    Z = net.forward(theta, X)  # (N, K)
    N, K = Z.shape
    if kind == "gauss_newton":
        return loss_fn.hessian_factor(Z, y)
    if kind == "empirical":
        if y is None:
            raise ShapeError("the empirical Fisher takes the data's labels: pass the targets y")
        return loss_fn.grad(Z, y)[:, :, None]
    if kind == "fisher" and loss_fn.name == "mse":  # E_y[(z - y)(z - y)^T] = I for y ~ N(z, I)
        return xp.broadcast_to(xp.eye(K, dtype=Z.dtype, device=device_of(Z)), (N, K, K))
    if kind == "fisher":  # the score at every label c, weighted by sqrt p(c)
        p = loss_fn.probabilities(Z)  # (N, K)
        columns = [loss_fn.grad(Z, _labels(xp, Z, np.full(N, c))) * xp.sqrt(p[:, c:c + 1]) for c in range(K)]
        return xp.stack(columns, axis=2)
    if not (isinstance(mc_samples, int) and mc_samples >= 1):
        raise ValueError(f"mc_samples must be an integer >= 1, got {mc_samples!r}")
    targets = sample_targets(loss_fn, Z, mc_samples, np.random.default_rng(seed))
    return xp.stack([loss_fn.grad(Z, t) for t in targets], axis=2) / math.sqrt(mc_samples)


class FactorOperator(CurvatureOperator):
    r""":math:`\frac1N \sum_n J_n^T F_n F_n^T J_n + \lambda I` for an output factor ``factor: (N, K, m)``.

    Products by the net's ``factor_vector_product`` (:func:`minisgd.core.gauss_newton.factor_vector_product`: a
    forward R-pass and one backward pass; a BN net in eval mode through its fold, a training-mode one refused);
    the dense matrix by the explicit output Jacobian (``net.output_jacobian``), a second route."""

    def __init__(self, net, theta, X, y, factor, max_directions=None):
        super().__init__(net, theta, X, y, max_directions)
        self.factor = factor

    def _apply(self, V):
        out = self.net.factor_vector_product(self.theta, self.X, self.factor, V)
        return out + self.net.l2 * V if self.net.l2 else out

    def diagonal(self):
        return self.net.factor_diagonal(self.theta, self.X, self.factor) + self.net.l2

    def to_dense(self):
        self._check_dense_fits()
        xp, net = self.xp, self.net
        N, K, P = self.X.shape[0], net.sizes[-1], net.num_params
        rows = max(1, CHUNK_ELEMENTS // (K * P))  # the Jacobian of a chunk: (rows, K, P)
        dense = xp.zeros((P, P), dtype=self.theta.dtype, device=device_of(self.theta))
        for n0 in range(0, N, rows):
            n1 = min(N, n0 + rows)
            J = net.output_jacobian(self.theta, self.X[n0:n1, ...])  # (n, K, P)
            FJ = xp.matmul(xp.permute_dims(self.factor[n0:n1, ...], (0, 2, 1)), J)  # (n, m, P)
            FJ = xp.reshape(FJ, (-1, P))  # (n m, P)
            dense = dense + FJ.T @ FJ
        dense = dense / N
        return dense + net.l2 * xp.eye(P, dtype=dense.dtype, device=device_of(dense)) if net.l2 else dense
