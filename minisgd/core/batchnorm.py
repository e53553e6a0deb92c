r"""Batch normalization (Ioffe & Szegedy 2015) in the MLP: training mode on batch statistics, eval mode as a fold.

A batch-normalized hidden layer l computes, as Keskar et al.'s F1 and ``torch.nn.BatchNorm1d`` after a Linear,

.. math::
    z_l = a_{l-1} W_l + b_l, \qquad \hat z_l = (z_l - \mu_l)\, r_l, \quad r_l = (\sigma^2_l + \epsilon)^{-1/2},
    \qquad u_l = \gamma_l \odot \hat z_l + \beta_l, \qquad a_l = \sigma(u_l),

per unit; the output layer is a plain Linear. ``theta`` holds each hidden layer's :math:`[W_l; b_l]` followed by
its :math:`\gamma_l, \beta_l` (``net.bn_layers``); the statistics :math:`(\mu_l, \sigma^2_l)` are not parameters.

**Training mode**: :math:`\mu, \sigma^2` are the batch mean and biased variance of :math:`z_l`, so every output
depends on the whole batch. The gradient backpropagates through them exactly: with
:math:`\bar g = \partial L/\partial \hat z` for the batch loss L,

.. math::
    \partial L/\partial z = r \odot \bigl(\bar g - \mathrm{mean}_n \bar g - \hat z \odot \mathrm{mean}_n(\bar g \odot
    \hat z)\bigr).

Per-example gradients, per-example HVPs, Hessians and Gauss-Newton matrices couple the examples there and are
refused (:class:`~minisgd.errors.BatchNormModeError`). The running statistics follow ``torch``: momentum 0.1, the
unbiased batch variance (:func:`update_running_statistics`).

**Eval mode** (:class:`BatchNormEval`, ``net.eval_mode(stats)``): with fixed :math:`(\mu, \sigma^2)` each BN layer is
a per-unit affine map, so the network *is* a plain MLP with the **folded** parameters :math:`\theta' = F(\theta)`,

.. math::
    W'_l = W_l\, \mathrm{diag}(s_l), \qquad b'_l = (b_l - \mu_l) \odot s_l + \beta_l, \qquad s_l = \gamma_l \odot r_l,

and every derivative follows from the plain network's by the chain rule through :math:`F`. With
:math:`T = \partial F / \partial \theta` (``(P', P)``, applied in O(P): :func:`fold_jvp`, :func:`fold_vjp`) and the
plain gradient :math:`g'`,

.. math::
    \nabla L = T^T g', \qquad H = T^T H' T + D(g'), \qquad G = T^T G' T, \qquad J_n = J'_n T,

where :math:`F` is bilinear in :math:`(W, \gamma)` and :math:`(b, \gamma)`, so its second derivative pairs
:math:`\gamma_{l,o}` with the weights and bias of the same unit only (:func:`fold_curvature`):

.. math::
    D_{W_l[i,o],\, \gamma_{l,o}} = r_{l,o}\, g'_{W_l[i,o]}, \qquad D_{b_{l,o},\, \gamma_{l,o}} = r_{l,o}\, g'_{b_{l,o}}.

The Gauss-Newton matrix has no such term (the outputs' Jacobian is :math:`J' T`); the residual is :math:`T^T S' T + D`.
On the diagonal :math:`D` vanishes, and :math:`H_{\gamma_o \gamma_o} = \frac1N \sum_n \hat z_{n,o}^2 C_{n,oo}`
(:math:`C = \partial^2 \ell / \partial u^2`, the plain network's curvature at its pre-activations).
"""
from dataclasses import dataclass

from ..backend import device_of, namespace
from ..errors import BatchNormModeError, NonFiniteError, ShapeError
from . import backprop, gauss_newton, hessian, hvp
from .kernels import bias_activation
from .passes import augmented, forward_pass

#: torch.nn.BatchNorm1d's default: running = (1 - m) running + m batch.
MOMENTUM = 0.1


@dataclass(frozen=True)
class BatchNormLayer:
    """Where BN layer ``name``'s parameters sit in ``theta``: ``gamma = theta[start:start + width]``, ``beta`` next."""

    name: str
    width: int
    start: int
    stop: int


# ---- layouts ------------------------------------------------------------------------------------------------------

