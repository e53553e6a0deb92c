r"""Loss landscapes as arrays: Keskar's parametric (interpolation) plot, and 1-D / 2-D slices through
``theta`` along random filter-normalized directions (Li et al. 2018) or top Hessian eigenvectors, each
with the exact quadratic model beside the true curve. Nothing here draws; ``minisgd.plotting`` does.

Losses are ``net.loss`` (mean loss plus the L2 term, on both splits, so train and test curves differ by
the data only); accuracies are ``net.accuracy`` (classification only, else ``None``).
"""
from dataclasses import dataclass

import numpy as np

from ..backend import device_of, namespace, to_numpy
from .eigen import hessian_spectrum


# ---- evaluation on a split, in chunks ------------------------------------------------------------------

def _split_arrays(data):
    """``(X_train, y_train, X_test, y_test)`` from a ``Dataset``, a 4-tuple, or a 2-tuple (no test split)."""
    if hasattr(data, "X_train"):
        return data.X_train, data.y_train, data.X_test, data.y_test
    data = tuple(data)
    if len(data) == 2:
        return data[0], data[1], None, None
    if len(data) == 4:
        return data
    raise ValueError("data must be a minisgd.data.Dataset, (X_train, y_train) or "
                     f"(X_train, y_train, X_test, y_test); got a sequence of {len(data)}")


def evaluate(net, theta, X, y, chunk=8192):
    """``(loss, accuracy)`` of ``theta`` on ``(X, y)``: ``net.loss`` and ``net.accuracy`` (``None`` for
    regression), computed ``chunk`` examples at a time so that a large split fits in memory."""
    N = X.shape[0]
    if N <= chunk:
        acc = net.accuracy(theta, X, y) if net.loss_fn.name == "cross_entropy" else None
        return net.loss(theta, X, y), acc
    xp = namespace(theta)
    total, correct = 0.0, 0.0
    for start in range(0, N, chunk):
        stop = min(start + chunk, N)  # the array API leaves out-of-range slice ends unspecified
        Xc, yc = X[start:stop, ...], y[start:stop, ...]
        total += float(xp.sum(net.per_example_losses(theta, Xc, yc)))
        if net.loss_fn.name == "cross_entropy":
            correct += net.accuracy(theta, Xc, yc) * Xc.shape[0]
    loss = total / N + (0.5 * net.l2 * float(xp.sum(theta * theta)) if net.l2 else 0.0)
    return loss, (correct / N if net.loss_fn.name == "cross_entropy" else None)


# ---- Keskar's parametric plot ---------------------------------------------------------------------------

@dataclass
class Interpolation:
    r"""Loss and accuracy along :math:`\theta(\alpha) = \alpha\,\theta_b + (1 - \alpha)\,\theta_a`.

    alphas: ``(A,)``; train_loss, test_loss, train_accuracy, test_accuracy: ``(A,)`` each, ``None`` when
    the split or the accuracy does not exist. ``alpha = 0`` is ``theta_a``, ``alpha = 1`` is ``theta_b``.
    """

    alphas: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray = None
    train_accuracy: np.ndarray = None
    test_accuracy: np.ndarray = None


