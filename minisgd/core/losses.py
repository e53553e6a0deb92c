r"""Per-example losses of the network outputs, with their gradient and Hessian w.r.t. the outputs.

For outputs ``Z: (N, K)`` and targets ``y``, every loss gives

* ``value(Z, y)``: ``(N,)``, the per-example loss :math:`\ell_n`;
* ``grad(Z, y)``: ``(N, K)``, :math:`\partial \ell_n / \partial z_n`;
* ``value_and_grad(Z, y)``: both, sharing their intermediate values (what the gradient of the mean loss needs);
* ``hessian(Z, y)``: ``(N, K, K)``, :math:`A_n = \partial^2 \ell_n / \partial z_n^2`;
* ``hessian_factor(Z, y)``: ``(N, K, K)``, a square root :math:`R_n` with :math:`A_n = R_n R_n^T`;
* ``hessian_vector_product(Z, y, R)``: :math:`A_n r_n` for ``R: (N, K)`` or ``(k, N, K)`` without
  forming ``A`` (what the R-operator needs).

The network's loss is the mean over examples; the 1/N factor is applied by the caller, not here.
"""
from ..backend import device_of, namespace
from ..errors import LabelError, ShapeError


# A row reduction of a narrow (N, K) array runs NumPy's reduce loop once per row (84 us for a (2048, 10) max);
# K column-wise maxima and a matrix-vector product with ones take a quarter of that while K is small.
_NARROW = 64


def _row_max(Z):
    r"""``(N,)``: :math:`\max_j Z_{nj}` of ``Z: (N, K)``."""
    xp = namespace(Z)
    if Z.shape[1] > _NARROW:
        return xp.max(Z, axis=1)
    m = Z[:, 0]
    for j in range(1, Z.shape[1]):
        m = xp.maximum(m, Z[:, j])
    return m


def _row_sum(A):
    r"""``(...)``: :math:`\sum_j A_{...j}` of ``A: (..., K)``, as one matrix-vector product (a BLAS call)."""
    xp = namespace(A)
    return A @ xp.ones(A.shape[-1], dtype=A.dtype, device=device_of(A))


class CrossEntropyLoss:
    r"""Softmax cross-entropy on integer labels ``y: (N,)`` in ``[0, K)``.

    .. math::
        \ell = \log\sum_j e^{z_j} - z_y, \qquad \nabla \ell = p - e_y, \qquad A = \mathrm{diag}(p) - p p^T,

    with :math:`p = \mathrm{softmax}(z)`. The log-sum-exp subtracts :math:`\max_j z_j` first, so logits of
    any size are safe. ``A`` is positive semi-definite with :math:`A \mathbf{1} = 0`.
    """

    name = "cross_entropy"

    def check_targets(self, y, N, K):
        """Raise ``LabelError`` unless ``y`` holds ``N`` integer labels in ``[0, K)``."""
        xp = namespace(y)
        if y.ndim != 1 or y.shape[0] != N:
            raise ShapeError(f"cross_entropy needs integer labels of shape ({N},), got shape {tuple(y.shape)}")
        if not xp.isdtype(y.dtype, "integral"):
            raise LabelError(f"cross_entropy needs integer class labels, got dtype {y.dtype}; "
                             "convert with y.astype(int) if they are whole numbers")
        if N and (bool(xp.any(y < 0)) or bool(xp.any(y >= K))):
            raise LabelError(f"labels must lie in [0, {K}) for a network with {K} outputs; "
                             f"got min {int(xp.min(y))}, max {int(xp.max(y))}")
        return y

    def _softmax_parts(self, Z):
        """``(shifted, e, s)``: ``shifted = Z - max_j z_j`` (N, K), ``e = exp(shifted)`` (N, K), row sums ``s`` (N,)."""
        xp = namespace(Z)
        shifted = Z - _row_max(Z)[:, None]
        e = xp.exp(shifted)
        return shifted, e, _row_sum(e)

    def _log_softmax(self, Z):
        shifted, _, s = self._softmax_parts(Z)
        return shifted - namespace(Z).log(s)[:, None]

    def _one_hot(self, y, Z):
        xp = namespace(Z)
        classes = xp.arange(Z.shape[1], device=device_of(Z))
        return xp.astype(y[:, None] == classes[None, :], Z.dtype)  # (N, K)

    def value(self, Z, y):
        xp = namespace(Z)
        shifted, _, s = self._softmax_parts(Z)
        return xp.log(s) - _row_sum(self._one_hot(y, Z) * shifted)

    def probabilities(self, Z):
        """Softmax of the logits, ``(N, K)``."""
        _, e, s = self._softmax_parts(Z)
        return e / s[:, None]

    def grad(self, Z, y):
        p = self.probabilities(Z)
        p -= self._one_hot(y, Z)  # in place: p is ours
        return p

    def value_and_grad(self, Z, y):
        """``(value(Z, y), grad(Z, y))`` from one softmax and one one-hot (half the passes of the two calls)."""
        xp = namespace(Z)
        shifted, e, s = self._softmax_parts(Z)
        one_hot = self._one_hot(y, Z)
        e /= s[:, None]  # in place: e becomes p
        e -= one_hot
        return xp.log(s) - _row_sum(one_hot * shifted), e

    def hessian(self, Z, y):
        xp = namespace(Z)
        p = self.probabilities(Z)
        eye = xp.eye(Z.shape[1], dtype=Z.dtype, device=device_of(Z))
        return p[:, :, None] * eye - p[:, :, None] * p[:, None, :]  # (N, K, K)

    def hessian_factor(self, Z, y):
        r"""``R: (N, K, K)`` with :math:`A = R R^T`: :math:`R = \mathrm{diag}(\sqrt p) - p \sqrt p^T`
        (expand: :math:`R R^T = \mathrm{diag}(p) - 2 p p^T + p (\textstyle\sum_j p_j) p^T`, and the p sum to 1)."""
        xp = namespace(Z)
        p = self.probabilities(Z)
        sqrt_p = xp.sqrt(p)
        eye = xp.eye(Z.shape[1], dtype=Z.dtype, device=device_of(Z))
        return sqrt_p[:, :, None] * eye - p[:, :, None] * sqrt_p[:, None, :]

    def hessian_vector_product(self, Z, y, R):
        p = self.probabilities(Z)  # (N, K) broadcasts against R: (..., N, K)
        pR = p * R
        return pR - p * _row_sum(pR)[..., None]