def split_rows(net, Vk):
    """Rows ``Vk: (k, P)`` in theta's layout, per layer: ``[(W: (k, n_{l-1}, n_l), b: (k, n_l)), ...]`` and
    ``[(gamma: (k, n_l), beta: (k, n_l)), ...]`` (one per hidden layer)."""
    xp = namespace(Vk)
    k = Vk.shape[0]
    linear = []
    for layer in net.layers:
        split = layer.start + layer.fan_in * layer.fan_out
        linear.append((xp.reshape(Vk[:, layer.start:split], (k, layer.fan_in, layer.fan_out)), Vk[:, split:layer.stop]))
    norm = [(Vk[:, bn.start:bn.start + bn.width], Vk[:, bn.start + bn.width:bn.stop]) for bn in net.bn_layers]
    return linear, norm


def normalization_params(net, theta):
    """``[(gamma_l: (n_l,), beta_l: (n_l,)), ...]`` for the hidden layers, views into ``theta``."""
    return [(theta[bn.start:bn.start + bn.width], theta[bn.start + bn.width:bn.stop]) for bn in net.bn_layers]


def split_statistics(net, stats):
    """``[(mu_l: (n_l,), var_l: (n_l,)), ...]`` from the flat statistics ``(S,)``, S = 2 * sum of hidden widths."""
    out, start = [], 0
    for bn in net.bn_layers:
        out.append((stats[start:start + bn.width], stats[start + bn.width:start + 2 * bn.width]))
        start += 2 * bn.width
    return out


def initial_statistics(net, dtype="float64", device="cpu"):
    """``(S,)``: the running statistics before any batch, mean 0 and variance 1 (as ``torch``)."""
    from ..backend import device_namespace
    xp = device_namespace(device)
    pieces = []
    for bn in net.bn_layers:
        pieces += [xp.zeros(bn.width, dtype=dtype), xp.ones(bn.width, dtype=dtype)]
    return xp.concat(pieces)


def check_statistics(net, theta, stats):
    """``stats`` validated: ``(S,)`` on theta's library, finite, variances >= 0; cast to theta's dtype."""
    S = net.num_statistics
    try:
        xp = namespace(theta, stats)
    except TypeError as exc:
        raise TypeError(f"the running statistics and theta must come from the same array library and device ({exc})") \
            from None
    if stats.ndim != 1 or stats.shape[0] != S:
        raise ShapeError(f"the running statistics of {net!r} have shape ({S},) (mean and variance of each hidden "
                         f"unit, layer after layer, as net.initial_statistics() returns), got {tuple(stats.shape)}")
    if not bool(xp.all(xp.isfinite(stats))):
        raise NonFiniteError("the running statistics contain NaN or inf; take them from a finite training run")
    if any(bool(xp.any(var < 0)) for _, var in split_statistics(net, stats)):
        raise ValueError("the running variances must be >= 0; are the means and variances swapped?")
    return stats if stats.dtype == theta.dtype else xp.astype(stats, theta.dtype)


# ---- training mode ------------------------------------------------------------------------------------------------

def batch_statistics(z):
    """``(mu: (n,), var: (n,))``: the batch mean and biased variance of ``z: (N, n)`` (what normalizes in training)."""
    xp = namespace(z)
    mu = xp.mean(z, axis=0)
    centered = z - mu
    return mu, xp.mean(centered * centered, axis=0)


@dataclass
class TrainForward:
    """What the training-mode forward pass keeps, per layer: inputs ``a_{l-1}``, and for hidden layers the
    normalized ``zhat_l``, ``r_l = (var_l + eps)^{-1/2}`` and ``sigma'(u_l)``; the outputs ``z_L`` and the batch
    statistics ``(S,)`` (means and biased variances)."""

    inputs: list
    normalized: list
    inv_std: list
    dact: list
    outputs: object
    statistics: object


def train_forward(net, theta, X):
    """Run the BN net on the batch ``X: (N, d)`` with batch statistics (``N >= 2``)."""
    xp = namespace(theta, X)
    if X.shape[0] < 2:
        raise ShapeError("batch normalization in training mode needs at least 2 examples per batch (the variance of "
                         "one is zero); use net.eval_mode(stats) for single examples")
    linear, norm = net.unflatten(theta), normalization_params(net, theta)
    fwd = TrainForward([], [], [], [], None, None)
    stats, a = [], X
    for l, (W, b) in enumerate(linear):
        fwd.inputs.append(a)
        z = a @ W + b
        if l == len(linear) - 1:
            fwd.outputs = z
            break
        mu, var = batch_statistics(z)
        r = 1.0 / xp.sqrt(var + net.bn_eps)
        zhat = (z - mu) * r
        gamma, beta = norm[l]
        _, a, da = bias_activation(zhat * gamma, beta, net.activation)
        fwd.normalized.append(zhat)
        fwd.inv_std.append(r)
        fwd.dact.append(da)
        stats += [mu, var]
    fwd.statistics = xp.concat(stats)
    return fwd