def interpolate(net, theta_a, theta_b, data, alphas=None, chunk=8192):
    r"""Keskar et al. 2017's parametric plot (their Figure 3): loss and accuracy on train and test along
    the line through two solutions, :math:`\theta(\alpha) = \alpha\,\theta_b + (1-\alpha)\,\theta_a`.

    The paper writes :math:`\alpha x_l + (1 - \alpha) x_s`, so pass the small-batch solution as
    ``theta_a`` (:math:`x_s`, at :math:`\alpha = 0`) and the large-batch one as ``theta_b``
    (:math:`x_l`, at :math:`\alpha = 1`). ``alphas`` defaults to ``linspace(-1, 2, 25)``.
    ``data``: a ``minisgd.data.Dataset``, ``(X_train, y_train, X_test, y_test)`` or ``(X_train, y_train)``.
    
    >>> import numpy as np, minisgd as ms
    >>> net = ms.MLP([3, 4, 2])
    >>> X, y = np.random.default_rng(0).standard_normal((8, 3)), np.array([0, 1] * 4)
    >>> small, large = net.init(seed=0), net.init(seed=1)
    >>> curve = interpolate(net, small, large, (X, y))       # alphas = linspace(-1, 2, 25)
    >>> float(curve.alphas[8]), bool(curve.train_loss[8] == net.loss(small, X, y))
    (0.0, True)
    """
    alphas = np.linspace(-1.0, 2.0, 25) if alphas is None else np.asarray(alphas, dtype=np.float64)
    X_tr, y_tr, X_te, y_te = _split_arrays(data)
    direction = theta_b - theta_a  # (P,)
    columns = {"train_loss": [], "train_accuracy": [], "test_loss": [], "test_accuracy": []}
    for alpha in alphas:
        theta = theta_a + float(alpha) * direction
        for split, X, y in (("train", X_tr, y_tr), ("test", X_te, y_te)):
            if X is None:
                continue
            loss, acc = evaluate(net, theta, X, y, chunk)
            columns[f"{split}_loss"].append(loss)
            columns[f"{split}_accuracy"].append(acc)
    arrays = {key: (np.asarray(v, dtype=np.float64) if v and v[0] is not None else None)
              for key, v in columns.items()}
    return Interpolation(alphas, **arrays)


# ---- directions -------------------------------------------------------------------------------------------

def filter_normalized_direction(net, theta, seed=0):
    r"""A random direction ``(P,)`` normalized filter-wise (Li et al. 2018, "Visualizing the Loss
    Landscape of Neural Nets", Sec. 4).

    For an MLP a filter is one output unit's incoming weights, i.e. a column ``W_l[:, j]``. Draw
    :math:`d \sim \mathcal N(0, I)` (``numpy.random.default_rng(seed)``), then rescale each column to
    :math:`\lVert d_{l,:,j}\rVert = \lVert W_{l,:,j}\rVert`. The bias entries are set to zero, as Li et al.
    do for biases. Slices along such directions are comparable across networks of different scale.
    """
    xp = namespace(theta)
    rng = np.random.default_rng(seed)
    theta_np = to_numpy(theta).astype(np.float64)
    d = np.zeros(net.num_params)
    for layer in net.layers:
        split = layer.start + layer.fan_in * layer.fan_out
        W = theta_np[layer.start:split].reshape(layer.fan_in, layer.fan_out)  # (n_{l-1}, n_l)
        D = rng.standard_normal(W.shape)
        D *= np.linalg.norm(W, axis=0) / np.linalg.norm(D, axis=0)  # column j to ||W[:, j]||
        d[layer.start:split] = D.ravel()  # row-major, as theta; bias entries stay 0
    return xp.asarray(d, dtype=theta.dtype, device=device_of(theta))


def _directions(net, theta, X, y, directions, num, seed):
    """``(P, num)`` directions: "random" (filter-normalized), "eigen" (top Hessian eigenvectors, unit norm,
    with their eigenvalues) or an explicit ``(P,)`` / ``(P, num)`` array."""
    xp = namespace(theta)
    if isinstance(directions, str):
        if directions == "random":
            cols = [filter_normalized_direction(net, theta, seed + i) for i in range(num)]
            return xp.stack(cols, axis=1), "random"
        if directions == "eigen":
            spec = hessian_spectrum(net, theta, X, y, k=num, which="largest", method="auto",
                                    return_vectors=True, seed=seed)
            return spec.vectors, "eigen"
        raise ValueError(f"directions must be 'random', 'eigen' or an array, got {directions!r}")
    D = xp.asarray(directions, dtype=theta.dtype, device=device_of(theta))
    D = xp.reshape(D, (net.num_params, -1))  # (P,) -> (P, 1)
    if D.shape[1] != num:
        raise ValueError(f"expected {num} direction(s) of length {net.num_params}, got shape {tuple(D.shape)}")
    return D, "given"


# ---- slices with their quadratic model ----------------------------------------------------------------

