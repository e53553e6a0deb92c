r"""The multilayer perceptron: a flat parameter vector with named views per layer, and its derivatives.

``MLP`` is a small immutable description (sizes, activation, loss, L2); every method is a pure function of
``theta: (P,)`` and the data, so Hessians, interpolation and optimizers are plain linear algebra on
``theta``. The derivatives live in their own modules (``backprop``, ``hvp``, ``hessian``); this file checks
the inputs once, before any heavy work, and hands over.

Layout of ``theta``: layer after layer, the ``(n_{l-1} + 1, n_l)`` matrix :math:`[W_l; b_l]` flattened
row-major, i.e. ``W_l.ravel()`` followed by ``b_l``; with ``batch_norm=True`` each hidden layer's is followed by
its BN scale and shift :math:`\gamma_l, \beta_l` (``net.bn_layers``; see ``minisgd.core.batchnorm``).
"""
import math
from dataclasses import dataclass

import numpy as np

from . import activations, backprop, batchnorm, gauss_newton, hessian, hvp, losses
from ..backend import namespace, to_device
from ..errors import NonFiniteError, ShapeError
from .batchnorm import BatchNormEval, BatchNormLayer
from .passes import forward_pass

INIT_SCHEMES = ("lecun", "glorot", "he")


@dataclass(frozen=True)
class Layer:
    """Where layer ``name``'s parameters sit in ``theta``: ``theta[start:stop]`` is ``[W; b]`` row-major."""

    name: str
    fan_in: int
    fan_out: int
    start: int
    stop: int

    @property
    def size(self):
        return self.stop - self.start