def train_backward(net, theta, fwd, seed):
    r"""``(P,)``: the gradient of a batch loss whose derivative w.r.t. the outputs is ``seed: (N, K)``, through
    the batch statistics (the module docstring's formula)."""
    xp = namespace(theta)
    linear, norm = net.unflatten(theta), normalization_params(net, theta)
    L = len(linear)
    pieces = [None] * (2 * L - 1)  # [W;b] of each layer, then (gamma, beta) after each hidden one
    delta = seed
    for l in range(L - 1, -1, -1):
        pieces[2 * l] = xp.concat([xp.reshape(fwd.inputs[l].T @ delta, (-1,)), xp.sum(delta, axis=0)])
        if l == 0:
            break
        zhat, r, gamma = fwd.normalized[l - 1], fwd.inv_std[l - 1], norm[l - 1][0]
        du = (delta @ linear[l][0].T) * fwd.dact[l - 1]  # dL/du_{l-1}: (N, n)
        pieces[2 * l - 1] = xp.concat([xp.sum(du * zhat, axis=0), xp.sum(du, axis=0)])
        dzhat = du * gamma
        delta = r * (dzhat - xp.mean(dzhat, axis=0) - zhat * xp.mean(dzhat * zhat, axis=0))
    return xp.concat(pieces)


def train_loss_and_grad(net, theta, X, y):
    r"""Training mode on the batch ``(X, y)``: the mean loss plus L2 (0-d, on theta's device), its gradient
    ``(P,)`` and the batch statistics ``(S,)`` (means, biased variances) for :func:`update_running_statistics`."""
    xp = namespace(theta, X)
    fwd = train_forward(net, theta, X)
    grad = train_backward(net, theta, fwd, net.loss_fn.grad(fwd.outputs, y) / X.shape[0])
    loss = xp.mean(net.loss_fn.value(fwd.outputs, y))
    if net.l2:
        grad = grad + net.l2 * theta
        loss = loss + 0.5 * net.l2 * xp.sum(theta * theta)
    return loss, grad, fwd.statistics


def train_weighted_gradient(net, theta, X, y, w):
    r"""``(P,)``: :math:`\nabla_\theta \sum_n w_n (\ell_n + \frac{\lambda}{2}\lVert\theta\rVert^2)` in training mode,
    each :math:`\ell_n` a function of the whole batch (through its statistics)."""
    xp = namespace(theta, X)
    fwd = train_forward(net, theta, X)
    grad = train_backward(net, theta, fwd, net.loss_fn.grad(fwd.outputs, y) * w[:, None])
    return grad + net.l2 * float(xp.sum(w)) * theta if net.l2 else grad


def update_running_statistics(net, running, batch, batch_size, momentum=MOMENTUM):
    r"""``(S,)``: :math:`(1 - m)\,\text{running} + m\,\text{batch}`, the batch variance made unbiased
    (:math:`\times B/(B-1)`) as ``torch.nn.BatchNorm1d`` does; ``batch`` as :func:`train_loss_and_grad` returns it."""
    xp = namespace(running, batch)
    unbias = []
    for bn in net.bn_layers:
        unbias += [xp.ones(bn.width, dtype=batch.dtype, device=device_of(batch)),
                   xp.full(bn.width, batch_size / (batch_size - 1.0), dtype=batch.dtype, device=device_of(batch))]
    return (1.0 - momentum) * running + momentum * (batch * xp.concat(unbias))


def refuse_in_training_mode(what):
    """Raise :class:`BatchNormModeError` for a quantity that couples the examples of a batch in training mode."""
    raise BatchNormModeError(
        f"{what} of a batch-normalized network is not defined in training mode: there every example's output "
        "depends on the whole batch through its mean and variance, so the per-example terms are coupled. Use the "
        "eval-mode network, net.eval_mode(stats) with the running statistics of the run (TrainResult.bn_stats), "
        "a function of theta alone on which every exact quantity is defined")