@dataclass
class LandscapeSlice:
    r"""The loss on a 1-D or 2-D slice :math:`\theta + \sum_j t_j d_j` and its quadratic model
    :math:`q(t) = f + t \cdot (D^T g) + \frac12 t^T (D^T H D)\, t` (exact gradient and HVPs at ``theta``).

    coords: ``(ts,)`` for 1-D, ``(ts, ss)`` for 2-D (axis 0 of the grids follows ``ts``, axis 1 ``ss``).
    loss, quadratic: ``(len(ts),)`` or ``(len(ts), len(ss))``.
    directions: ``(P, k)``; gradient: ``(k,)`` :math:`D^T g`; curvature: ``(k, k)`` :math:`D^T H D`.
    kind: "random" (filter-normalized), "eigen" or "given".
    """

    coords: tuple
    loss: np.ndarray
    quadratic: np.ndarray
    loss0: float
    gradient: np.ndarray
    curvature: np.ndarray
    directions: object
    kind: str


def _quadratic_terms(net, theta, X, y, D):
    """``f(theta)``, ``D^T g: (k,)`` and ``D^T H D: (k, k)`` from one gradient and one batched HVP."""
    f0, g = net.loss_and_grad(theta, X, y)
    HD = net.hvp(theta, X, y, D)  # (P, k)
    DHD = to_numpy(D.T @ HD).astype(np.float64)  # (k, k)
    return f0, to_numpy(D.T @ g).astype(np.float64), 0.5 * (DHD + DHD.T)  # symmetric up to rounding


def slice_1d(net, theta, X, y, direction="random", ts=None, seed=0):
    r"""Loss along :math:`\theta + t d` for ``t`` in ``ts`` (default ``linspace(-1, 1, 41)``), beside
    :math:`q(t) = f + t\, g \cdot d + \frac{t^2}{2} d^T H d`.

    direction: "random" (``filter_normalized_direction(net, theta, seed)``), "eigen" (the top Hessian
    eigenvector, unit norm; sign as returned by the eigensolver) or a ``(P,)`` array.
    """
    ts = np.linspace(-1.0, 1.0, 41) if ts is None else np.asarray(ts, dtype=np.float64)
    D, kind = _directions(net, theta, X, y, direction, 1, seed)
    d = D[:, 0]
    f0, gD, DHD = _quadratic_terms(net, theta, X, y, D)
    loss = np.array([net.loss(theta + float(t) * d, X, y) for t in ts])
    quadratic = f0 + ts * gD[0] + 0.5 * ts ** 2 * DHD[0, 0]
    return LandscapeSlice((ts,), loss, quadratic, f0, gD, DHD, D, kind)


def slice_2d(net, theta, X, y, directions="random", ts=None, ss=None, seed=0):
    r"""Loss on the plane :math:`\theta + t d_1 + s d_2` over the grid ``ts x ss`` (defaults
    ``linspace(-1, 1, 21)`` each), beside :math:`q(t, s) = f + t g_1 + s g_2 + \frac12 (t^2 h_{11} +
    2 t s h_{12} + s^2 h_{22})`, :math:`g_j = g \cdot d_j`, :math:`h_{ij} = d_i^T H d_j`.

    directions: "random" (two filter-normalized directions, seeds ``seed`` and ``seed + 1``), "eigen" (the
    top two Hessian eigenvectors) or a ``(P, 2)`` array.
    """
    ts = np.linspace(-1.0, 1.0, 21) if ts is None else np.asarray(ts, dtype=np.float64)
    ss = np.linspace(-1.0, 1.0, 21) if ss is None else np.asarray(ss, dtype=np.float64)
    D, kind = _directions(net, theta, X, y, directions, 2, seed)
    d1, d2 = D[:, 0], D[:, 1]
    f0, gD, DHD = _quadratic_terms(net, theta, X, y, D)
    loss = np.array([[net.loss(theta + float(t) * d1 + float(s) * d2, X, y) for s in ss] for t in ts])
    T, S = np.meshgrid(ts, ss, indexing="ij")  # (len(ts), len(ss)) each
    quadratic = (f0 + T * gD[0] + S * gD[1]
                 + 0.5 * (T ** 2 * DHD[0, 0] + 2 * T * S * DHD[0, 1] + S ** 2 * DHD[1, 1]))
    return LandscapeSlice((ts, ss), loss, quadratic, f0, gD, DHD, D, kind)