class MLP:
    """A fully connected network ``sizes = [d, n_1, ..., K]`` with one activation on every hidden layer.

    Example: the gradient against a central difference, the HVP against the exact Hessian, both by hand.

    >>> import numpy as np
    >>> net = MLP([4, 3, 2], activation="tanh", loss="cross_entropy", l2=0.0)
    >>> theta = net.init(seed=0)                                      # (P,) float64, P = 5*3 + 4*2
    >>> X, y = np.random.default_rng(0).standard_normal((6, 4)), np.array([0, 1, 1, 0, 1, 0])
    >>> loss, grad = net.loss_and_grad(theta, X, y)                   # float, (P,)
    >>> e, h = np.eye(net.num_params)[5], 1e-5
    >>> fd = (net.loss(theta + h * e, X, y) - net.loss(theta - h * e, X, y)) / (2 * h)
    >>> net.num_params, bool(abs(grad[5] - fd) < 1e-9)
    (23, True)
    >>> V = np.random.default_rng(1).standard_normal((net.num_params, 2))
    >>> bool(np.allclose(net.hvp(theta, X, y, V), net.hessian(theta, X, y) @ V, rtol=1e-12, atol=1e-14))
    True

    ``batch_norm=True`` puts batch normalization between each hidden layer's Linear and its activation (Keskar et
    al.'s F1): the methods of the net itself are then its training mode (batch statistics), and
    ``net.eval_mode(stats)`` is the network at fixed running statistics, a function of theta alone with every
    method of a plain net (``minisgd.core.batchnorm``).
    """

    def __init__(self, sizes, activation="tanh", loss="cross_entropy", l2=0.0, batch_norm=False, bn_eps=1e-5):
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must list at least an input and an output width, all >= 1; got {sizes}")
        if not (l2 >= 0 and math.isfinite(l2)):
            raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}")
        self.sizes = sizes
        self.activation = activations.get(activation)
        self.loss_fn = losses.get(loss)
        self.l2 = float(l2)
        if not (bn_eps > 0 and math.isfinite(bn_eps)):
            raise ValueError(f"bn_eps must be a finite number > 0, got {bn_eps!r}")
        self.batch_norm, self.bn_eps = bool(batch_norm), float(bn_eps)
        layers, bn_layers, start = [], [], 0
        for l, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            stop = start + (fan_in + 1) * fan_out
            layers.append(Layer(f"layer{l}", fan_in, fan_out, start, stop))
            start = stop
            if self.batch_norm and l < len(sizes) - 1:
                bn_layers.append(BatchNormLayer(f"bn{l}", fan_out, start, start + 2 * fan_out))
                start += 2 * fan_out
        self.layers, self.bn_layers = tuple(layers), tuple(bn_layers)
        self.num_params = start
        self.num_statistics = 2 * sum(bn.width for bn in bn_layers)
        # the plain network a BN net in eval mode folds into (its L2 term stays on the BN net's theta)
        self.plain = MLP(sizes, activation, loss) if self.batch_norm else None

    @classmethod
    def from_torch(cls, model, loss="cross_entropy", l2=0.0, dtype="float64", device="cpu"):
        """``(net, theta)`` from a PyTorch ``nn.Sequential`` MLP, with identical outputs; see ``minisgd.core.interop``."""
        from .interop import from_torch
        return from_torch(model, loss, l2, dtype, device)

    @classmethod
    def from_params(cls, params, activation="tanh", loss="cross_entropy", l2=0.0, dtype="float64", device="cpu"):
        """``(net, theta)`` from ``[(W: (n_in, n_out), b), ...]`` (NumPy, JAX) or Flax Dense parameters."""
        from .interop import from_params
        return from_params(params, activation, loss, l2, dtype, device)

    def to_torch(self, theta):
        """A PyTorch ``nn.Sequential`` computing ``self.forward(theta, X)`` (a BN net: in training mode); see
        ``minisgd.core.interop``."""
        from .interop import to_torch
        return to_torch(self, theta)

    def __repr__(self):
        bn = f", batch_norm=True, bn_eps={self.bn_eps}" if self.batch_norm else ""
        return (f"MLP(sizes={list(self.sizes)}, activation={self.activation.name!r}, "
                f"loss={self.loss_fn.name!r}, l2={self.l2}{bn}) with P={self.num_params} parameters")

    # ---- batch normalization ---------------------------------------------------------------------------------

    def eval_mode(self, stats):
        """The BN net at fixed running statistics ``stats: (S,)`` (``TrainResult.bn_stats``): a
        :class:`~minisgd.core.batchnorm.BatchNormEval` with every method of a plain net, exact."""
        if not self.batch_norm:
            raise ValueError(f"{self!r} has no batch normalization: it has no eval mode; use it as it is")
        return BatchNormEval(self, stats)

    def initial_statistics(self, dtype="float64", device="cpu"):
        """``(S,)`` running statistics before training, per BN layer its means (0) then variances (1)."""
        return batchnorm.initial_statistics(self, dtype, device)

    def _training_mode_only(self, what):
        if self.batch_norm:
            batchnorm.refuse_in_training_mode(what)

    @property
    def num_layers(self):
        return len(self.layers)

    # ---- parameters ------------------------------------------------------------------------------

    def unflatten(self, theta):
        """``[(W_l: (n_{l-1}, n_l), b_l: (n_l,)), ...]``, views into ``theta`` where the backend allows."""
        xp = namespace(theta)
        params = []
        for layer in self.layers:
            split = layer.start + layer.fan_in * layer.fan_out
            W = xp.reshape(theta[layer.start:split], (layer.fan_in, layer.fan_out))
            params.append((W, theta[split:layer.stop]))
        return params

    def flatten(self, params):
        """Inverse of ``unflatten``: a list of ``(W, b)`` to the flat ``theta: (P,)`` (a net without BN)."""
        if self.batch_norm:
            raise ValueError("flatten builds theta from (W, b) pairs alone; a BN net's theta also holds gamma and beta "
                             "(net.bn_layers): write them at their slices of net.init()")
        xp = namespace(*[a for pair in params for a in pair])
        return xp.concat([piece for W, b in params for piece in (xp.reshape(W, (-1,)), b)])

    def init(self, seed=0, scheme="lecun", dtype="float64", device="cpu"):
        r"""Random ``theta``: weights :math:`\mathcal N(0, s^2)`, biases zero, from ``numpy.random.default_rng(seed)``.

        lecun: :math:`s^2 = 1/n_{in}`; glorot: :math:`s^2 = 2/(n_{in} + n_{out})`; he: :math:`s^2 = 2/n_{in}`.
        The draw is made in float64 on the CPU and then cast and moved, so a seed gives the same network on
        every device and dtype.
        """
        if scheme not in INIT_SCHEMES:
            raise ValueError(f"unknown init scheme {scheme!r}; choose one of {', '.join(INIT_SCHEMES)}")
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        rng = np.random.default_rng(seed)
        theta = np.zeros(self.num_params)
        for layer in self.layers:
            var = {"lecun": 1.0 / layer.fan_in, "glorot": 2.0 / (layer.fan_in + layer.fan_out),
                   "he": 2.0 / layer.fan_in}[scheme]
            n_weights = layer.fan_in * layer.fan_out
            theta[layer.start:layer.start + n_weights] = rng.normal(0.0, math.sqrt(var), n_weights)
        for bn in self.bn_layers:
            theta[bn.start:bn.start + bn.width] = 1.0  # gamma = 1, beta = 0: the identity after normalizing
        return to_device(theta.astype(dtype), device)

    # ---- input checks --------------------------------------------------------------------------------

    def check_inputs(self, theta, X, y=None):
        """``(theta, X, y)`` validated and canonicalized as every public method does first: shapes, dtypes, finite
        values, labels in range; ``X`` (and real targets) cast to theta's dtype, 1-d mse targets made ``(N, 1)``.

        For loops that reuse checked data: the trainer checks its training set once and calls
        ``backprop.loss_and_grad`` on batches of it (``hvp_operator`` does the same for Lanczos). The value checks
        are reductions read on the host: on a GPU each one is a device-to-host copy and a wait for the device,
        which a loop should not pay at every step.
        """
        return self._checked(theta, X, y, need_targets=y is not None)

    def _checked(self, theta, X, y=None, need_targets=True):
        """Validate and canonicalize the inputs; every public method starts here."""
        try:
            xp = namespace(theta, X) if y is None else namespace(theta, X, y)
        except TypeError as exc:
            raise TypeError("theta, X and y must come from the same array library and device; move them with "
                            f"minisgd.backend.to_device ({exc})") from None
        P, d = self.num_params, self.sizes[0]
        if theta.ndim != 1 or theta.shape[0] != P:
            raise ShapeError(f"theta must have shape ({P},) for {self!r}, got shape {tuple(theta.shape)}")
        if not xp.isdtype(theta.dtype, "real floating"):
            raise TypeError(f"theta must be real floating (float32 or float64), got dtype {theta.dtype}")
        if X.ndim != 2 or X.shape[1] != d:
            raise ShapeError(f"X must have shape (N, {d}) for a network with {d} inputs, got shape {tuple(X.shape)}")
        if X.shape[0] == 0:
            raise ShapeError("X holds no examples (N = 0)")
        if not xp.isdtype(X.dtype, "real floating"):
            raise TypeError(f"X must be real floating, got dtype {X.dtype}; scale integer pixels to floats first "
                            "(e.g. X / 255.0, or the preprocessing in minisgd.data)")
        if not bool(xp.all(xp.isfinite(theta))):
            raise NonFiniteError(f"theta contains {int(xp.sum(~xp.isfinite(theta)))} NaN or inf entries; "
                                 "a diverged run? restart from the last finite parameters")
        if not bool(xp.all(xp.isfinite(X))):
            raise NonFiniteError(f"X contains NaN or inf in {int(xp.sum(~xp.all(xp.isfinite(X), axis=1)))} rows; "
                                 "drop or impute them before training")
        if X.dtype != theta.dtype:
            X = xp.astype(X, theta.dtype)
        if need_targets:
            if y is None:
                raise ShapeError("targets y are required")
            y = self.loss_fn.check_targets(y, X.shape[0], self.sizes[-1])
            if xp.isdtype(y.dtype, "real floating") and y.dtype != theta.dtype:
                y = xp.astype(y, theta.dtype)
        return theta, X, y

    def _checked_directions(self, theta, V):
        P = self.num_params
        if V.ndim not in (1, 2) or V.shape[0] != P:
            raise ShapeError(f"V must have shape ({P},) or ({P}, k), got shape {tuple(V.shape)}")
        xp = namespace(theta, V)
        if not bool(xp.all(xp.isfinite(V))):
            raise NonFiniteError("V contains NaN or inf")
        return V if V.dtype == theta.dtype else xp.astype(V, theta.dtype)

    # ---- values ----------------------------------------------------------------------------------------

    def forward(self, theta, X):
        """Outputs ``z_L: (N, K)`` (logits for cross-entropy)."""
        theta, X, _ = self._checked(theta, X, need_targets=False)
        return self._outputs(theta, X)

    def _outputs(self, theta, X):
        """``z_L``: the plain forward pass, or training mode's on the batch statistics of ``X``."""
        if self.batch_norm:
            return batchnorm.train_forward(self, theta, X).outputs
        return forward_pass(self.unflatten(theta), X, self.activation, order=0).outputs

    def predict(self, theta, X):
        """Class labels ``(N,)`` for cross-entropy, outputs ``(N, K)`` for mse."""
        Z = self.forward(theta, X)
        return namespace(Z).argmax(Z, axis=1) if self.loss_fn.name == "cross_entropy" else Z

    def per_example_losses(self, theta, X, y):
        r"""``(N,)`` per-example losses :math:`\ell_n` (without the L2 term)."""
        theta, X, y = self._checked(theta, X, y)
        return self.loss_fn.value(self._outputs(theta, X), y)

    def loss(self, theta, X, y):
        r"""Mean loss plus L2, :math:`\frac1N \sum_n \ell_n + \frac{\lambda}{2}\lVert\theta\rVert^2`, as a float."""
        xp = namespace(theta)
        value = xp.mean(self.per_example_losses(theta, X, y))
        if self.l2:
            value = value + 0.5 * self.l2 * xp.sum(theta * theta)
        return float(value)

    def accuracy(self, theta, X, y):
        """Fraction of examples whose arg-max output is the label (cross-entropy only)."""
        if self.loss_fn.name != "cross_entropy":
            raise ValueError("accuracy is defined for classification (loss='cross_entropy') only")
        theta, X, y = self._checked(theta, X, y)
        Z = self._outputs(theta, X)
        xp = namespace(Z)
        return float(xp.mean(xp.astype(xp.argmax(Z, axis=1) == y, Z.dtype)))

    # ---- derivatives -----------------------------------------------------------------------------------

    def loss_and_grad(self, theta, X, y):
        """Mean loss (float) and its gradient ``(P,)``; see ``minisgd.core.backprop``."""
        if self.batch_norm:
            loss, grad, _ = batchnorm.train_loss_and_grad(self, *self._checked(theta, X, y))
        else:
            loss, grad = backprop.loss_and_grad(self, *self._checked(theta, X, y))
        return float(loss), grad

    def per_example_grads(self, theta, X, y):
        """``(N, P)`` per-example gradients (L2 included, so their mean is the gradient)."""
        self._training_mode_only("per_example_grads")
        return backprop.per_example_grads(self, *self._checked(theta, X, y))

    def weighted_gradient(self, theta, X, y, w):
        r"""``(P,)`` :math:`\sum_n w_n \nabla(\ell_n + \frac{\lambda}{2}\lVert\theta\rVert^2)` for ``w: (N,)``,
        in one backward pass; see ``minisgd.core.backprop.weighted_gradient``."""
        theta, X, y = self._checked(theta, X, y)
        xp = namespace(theta, w)
        if w.ndim != 1 or w.shape[0] != X.shape[0]:
            raise ShapeError(f"w must have shape ({X.shape[0]},), one weight per example, got shape {tuple(w.shape)}")
        if not bool(xp.all(xp.isfinite(w))):
            raise NonFiniteError("the weights w contain NaN or inf")
        if self.batch_norm:
            return batchnorm.train_weighted_gradient(self, theta, X, y, xp.astype(w, theta.dtype))
        return backprop.weighted_gradient(self, theta, X, y, xp.astype(w, theta.dtype))

    def per_example_grad_norms(self, theta, X, y):
        """``(N,)`` norms of the per-example gradients, without forming them."""
        self._training_mode_only("per_example_grad_norms")
        return backprop.per_example_grad_norms(self, *self._checked(theta, X, y))

    def output_jacobian(self, theta, X):
        """``(N, K, P)`` Jacobian of the outputs with respect to ``theta``, per example."""
        self._training_mode_only("output_jacobian")
        theta, X, _ = self._checked(theta, X, need_targets=False)
        return backprop.output_jacobian(self, theta, X)

    def hvp(self, theta, X, y, V):
        """Hessian-vector products ``H @ V`` for ``V: (P,)`` or ``(P, k)``; see ``minisgd.core.hvp``."""
        self._training_mode_only("hvp")
        theta, X, y = self._checked(theta, X, y)
        return hvp.hessian_vector_product(self, theta, X, y, self._checked_directions(theta, V))

    def hvp_operator(self, theta, X, y):
        """``V -> H @ V`` at fixed inputs, checked once, here, not at every product as ``hvp`` checks them: for
        iterations that apply one Hessian many times (Lanczos), where each check would be a device-to-host copy on
        a GPU. ``V: (P,)`` or ``(P, k)`` of theta's dtype and device (not checked)."""
        self._training_mode_only("hvp_operator")
        theta, X, y = self._checked(theta, X, y)
        return lambda V: hvp.hessian_vector_product(self, theta, X, y, V)

    def gauss_newton_vp(self, theta, X, y, V):
        """Gauss-Newton-vector products ``G @ V`` for ``V: (P,)`` or ``(P, k)`` (L2 included), by a forward R-pass
        and one backward pass; see ``minisgd.core.gauss_newton``."""
        self._training_mode_only("gauss_newton_vp")
        theta, X, y = self._checked(theta, X, y)
        return gauss_newton.gauss_newton_vector_product(self, theta, X, y, self._checked_directions(theta, V))

    def gauss_newton_vp_operator(self, theta, X, y):
        """``V -> G @ V`` at fixed inputs, checked once here (as ``hvp_operator``): for iterations that apply one
        Gauss-Newton matrix many times. ``V: (P,)`` or ``(P, k)`` of theta's dtype and device (not checked)."""
        self._training_mode_only("gauss_newton_vp_operator")
        theta, X, y = self._checked(theta, X, y)
        return lambda V: gauss_newton.gauss_newton_vector_product(self, theta, X, y, V)

    def gauss_newton_diagonal(self, theta, X, y):
        """``(P,)`` exact diagonal of the Gauss-Newton matrix (L2 included), without forming it."""
        self._training_mode_only("gauss_newton_diagonal")
        theta, X, y = self._checked(theta, X, y)
        Z = forward_pass(self.unflatten(theta), X, self.activation, order=0).outputs
        return gauss_newton.factor_diagonal(self, theta, X, self.loss_fn.hessian_factor(Z, y)) + self.l2

    def factor_vector_product(self, theta, X, factor, V):
        r"""``(P,)`` or ``(P, k)``: :math:`\frac1N \sum_n J_n^T F_n F_n^T J_n V` for an output factor
        ``factor: (N, K, m)``, no L2 term (the curvature operators' Gauss-Newton family); inputs not checked."""
        self._training_mode_only("factor_vector_product")
        return gauss_newton.factor_vector_product(self, theta, X, factor, V)

    def factor_diagonal(self, theta, X, factor):
        """``(P,)``: the diagonal of :meth:`factor_vector_product`'s matrix, exactly; inputs not checked."""
        self._training_mode_only("factor_diagonal")
        return gauss_newton.factor_diagonal(self, theta, X, factor)

    def per_example_hvps(self, theta, X, y, v):
        """``(N, P)`` per-example Hessian-vector products ``(H_n + l2 I) v`` for one ``v: (P,)``."""
        self._training_mode_only("per_example_hvps")
        theta, X, y = self._checked(theta, X, y)
        v = self._checked_directions(theta, v)
        if v.ndim != 1:
            raise ShapeError(f"per_example_hvps takes one direction v of shape ({self.num_params},)")
        return hvp.per_example_hvps(self, theta, X, y, v)

    def hessian_diagonal(self, theta, X, y):
        """``(P,)`` exact diagonal of the Hessian, without forming it; see ``minisgd.core.hessian``."""
        self._training_mode_only("hessian_diagonal")
        return hessian.hessian_diagonal(self, *self._checked(theta, X, y))

    def hessian(self, theta, X, y, max_memory=None):
        """Exact Hessian ``(P, P)`` of the mean loss plus L2; see ``minisgd.core.hessian``."""
        self._training_mode_only("hessian")
        return hessian.hessian(self, *self._checked(theta, X, y), part="full", max_memory=max_memory)

    def gauss_newton(self, theta, X, y, max_memory=None):
        r"""Gauss-Newton matrix ``(P, P)``: :math:`\frac1N \sum_n J_n^T A_n J_n + \lambda I`."""
        self._training_mode_only("gauss_newton")
        return hessian.hessian(self, *self._checked(theta, X, y), part="gauss_newton", max_memory=max_memory)

    def residual(self, theta, X, y, max_memory=None):
        r"""Residual ``(P, P)`` = Hessian - Gauss-Newton: :math:`\frac1N\sum_n\sum_k \partial_k\ell_n \nabla^2 z_{L,k}`."""
        self._training_mode_only("residual")
        return hessian.hessian(self, *self._checked(theta, X, y), part="residual", max_memory=max_memory)