# ---- eval mode: the fold ------------------------------------------------------------------------------------------

def _unit_factors(net, theta, stats):
    """Per hidden layer ``(r, s, c)``: ``r = (var + eps)^{-1/2}``, ``s = gamma r``, ``c = b - mu``, each ``(n_l,)``."""
    xp = namespace(theta)
    out = []
    for (W, b), (gamma, _), (mu, var) in zip(net.unflatten(theta), normalization_params(net, theta),
                                             split_statistics(net, stats)):
        r = 1.0 / xp.sqrt(var + net.bn_eps)
        out.append((r, gamma * r, b - mu))
    return out


def fold(net, theta, stats):
    r"""``theta': (P',)``, the plain network's parameters equal to the BN net in eval mode:
    :math:`W' = W \mathrm{diag}(s)`, :math:`b' = (b - \mu) s + \beta` per hidden layer, the output layer as is."""
    return fold_jvp(net, theta, stats, theta[None, :], affine=True)[0]


def fold_jvp(net, theta, stats, Vk, affine=False):
    r"""``(k, P')``: :math:`T v` for each row of ``Vk: (k, P)``,
    :math:`(V_W s + W (v_\gamma r),\; v_b s + c\, r\, v_\gamma + v_\beta)` per hidden layer (``c = b - mu``).

    ``affine=True`` with ``Vk = theta`` gives ``F(theta)`` instead (:func:`fold`): the same pieces with
    :math:`(c, \beta)` in place of the linear terms in :math:`\gamma`."""
    xp = namespace(theta, Vk)
    k = Vk.shape[0]
    (linear, norm), (W_b, _) = split_rows(net, Vk), split_rows(net, theta[None, :])
    factors = _unit_factors(net, theta, stats)
    pieces = []
    for l, (VW, vb) in enumerate(linear):
        if l == len(factors):
            pieces += [xp.reshape(VW, (k, -1)), vb]
            break
        (r, s, c), (vgamma, vbeta) = factors[l], norm[l]
        if affine:  # F(theta): W s, c s + beta
            pieces += [xp.reshape(VW * s, (k, -1)), c * s + vbeta]
            continue
        W = W_b[l][0][0]
        pieces += [xp.reshape(VW * s[None, None, :] + W[None, :, :] * (vgamma * r)[:, None, :], (k, -1)),
                   vb * s + (c * r) * vgamma + vbeta]
    return xp.concat(pieces, axis=1)


def _split_plain_rows(net, Uk):
    """Rows ``Uk: (k, P')`` in the plain layout: ``[(W': (k, n_{l-1}, n_l), b': (k, n_l)), ...]``."""
    return hvp.split_directions(net.plain, Uk)


def fold_vjp(net, theta, stats, Uk):
    r"""``(k, P)``: :math:`T^T u` for each row of ``Uk: (k, P')`` in theta's layout,
    :math:`(U_W s,\; u_b s,\; r (\textstyle\sum_i W_{io} U_{W,io} + c\, u_b),\; u_b)` per hidden layer."""
    xp = namespace(theta, Uk)
    k = Uk.shape[0]
    factors = _unit_factors(net, theta, stats)
    params = net.unflatten(theta)
    pieces = []
    for l, (UW, ub) in enumerate(_split_plain_rows(net, Uk)):
        if l == len(factors):
            pieces += [xp.reshape(UW, (k, -1)), ub]
            break
        r, s, c = factors[l]
        W = params[l][0]
        ugamma = r * (xp.sum(UW * W[None, :, :], axis=1) + c * ub)
        pieces += [xp.reshape(UW * s[None, None, :], (k, -1)), ub * s, ugamma, ub]
    return xp.concat(pieces, axis=1)