class SquaredLoss:
    r"""Half squared error on real targets ``y: (N, K)`` (or ``(N,)`` when ``K == 1``).

    .. math::
        \ell = \tfrac12 \lVert z - y \rVert^2, \qquad \nabla \ell = z - y, \qquad A = I_K.

    The factor 1/2 makes ``A`` the identity; PyTorch's ``MSELoss`` (mean over N and K) is this times 2/K.
    """

    name = "mse"

    def check_targets(self, y, N, K):
        """Raise unless ``y`` is real with shape ``(N, K)`` (or ``(N,)`` when K == 1); returns ``(N, K)``."""
        xp = namespace(y)
        if y.ndim == 1 and K == 1 and y.shape[0] == N:
            y = xp.reshape(y, (N, 1))
        if y.ndim != 2 or tuple(y.shape) != (N, K):
            raise ShapeError(f"mse needs targets of shape ({N}, {K}), got shape {tuple(y.shape)}")
        if not xp.isdtype(y.dtype, "real floating"):
            raise LabelError(f"mse needs real-valued targets, got dtype {y.dtype}")
        if not bool(xp.all(xp.isfinite(y))):
            raise LabelError("mse targets contain NaN or inf; clean the data first")
        return y

    @staticmethod
    def _residuals(Z, y):
        # (N,) targets against (N, 1) outputs would broadcast to (N, N); make them a column first.
        return Z - (namespace(y).reshape(y, (-1, 1)) if y.ndim == 1 else y)

    def value(self, Z, y):
        xp = namespace(Z)
        return 0.5 * xp.sum(self._residuals(Z, y) ** 2, axis=1)

    def grad(self, Z, y):
        return self._residuals(Z, y)

    def value_and_grad(self, Z, y):
        """``(value(Z, y), grad(Z, y))`` from one residual."""
        r = self._residuals(Z, y)
        return 0.5 * namespace(Z).sum(r * r, axis=1), r

    def hessian(self, Z, y):
        xp = namespace(Z)
        N, K = Z.shape
        return xp.broadcast_to(xp.eye(K, dtype=Z.dtype, device=device_of(Z)), (N, K, K))

    def hessian_factor(self, Z, y):
        """``R = I``: (N, K, K), a square root of ``A = I``."""
        return self.hessian(Z, y)

    def hessian_vector_product(self, Z, y, R):
        return R


_LOSSES = {"cross_entropy": CrossEntropyLoss, "mse": SquaredLoss}
NAMES = tuple(_LOSSES)


def get(name):
    """The loss called ``name`` (one of ``NAMES``)."""
    if isinstance(name, (CrossEntropyLoss, SquaredLoss)):
        return name
    try:
        return _LOSSES[name]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(NAMES)}") from None