def fold_curvature(net, theta, stats, Gk, Vk):
    r"""``(k, P)``: :math:`D(g') v`, the fold's second derivative contracted with the plain gradient, for rows
    ``Gk: (k or 1, P')`` (plain gradients) and ``Vk: (k, P)``: per hidden layer
    :math:`(g'_W r v_\gamma,\; g'_b r v_\gamma,\; r(\textstyle\sum_i g'_{W,io} V_{W,io} + g'_b v_b),\; 0)`."""
    xp = namespace(theta, Vk)
    k = max(Gk.shape[0], Vk.shape[0])
    factors = _unit_factors(net, theta, stats)
    linear, norm = split_rows(net, Vk)
    pieces = []
    for l, (GW, gb) in enumerate(_split_plain_rows(net, Gk)):
        VW, vb = linear[l]
        if l == len(factors):
            pieces += [xp.zeros((k, VW.shape[1] * VW.shape[2] + vb.shape[1]), dtype=theta.dtype,
                                device=device_of(theta))]
            break
        r = factors[l][0]
        rv = r * norm[l][0]  # (k, n): r v_gamma
        dgamma = r * (xp.sum(GW * VW, axis=1) + gb * vb)
        pieces += [xp.reshape(GW * rv[:, None, :], (k, -1)), xp.broadcast_to(gb * rv, (k, rv.shape[1])), dgamma,
                   xp.zeros((k, rv.shape[1]), dtype=theta.dtype, device=device_of(theta))]
    return xp.concat(pieces, axis=1)


def _as_rows(V):
    """``V: (P,)`` or ``(P, k)`` -> ``(k, P)`` and whether it was one vector."""
    return (V[None, :], True) if V.ndim == 1 else (V.T, False)


class BatchNormEval:
    r"""A batch-normalized :class:`~minisgd.core.mlp.MLP` in eval mode at fixed running statistics ``stats: (S,)``:
    a function of ``theta`` alone, with the MLP's methods and the same signatures (so Lanczos, sharpness and the
    curvature operators take it as they take a plain net), every one computed exactly through the fold (module
    docstring) on the plain network's code. ``net.eval_mode(stats)`` makes one.
    """

    def __init__(self, net, stats):
        self.net, self.stats = net, stats
        self.plain = net.plain
        self.sizes, self.layers, self.bn_layers = net.sizes, net.layers, net.bn_layers
        self.activation, self.loss_fn, self.l2, self.num_params = net.activation, net.loss_fn, net.l2, net.num_params
        self.batch_norm, self.bn_eps = True, net.bn_eps

    def __repr__(self):
        return f"{self.net!r} in eval mode"

    @property
    def num_layers(self):
        return self.net.num_layers

    def unflatten(self, theta):
        return self.net.unflatten(theta)

    def to_torch(self, theta):
        """An ``nn.Sequential`` in eval mode with these running statistics; see ``minisgd.core.interop``."""
        from .interop import to_torch
        return to_torch(self.net, theta, self.stats)

    # ---- checks ---------------------------------------------------------------------------------------------------

    def check_inputs(self, theta, X, y=None):
        """As :meth:`MLP.check_inputs`."""
        return self.net.check_inputs(theta, X, y)

    def _checked(self, theta, X, y=None, need_targets=True):
        return self.net._checked(theta, X, y, need_targets)

    def _checked_directions(self, theta, V):
        return self.net._checked_directions(theta, V)

    def _folded(self, theta, X, y=None, need_targets=True):
        """``(theta, stats, theta', X, y)`` checked, the statistics moved to theta's dtype, the fold applied."""
        theta, X, y = self._checked(theta, X, y, need_targets)
        stats = check_statistics(self.net, theta, self.stats)
        return theta, stats, fold(self.net, theta, stats), X, y

    def _with_l2(self, theta, rows, weight=1.0):
        return rows + (self.l2 * weight) * theta[None, :] if self.l2 else rows

    # ---- values ---------------------------------------------------------------------------------------------------

    def folded(self, theta):
        """``(P',)``: the plain network's parameters (``net.plain``) equal to this one at ``theta``."""
        theta = self._checked_directions(theta, theta)  # shape and finiteness of a (P,) vector
        return fold(self.net, theta, check_statistics(self.net, theta, self.stats))

    def forward(self, theta, X):
        """Outputs ``z_L: (N, K)`` with the running statistics."""
        _, _, folded, X, _ = self._folded(theta, X, need_targets=False)
        return forward_pass(self.plain.unflatten(folded), X, self.activation, order=0).outputs

    def predict(self, theta, X):
        """Class labels ``(N,)`` for cross-entropy, outputs ``(N, K)`` for mse."""
        Z = self.forward(theta, X)
        return namespace(Z).argmax(Z, axis=1) if self.loss_fn.name == "cross_entropy" else Z

    def per_example_losses(self, theta, X, y):
        """``(N,)`` per-example losses (without the L2 term)."""
        _, _, folded, X, y = self._folded(theta, X, y)
        return self.loss_fn.value(forward_pass(self.plain.unflatten(folded), X, self.activation, order=0).outputs, y)

    def loss(self, theta, X, y):
        """Mean loss plus L2 on theta (gamma and beta included), as a float."""
        xp = namespace(theta)
        value = xp.mean(self.per_example_losses(theta, X, y))
        return float(value + 0.5 * self.l2 * xp.sum(theta * theta)) if self.l2 else float(value)

    def accuracy(self, theta, X, y):
        """Fraction of examples whose arg-max output is the label (cross-entropy only)."""
        if self.loss_fn.name != "cross_entropy":
            raise ValueError("accuracy is defined for classification (loss='cross_entropy') only")
        _, _, folded, X, y = self._folded(theta, X, y)
        return self.plain.accuracy(folded, X, y)

    # ---- first derivatives ------------------------------------------------------------------------------------------

    def loss_and_grad(self, theta, X, y):
        r"""Mean loss (float) and gradient :math:`T^T g' + \lambda\theta` ``(P,)``."""
        theta, stats, folded, X, y = self._folded(theta, X, y)
        loss, g = backprop.loss_and_grad(self.plain, folded, X, y)
        grad = self._with_l2(theta, fold_vjp(self.net, theta, stats, g[None, :]))[0]
        xp = namespace(theta)
        return float(loss + 0.5 * self.l2 * xp.sum(theta * theta)) if self.l2 else float(loss), grad

    def per_example_grads(self, theta, X, y):
        """``(N, P)``: :math:`G' T`, L2 included (their mean is the gradient)."""
        theta, stats, folded, X, y = self._folded(theta, X, y)
        return self._with_l2(theta, fold_vjp(self.net, theta, stats, backprop.per_example_grads(self.plain, folded,
                                                                                                X, y)))

    def weighted_gradient(self, theta, X, y, w):
        r"""``(P,)``: :math:`\sum_n w_n \nabla(\ell_n + \frac{\lambda}{2}\lVert\theta\rVert^2)`, one backward pass."""
        theta, stats, folded, X, y = self._folded(theta, X, y)
        xp = namespace(theta, w)
        if w.ndim != 1 or w.shape[0] != X.shape[0]:
            raise ShapeError(f"w must have shape ({X.shape[0]},), one weight per example, got shape {tuple(w.shape)}")
        g = backprop.weighted_gradient(self.plain, folded, X, y, xp.astype(w, theta.dtype))
        return self._with_l2(theta, fold_vjp(self.net, theta, stats, g[None, :]), float(xp.sum(w)))[0]

    def per_example_grad_norms(self, theta, X, y, chunk_elements=1 << 23):
        """``(N,)`` norms of the rows of ``per_example_grads``, formed ``chunk_elements / P`` rows at a time."""
        theta, X, y = self._checked(theta, X, y)
        xp = namespace(theta)
        rows = max(1, chunk_elements // self.num_params)
        norms = []
        for n0 in range(0, X.shape[0], rows):
            n1 = min(X.shape[0], n0 + rows)
            G = self.per_example_grads(theta, X[n0:n1, ...], y[n0:n1, ...])
            norms.append(xp.sqrt(xp.sum(G * G, axis=1)))
        return xp.concat(norms)

    def output_jacobian(self, theta, X):
        """``(N, K, P)``: :math:`J'_n T`."""
        theta, stats, folded, X, _ = self._folded(theta, X, need_targets=False)
        xp = namespace(theta)
        J = backprop.output_jacobian(self.plain, folded, X)
        N, K = J.shape[0], J.shape[1]
        return xp.reshape(fold_vjp(self.net, theta, stats, xp.reshape(J, (N * K, -1))), (N, K, self.num_params))

    # ---- second derivatives ---------------------------------------------------------------------------------------

    def _hvp_rows(self, theta, stats, folded, X, y, Vk):
        r"""``(k, P)``: :math:`T^T H' T v + D(g') v + \lambda v` for rows ``Vk: (k, P)``."""
        _, g = backprop.loss_and_grad(self.plain, folded, X, y)
        TV = fold_jvp(self.net, theta, stats, Vk)  # (k, P')
        HTV = hvp.hessian_vector_product(self.plain, folded, X, y, TV.T).T
        out = fold_vjp(self.net, theta, stats, HTV) + fold_curvature(self.net, theta, stats, g[None, :], Vk)
        return out + self.l2 * Vk if self.l2 else out

    def _operator(self, rows, theta, X, y):
        """``V -> rows(..., V)`` for ``V: (P,)`` or ``(P, k)`` (same shape out), the inputs checked and folded once;
        ``rows`` maps ``Vk: (k, P)`` to ``(k, P)``."""
        theta, stats, folded, X, y = self._folded(theta, X, y)

        def apply(V):
            Vk, single = _as_rows(V)
            out = rows(theta, stats, folded, X, y, Vk)
            return out[0, :] if single else out.T
        return apply

    def hvp(self, theta, X, y, V):
        """Hessian-vector products ``H @ V`` for ``V: (P,)`` or ``(P, k)``."""
        return self.hvp_operator(theta, X, y)(self._checked_directions(theta, V))

    def hvp_operator(self, theta, X, y):
        """``V -> H @ V`` at fixed inputs, checked and folded once (as :meth:`MLP.hvp_operator`)."""
        return self._operator(self._hvp_rows, theta, X, y)

    def _gn_rows(self, theta, stats, folded, X, y, Vk):
        TV = fold_jvp(self.net, theta, stats, Vk)
        GTV = gauss_newton.gauss_newton_vector_product(self.plain, folded, X, y, TV.T).T
        out = fold_vjp(self.net, theta, stats, GTV)
        return out + self.l2 * Vk if self.l2 else out

    def gauss_newton_vp(self, theta, X, y, V):
        """Gauss-Newton-vector products :math:`(T^T G' T + \\lambda) V` for ``V: (P,)`` or ``(P, k)``."""
        return self.gauss_newton_vp_operator(theta, X, y)(self._checked_directions(theta, V))

    def gauss_newton_vp_operator(self, theta, X, y):
        """``V -> G @ V`` at fixed inputs, checked and folded once."""
        return self._operator(self._gn_rows, theta, X, y)

    def factor_vector_product(self, theta, X, factor, V):
        r"""``(P,)`` or ``(P, k)``: :math:`T^T (\frac1N \sum_n J'^T_n F_n F_n^T J'_n) T V` for an output factor
        ``factor: (N, K, m)`` (the outputs' Jacobian is :math:`J' T`: no :math:`D` term), no L2 term."""
        theta, stats, folded, X, _ = self._folded(theta, X, need_targets=False)
        Vk, single = _as_rows(V)
        TV = fold_jvp(self.net, theta, stats, Vk)
        out = fold_vjp(self.net, theta, stats, gauss_newton.factor_vector_product(self.plain, folded, X, factor,
                                                                                 TV.T).T)
        return out[0, :] if single else out.T

    def factor_diagonal(self, theta, X, factor):
        """``(P,)``: the exact diagonal of :meth:`factor_vector_product`'s matrix (sums over the examples / N)."""
        theta, stats, folded, X, _ = self._folded(theta, X, need_targets=False)
        xp = namespace(theta)
        pieces = [(a, xp.sum(d * d, axis=0)) for a, d in gauss_newton.backpropagated_factor(self.plain, folded, X,
                                                                                             factor)]
        return self._diagonal_from(theta, stats, pieces) / X.shape[0]

    def per_example_hvps(self, theta, X, y, v):
        r"""``(N, P)``: row n is :math:`(T^T H'_n T + D(g'_n) + \lambda) v` for one ``v: (P,)``."""
        theta, stats, folded, X, y = self._folded(theta, X, y)
        v = self._checked_directions(theta, v)
        if v.ndim != 1:
            raise ShapeError(f"per_example_hvps takes one direction v of shape ({self.num_params},)")
        Tv = fold_jvp(self.net, theta, stats, v[None, :])[0]
        rows = fold_vjp(self.net, theta, stats, hvp.per_example_hvps(self.plain, folded, X, y, Tv))
        G = backprop.per_example_grads(self.plain, folded, X, y)
        rows = rows + fold_curvature(self.net, theta, stats, G, v[None, :])
        return rows + self.l2 * v[None, :] if self.l2 else rows

    def _sandwich(self, theta, stats, M):
        """``(P, P)``: :math:`T^T M T` for a symmetric ``M: (P', P')``."""
        MT = fold_vjp(self.net, theta, stats, M)  # rows m^T T: (P', P) = M T
        return fold_vjp(self.net, theta, stats, MT.T)  # rows of T^T M, times T

    def _dense(self, theta, X, y, part, max_memory):
        theta, stats, folded, X, y = self._folded(theta, X, y)
        xp = namespace(theta)
        hessian.check_hessian_fits(self.net, X.shape[0], theta.dtype.itemsize, xp, max_memory)
        H = self._sandwich(theta, stats, hessian.hessian(self.plain, folded, X, y, part=part, max_memory=max_memory))
        if part != "gauss_newton":  # D(g'): the gamma rows and columns
            idx = xp.concat([xp.arange(bn.start, bn.start + bn.width, device=device_of(theta))
                             for bn in self.bn_layers])
            E = xp.zeros((idx.shape[0], self.num_params), dtype=theta.dtype, device=device_of(theta))
            E[xp.arange(idx.shape[0], device=device_of(theta)), idx] = 1.0
            _, g = backprop.loss_and_grad(self.plain, folded, X, y)
            D = fold_curvature(self.net, theta, stats, g[None, :], E)  # rows D[gamma, :]; D[gamma, gamma] = 0
            H[idx, :] = H[idx, :] + D
            H[:, idx] = H[:, idx] + D.T
        if self.l2 and part != "residual":
            H = H + self.l2 * xp.eye(self.num_params, dtype=theta.dtype, device=device_of(theta))
        return H

    def hessian(self, theta, X, y, max_memory=None):
        """Exact Hessian ``(P, P)``: :math:`T^T H' T + D(g') + \\lambda I`."""
        return self._dense(theta, X, y, "full", max_memory)

    def gauss_newton(self, theta, X, y, max_memory=None):
        """Gauss-Newton matrix ``(P, P)``: :math:`T^T G' T + \\lambda I`."""
        return self._dense(theta, X, y, "gauss_newton", max_memory)

    def residual(self, theta, X, y, max_memory=None):
        """Residual ``(P, P)`` = Hessian - Gauss-Newton: :math:`T^T S' T + D(g')`."""
        return self._dense(theta, X, y, "residual", max_memory)

    def _diagonal_from(self, theta, stats, pieces):
        r"""``(P,)`` from per layer ``(ã_{l-1}: (N, n_{l-1} + 1), c_l: (N, n_l))`` where the plain diagonal of
        layer l is :math:`\sum_n \tilde a^2 \otimes c`: W and b scaled by :math:`s^2`, :math:`\gamma` from
        :math:`\sum_n \hat z^2 c`, :math:`\beta` from :math:`\sum_n c` (sums over the rows of X, not means)."""
        xp = namespace(theta)
        factors = _unit_factors(self.net, theta, stats)
        params = self.net.unflatten(theta)
        out = []
        for l, (a, c) in enumerate(pieces):
            block = (a * a).T @ c  # (n_{l-1} + 1, n_l)
            if l == len(factors):
                out.append(xp.reshape(block, (-1,)))
                break
            r, s, _ = factors[l]
            mu = split_statistics(self.net, stats)[l][0]
            W, b = params[l]
            zhat = (a[:, :-1] @ W + (b - mu)) * r
            out += [xp.reshape(block * (s * s), (-1,)), xp.sum(zhat * zhat * c, axis=0), xp.sum(c, axis=0)]
        return xp.concat(out)

    def hessian_diagonal(self, theta, X, y, chunk_elements=1 << 23):
        """``(P,)`` exact diagonal of the Hessian (:math:`D` has none), examples in chunks."""
        theta, stats, folded, X, y = self._folded(theta, X, y)
        params, total = self.plain.unflatten(folded), None
        rows = max(1, chunk_elements // (max(self.sizes[1:]) ** 2))
        for n0 in range(0, X.shape[0], rows):
            n1 = min(X.shape[0], n0 + rows)
            fwd, diag_C = hessian.preactivation_curvature_diagonals(self.plain, params, X[n0:n1, ...], y[n0:n1, ...])
            part = self._diagonal_from(theta, stats, [(augmented(a), c) for a, c in zip(fwd.inputs, diag_C)])
            total = part if total is None else total + part
        return total / X.shape[0] + self.l2

    def gauss_newton_diagonal(self, theta, X, y):
        """``(P,)`` exact diagonal of the Gauss-Newton matrix (L2 included)."""
        theta, stats, folded, X, y = self._folded(theta, X, y)
        Z = forward_pass(self.plain.unflatten(folded), X, self.activation, order=0).outputs
        return self.factor_diagonal(theta, X, self.loss_fn.hessian_factor(Z, y)) + self.l2

