r"""Sharpness of a minimizer: Keskar's epsilon-sharpness, expected sharpness under Gaussian noise, a
scale-aware per-layer measure, measures invariant under function-preserving rescalings (relative sharpness, the
Fisher-Rao norm), and a summary of the Hessian's size (top eigenvalue, trace, Frobenius norm,
effective dimension).

Every measure is of :math:`f(\theta) =` ``net.loss(theta, X, y)``, the mean loss plus the L2 term, on the
data given (usually the training set). Results are dataclasses of floats and NumPy arrays.

Epsilon-sharpness (Keskar et al. 2017, metric 2.1). With :math:`x = \theta`, a matrix
:math:`A \in \mathbb R^{P \times p}` and the box
:math:`\mathcal C_\epsilon = \{z \in \mathbb R^p : |z_i| \le \epsilon (|(A^+ x)_i| + 1)\}`,

.. math::  \phi_{x,f}(\epsilon, A) = 100 \cdot \frac{\max_{y \in \mathcal C_\epsilon} f(x + A y) - f(x)}{1 + f(x)}.

:math:`A = I` is the full space (:math:`p = P`, the box :math:`|y_i| \le \epsilon(|x_i| + 1)`); otherwise
:math:`A` is random with i.i.d. standard normal entries (``random_subspace``; the paper says only that its
columns are random) and :math:`A^+` is its Moore-Penrose pseudo-inverse, as in the paper. The maximum is approximated
by a few iterations of a local solver, so
:math:`\phi` is a lower bound on the true maximum; the value returned is always recomputed at the
returned point, which lies in the box.

On a quadratic with diagonal Hessian the maximum is separable, :math:`\sum_i |g_i| r_i + h_i r_i^2/2`
at the vertex :math:`y = \mathrm{sign}(g) \odot r`, and the solver finds it::

    >>> import numpy as np, minisgd as ms
    >>> X = np.array([[3.0, 0.5], [3.0, -0.5], [-3.0, 0.5], [-3.0, -0.5]])  # orthogonal columns
    >>> net = ms.MLP([2, 1], activation="identity", loss="mse")           # H = diag(9, 0.25, 1)
    >>> theta, y = np.array([0.3, -0.7, 0.2]), np.array([1.0, -2.0, 0.5, 0.3])
    >>> s = epsilon_sharpness(net, theta, X, y, eps=0.1)
    >>> f, g = net.loss_and_grad(theta, X, y)
    >>> r = 0.1 * (np.abs(theta) + 1)
    >>> closed_form = 100 * np.sum(np.abs(g) * r + np.array([9, 0.25, 1]) * r ** 2 / 2) / (1 + f)
    >>> bool(np.isclose(s.value, closed_form, rtol=1e-12)), s.method, s.fell_back
    (True, 'lbfgsb', False)
"""
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from ..backend import available_memory, device_of, namespace, to_numpy
from ..core.hessian import hessian_memory_bytes
from .eigen import exact_spectrum, hessian_spectrum, hessian_trace, lanczos

METHODS = ("lbfgsb", "pga")


# ---- epsilon-sharpness (Keskar et al. 2017) -----------------------------------------------------------

@dataclass
class SolverRun:
    """One solver's attempt: its name, status (0 converged, 1 iteration/evaluation limit, 2 anything else,
    e.g. a failed line search), its own message, and the loss increase ``f(x + A y) - f(x)`` it reached."""

    method: str
    status: int
    message: str
    iterations: int
    function_evaluations: int
    increase: float


@dataclass
class EpsilonSharpness:
    """Keskar's :math:`\\phi` (in percent) and how it was obtained.

    value: :math:`100 (f(x + A y) - f(x)) / (1 + f(x))` at the returned ``maximizer`` (recomputed there).
    maximizer: ``(p,)`` float64, the ``y`` (full space) or ``z`` (subspace) reached; inside the box.
    radius: ``(p,)`` the box half-widths :math:`\\epsilon(|(A^+x)_i| + 1)`.
    loss, perturbed_loss: :math:`f(x)` and :math:`f(x + A y)`.
    method, status, message: the solver whose point is returned and its own report (see ``SolverRun``).
    fell_back: True when L-BFGS-B failed (status 2, e.g. an abnormal line-search termination) or did not
    raise the loss, and projected gradient ascent continued from L-BFGS-B's best point.
    iterations, function_evaluations: totals over ``attempts`` (one evaluation = one loss and gradient).
    basis: ``A: (P, p)``, or ``None`` for the full space (``A = I``).
    """

    value: float
    maximizer: np.ndarray
    radius: np.ndarray
    loss: float
    perturbed_loss: float
    method: str
    status: int
    message: str
    fell_back: bool
    iterations: int
    function_evaluations: int
    eps: float
    subspace_dim: int = None
    basis: object = None
    attempts: tuple = ()

    @property
    def perturbation(self):
        """``(P,)`` the parameter change :math:`A y` (NumPy, or the basis's array library)."""
        if self.basis is None:
            return self.maximizer
        xp = namespace(self.basis)
        return self.basis @ xp.asarray(self.maximizer, dtype=self.basis.dtype, device=device_of(self.basis))


def random_subspace(P, p, seed=0, dtype="float64"):
    """``A: (P, p)`` with i.i.d. standard normal entries from ``numpy.random.default_rng(seed)`` (NumPy).

    Its columns span a uniformly random p-dimensional subspace; Keskar et al. use such an ``A`` with
    ``p = 100`` for the subspace variant of the metric."""
    if not 1 <= p <= P:
        raise ValueError(f"subspace_dim must lie in [1, P = {P}], got {p}")
    return np.random.default_rng(seed).standard_normal((P, p)).astype(dtype)


class _Objective:
    """:math:`F(y) = f(x + A y)` and :math:`\\nabla F = A^T \\nabla f`, on float64 NumPy ``y``.

    ``calls`` counts the evaluations made; the last point's value is kept, so asking again for the very
    same ``y`` (as L-BFGS-B does at its start, and the final recomputation often does) costs nothing.
    """

    def __init__(self, net, theta, X, y, A):
        self.net, self.theta, self.X, self.y, self.A = net, theta, X, y, A
        self.xp = namespace(theta)
        self.calls = 0
        self._last = None  # (y, F, grad F) of the last evaluation

    def __call__(self, z):
        z = np.array(z, dtype=np.float64)
        if self._last is not None and np.array_equal(z, self._last[0]):
            return self._last[1], self._last[2].copy()
        xp, theta = self.xp, self.theta
        self.calls += 1
        step = xp.asarray(z, dtype=theta.dtype, device=device_of(theta))
        step = step if self.A is None else self.A @ step  # (P,)
        loss, grad = self.net.loss_and_grad(theta + step, self.X, self.y)
        grad = grad if self.A is None else self.A.T @ grad  # (p,)
        self._last = (z, float(loss), to_numpy(grad).astype(np.float64))
        return self._last[1], self._last[2].copy()


def epsilon_sharpness(net, theta, X, y, eps=1e-3, subspace_dim=None, maxiter=10, method="lbfgsb", seed=0,
                      basis=None, start="zero", fallback=True, lbfgsb_options=None):
    r"""Keskar et al.'s :math:`\phi_{x,f}(\epsilon, A)` (metric 2.1), maximized by L-BFGS-B or projected
    gradient ascent; see the module docstring for the definition.

    subspace_dim: ``None`` for the full space (``A = I``), else ``p``: ``A = random_subspace(P, p, seed)``.
    basis: an explicit ``A: (P, p)`` (overrides ``subspace_dim``).
    method: ``"lbfgsb"`` (scipy's L-BFGS-B on :math:`-f(x + Ay)` with gradient :math:`-A^T\nabla f`,
    bounds = the box, ``maxiter`` iterations: 10 in the paper; ``lbfgsb_options`` adds scipy options, e.g.
    ``{"gtol": 0.0}``) or ``"pga"`` (``projected_gradient_ascent``,
    ``maxiter`` accepted steps).
    start: ``"zero"`` (:math:`y = 0`, i.e. at ``x``), ``"random"`` (uniform in the box, from ``seed``),
    or a ``(p,)`` array (clipped into the box). At an exact critical point of ``f`` the zero start has
    zero gradient; L-BFGS-B then stops at once, and the fallback below takes over.
    fallback: when L-BFGS-B ends with status 2 (e.g. ``ABNORMAL`` line-search termination) or does not
    raise the loss above both :math:`f(x)` and its start, continue with projected gradient ascent from the
    best point L-BFGS-B reached; ``fell_back`` says so and ``attempts`` keeps both reports. Nothing is
    returned that was not evaluated: ``value`` is recomputed at ``maximizer``, which is clipped into the box.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if maxiter < 1:
        raise ValueError(f"maxiter must be >= 1, got {maxiter}")
    xp = namespace(theta)
    x = to_numpy(theta).astype(np.float64)
    if basis is None and subspace_dim is not None:
        basis = random_subspace(net.num_params, subspace_dim, seed)
    if basis is None:
        center = x  # A^+ x = x for A = I
    else:
        A_np = to_numpy(basis).astype(np.float64)
        if A_np.ndim != 2 or A_np.shape[0] != net.num_params:
            raise ValueError(f"basis must have shape ({net.num_params}, p), got {A_np.shape}")
        center = np.linalg.lstsq(A_np, x, rcond=None)[0]  # A^+ x: (p,)
        basis = xp.asarray(basis, dtype=theta.dtype, device=device_of(theta))
    radius = eps * (np.abs(center) + 1.0)  # (p,) box half-widths
    p = radius.shape[0]

    objective = _Objective(net, theta, X, y, basis)
    f0, _ = objective(np.zeros(p))
    if isinstance(start, str) and start == "zero":
        y0 = np.zeros(p)
    elif isinstance(start, str):
        if start != "random":
            raise ValueError(f"start must be 'zero', 'random' or a (p,) array, got {start!r}")
        y0 = np.random.default_rng(seed).uniform(-radius, radius)
    else:
        y0 = np.clip(np.asarray(to_numpy(start), dtype=np.float64).reshape(p), -radius, radius)

    attempts = []
    if method == "lbfgsb":
        y_best, run = _run_lbfgsb(objective, y0, radius, {"maxiter": maxiter, **(lbfgsb_options or {})}, f0)
        attempts.append(run)
        start_increase = objective(y0)[0] - f0 if np.any(y0) else 0.0
        if fallback and (run.status == 2 or not run.increase > max(0.0, start_increase)):
            y_best, run = projected_gradient_ascent(objective, y_best, radius, maxiter, f0, seed)
            attempts.append(run)
    else:
        y_best, run = projected_gradient_ascent(objective, y0, radius, maxiter, f0, seed)
        attempts.append(run)

    y_best = np.clip(y_best, -radius, radius)
    f_best, _ = objective(y_best)  # the value is the loss at the returned point, nothing else
    last = attempts[-1]
    return EpsilonSharpness(
        value=100.0 * (f_best - f0) / (1.0 + f0), maximizer=y_best, radius=radius, loss=f0,
        perturbed_loss=f_best, method=last.method, status=last.status, message=last.message,
        fell_back=len(attempts) > 1, iterations=sum(a.iterations for a in attempts),
        function_evaluations=sum(a.function_evaluations for a in attempts), eps=float(eps),
        subspace_dim=None if basis is None else p, basis=basis, attempts=tuple(attempts))


def _run_lbfgsb(objective, y0, radius, options, f0):
    """Minimize :math:`-F` over the box with scipy's L-BFGS-B; returns its point and a ``SolverRun``."""
    calls = objective.calls

    def negated(z):
        value, grad = objective(z)
        return -value, -grad

    res = optimize.minimize(negated, y0, jac=True, method="L-BFGS-B", bounds=optimize.Bounds(-radius, radius),
                            options=options)
    evaluations = objective.calls - calls
    y_res = np.clip(np.asarray(res.x, dtype=np.float64), -radius, radius)
    increase = objective(y_res)[0] - f0  # recomputed at the clipped point: res.fun is not trusted
    if not math.isfinite(increase):
        y_res, increase = np.clip(y0, -radius, radius), objective(y0)[0] - f0
    return y_res, SolverRun("lbfgsb", int(res.status), str(res.message), int(res.nit), evaluations,
                            float(increase))


def projected_gradient_ascent(objective, y0, radius, maxiter, f0=None, seed=0, max_halvings=30):
    r"""Monotone projected sign-gradient ascent of ``objective(y) -> (F, grad F)`` on the box
    :math:`|y_i| \le r_i`: the steepest-ascent step in the norm whose unit ball is the box.

    Step rule: :math:`y \leftarrow \mathrm{clip}(y + \eta\, r \odot \mathrm{sign}(\nabla F), -r, r)` with
    :math:`\eta` starting at 1 (one step from the centre reaches a vertex), halved until :math:`F`
    increases (at most ``max_halvings`` times) and doubled (up to 2, a full crossing) after each accepted
    step; :math:`F` never decreases. Zero gradient entries take a random sign (from ``seed``), so a
    critical point is not a dead end. Stops after ``maxiter`` accepted steps (status 1), or with status 0
    when the projected step is null (a vertex whose gradient points outward: a KKT point) or no halving
    increases :math:`F`. Returns the point reached and a ``SolverRun``.
    """
    rng = np.random.default_rng(seed)
    calls = objective.calls
    y = np.clip(np.asarray(y0, dtype=np.float64), -radius, radius)
    F, grad = objective(y)
    f0 = F if f0 is None else f0
    eta, iterations = 1.0, 0
    status, message = 1, "STOP: ITERATION LIMIT REACHED"
    while iterations < maxiter:
        direction = np.sign(grad)
        zero = direction == 0
        direction[zero] = rng.choice([-1.0, 1.0], size=int(zero.sum()))
        accepted = False
        for _ in range(max_halvings + 1):
            y_new = np.clip(y + eta * radius * direction, -radius, radius)
            if np.array_equal(y_new, y):
                break
            F_new, grad_new = objective(y_new)
            if F_new > F:
                accepted = True
                break
            eta /= 2.0
        if not accepted:
            null = np.array_equal(np.clip(y + radius * direction, -radius, radius), y)
            status = 0
            message = ("CONVERGENCE: KKT POINT (VERTEX WITH OUTWARD GRADIENT)" if null else
                       f"CONVERGENCE: NO ASCENT WITHIN {max_halvings} STEP HALVINGS")
            break
        y, F, grad = y_new, F_new, grad_new
        iterations += 1
        eta = min(2.0 * eta, 2.0)
    return y, SolverRun("pga", status, message, iterations, objective.calls - calls, float(F - f0))


# ---- expected sharpness under Gaussian parameter noise ------------------------------------------------

@dataclass
class ExpectedSharpness:
    r"""Monte-Carlo :math:`\mathbb E_\xi[f(\theta + \sigma \odot \xi)] - f(\theta)`, :math:`\xi \sim
    \mathcal N(0, I)`, with its standard error, beside the second-order prediction
    :math:`\frac12 \sum_i \sigma_i^2 H_{ii}` (:math:`= \frac{\sigma^2}{2}\mathrm{tr} H` for scalar sigma).

    samples: ``(num_samples,)`` the per-draw increases averaged in ``mean``; trace: exact tr H.
    """

    mean: float
    stderr: float
    second_order: float
    trace: float
    loss: float
    sigma: object
    antithetic: bool
    samples: np.ndarray = field(repr=False)


def expected_sharpness(net, theta, X, y, sigma, num_samples=64, antithetic=True, seed=0, diagonal=None):
    r"""Expected loss increase under Gaussian parameter noise (Neyshabur et al. 2017's expected sharpness;
    the PAC-Bayes flatness term), and its second-order Taylor prediction.

    sigma: a float, or ``(P,)`` per-parameter standard deviations (e.g. ``0.01 * abs(theta)``).
    antithetic: each sample is :math:`\frac12 (f(\theta + \sigma\xi) + f(\theta - \sigma\xi)) - f(\theta)`,
    which cancels the first-order term :math:`\sigma \nabla f \cdot \xi` (all odd orders) exactly; for a
    quadratic ``f`` every sample then equals :math:`\frac12 \xi^T \Sigma^{1/2} H \Sigma^{1/2} \xi` with
    mean exactly the prediction. Otherwise one evaluation per draw. ``stderr`` = sample std / sqrt(n).
    The trace and diagonal are exact: ``diagonal``, the ``(P,)`` Hessian diagonal, is computed with
    ``net.hessian_diagonal`` (no ``P x P`` matrix) unless given, e.g. to reuse it across sigmas.
    """
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2 for a standard error, got {num_samples}")
    xp = namespace(theta)
    P = net.num_params
    sigma_arr = np.asarray(to_numpy(sigma), dtype=np.float64)
    if sigma_arr.ndim not in (0, 1) or (sigma_arr.ndim == 1 and sigma_arr.shape != (P,)):
        raise ValueError(f"sigma must be a float or have shape ({P},), got shape {sigma_arr.shape}")
    if np.any(sigma_arr < 0) or not np.all(np.isfinite(sigma_arr)):
        raise ValueError("sigma must be finite and >= 0")
    f0 = net.loss(theta, X, y)
    if diagonal is None:
        diagonal = net.hessian_diagonal(theta, X, y)
    diagonal = to_numpy(diagonal).astype(np.float64)  # (P,)
    if diagonal.shape != (P,):
        raise ValueError(f"diagonal must have shape ({P},), got {diagonal.shape}")
    trace = float(diagonal.sum())
    second_order = 0.5 * float(np.sum(np.broadcast_to(sigma_arr ** 2, (P,)) * diagonal))
    scale = xp.asarray(sigma_arr, dtype=theta.dtype, device=device_of(theta))
    rng = np.random.default_rng(seed)
    samples = np.empty(num_samples)
    for i in range(num_samples):
        xi = xp.asarray(rng.standard_normal(P), dtype=theta.dtype, device=device_of(theta))
        step = scale * xi
        if antithetic:
            samples[i] = 0.5 * (net.loss(theta + step, X, y) + net.loss(theta - step, X, y)) - f0
        else:
            samples[i] = net.loss(theta + step, X, y) - f0
    return ExpectedSharpness(
        mean=float(samples.mean()), stderr=float(samples.std(ddof=1) / math.sqrt(num_samples)),
        second_order=second_order, trace=trace, loss=f0,
        sigma=float(sigma_arr) if sigma_arr.ndim == 0 else sigma_arr, antithetic=antithetic, samples=samples)


# ---- scale-aware (per-layer normalized) sharpness -------------------------------------------------------

@dataclass
class ScaleAwareSharpness:
    r"""Per parameter group :math:`g` (each layer's weights ``layerL.W`` and its bias ``layerL.b``):
    ``curvature`` :math:`\lambda_{\max}(H_{gg})`, ``norm_sq`` :math:`\lVert\theta_g\rVert^2` and
    ``values`` their product; ``total`` = sum and ``maximum`` = max over groups; ``method``: how the
    block eigenvalues were obtained."""

    groups: tuple
    curvature: np.ndarray
    norm_sq: np.ndarray
    values: np.ndarray
    total: float
    maximum: float
    method: str

    def as_dict(self):
        return dict(zip(self.groups, self.values.tolist()))


def _hessian_fits(net, theta, X, max_memory=None):
    """The rule of ``hessian_spectrum(method="auto")``: the Hessian and eigh's work space fit in memory."""
    xp = namespace(theta)
    itemsize = 4 if theta.dtype == xp.float32 else 8
    need = hessian_memory_bytes(net, X.shape[0], itemsize) + 2 * itemsize * net.num_params ** 2
    return need <= (available_memory(xp) if max_memory is None else max_memory)


def parameter_groups(net):
    """``[(name, start, stop)]``: each layer's weights ``W_l`` and bias ``b_l`` as slices of ``theta``."""
    groups = []
    for layer in net.layers:
        split = layer.start + layer.fan_in * layer.fan_out  # theta[start:split] = W_l.ravel()
        groups += [(f"{layer.name}.W", layer.start, split), (f"{layer.name}.b", split, layer.stop)]
    return groups


def scale_aware_sharpness(net, theta, X, y, method="auto", tol=1e-10, seed=0, max_memory=None):
    r"""Per-group normalized sharpness :math:`\lambda_{\max}(H_{gg}) \lVert\theta_g\rVert^2`.

    Why these groups (Dinh et al. 2017): a ReLU net computes the same function after
    :math:`W_l \to \alpha_l W_l`, :math:`b_l \to c_l b_l` with :math:`c_l = \prod_{j \le l}\alpha_j > 0`
    and :math:`c_L = 1`. That map is linear, :math:`\theta' = D\theta`, and :math:`f(D\theta) = f(\theta)`
    for all :math:`\theta` gives :math:`H(\theta') = D^{-1} H(\theta) D^{-1}`. On a weight block ``D`` is
    :math:`\alpha_l I`, on a bias block :math:`c_l I`: each group's block scales by :math:`1/s^2` and its
    squared norm by :math:`s^2`, so every value is exactly invariant, while :math:`\lambda_{\max}(H)`
    is not. A whole layer ``[W_l; b_l]`` is scaled uniformly only when :math:`c_{l-1} = 1`, hence the split.
    With ``l2 > 0`` the penalty breaks the symmetry and the invariance holds for the data term only.

    method: ``"exact"`` slices the dense Hessian; ``"lanczos"`` runs Lanczos on each block through HVPs
    with directions zero outside the group (tolerance ``tol``); ``"auto"`` is exact when the Hessian fits.
    """
    if method not in ("auto", "exact", "lanczos"):
        raise ValueError(f"method must be 'auto', 'exact' or 'lanczos', got {method!r}")
    xp = namespace(theta)
    if method == "auto":
        method = "exact" if _hessian_fits(net, theta, X, max_memory) else "lanczos"
    groups = parameter_groups(net)
    H = net.hessian(theta, X, y, max_memory=max_memory) if method == "exact" else None
    rng = np.random.default_rng(seed)
    curvature, norm_sq = [], []
    hvp = net.hvp_operator(theta, X, y) if H is None else None
    for _, start, stop in groups:
        if H is not None:
            curvature.append(float(exact_spectrum(H[start:stop, start:stop], k=1).values[0]))
        else:
            def matvec(v, start=start, stop=stop):
                V = xp.zeros(net.num_params, dtype=theta.dtype, device=device_of(theta))
                V[start:stop] = v
                return hvp(V)[start:stop]
            q0 = xp.asarray(rng.standard_normal(stop - start), dtype=theta.dtype, device=device_of(theta))
            curvature.append(float(lanczos(matvec, q0, k=1, which="largest", tol=tol).values[0]))
        norm_sq.append(float(xp.sum(theta[start:stop] ** 2)))
    curvature, norm_sq = np.asarray(curvature), np.asarray(norm_sq)
    values = curvature * norm_sq
    return ScaleAwareSharpness(tuple(name for name, _, _ in groups), curvature, norm_sq, values,
                               float(values.sum()), float(values.max()), method)


# ---- measures invariant under every function-preserving diagonal rescaling ------------------------------

@dataclass
class RelativeSharpness:
    r"""The Hessian for relative perturbations :math:`\theta_i (1 + \delta_i)`, :math:`\Theta H \Theta` with
    :math:`\Theta = \mathrm{diag}(|\theta|)`: its ``top_eigenvalue``, its ``trace``
    :math:`\sum_i \theta_i^2 H_{ii}`, and the ``radial`` curvature :math:`\theta^T H \theta` (along the
    parameters themselves); ``method``: how the top eigenvalue was obtained."""

    top_eigenvalue: float
    trace: float
    radial: float
    method: str

    def as_dict(self):
        return {"relative_top_eigenvalue": self.top_eigenvalue, "relative_trace": self.trace,
                "radial_curvature": self.radial}


def relative_sharpness(net, theta, X, y, method="auto", tol=1e-8, seed=0, max_memory=None):
    r"""Sharpness against relative perturbations: :math:`f(\theta + \Theta\delta) = f + (\Theta g)^T\delta +
    \frac12 \delta^T \Theta H \Theta\, \delta + \dots`, :math:`\Theta = \mathrm{diag}(|\theta|)`.

    Why: under any diagonal map :math:`\theta' = D\theta` that leaves the function unchanged (Dinh et al. 2017's
    rescalings; ``minisgd.theory.reparametrize``), :math:`H' = D^{-1} H D^{-1}` and :math:`\Theta' = |D|\Theta`, so
    :math:`\Theta' H' \Theta' = S\,\Theta H \Theta\, S` with :math:`S = \mathrm{sign}(D)`: the same eigenvalues
    and the same diagonal. All three numbers are invariant, while :math:`\lambda_{\max}(H)` is not. It is the
    curvature that Jiang et al. 2019's magnitude-aware perturbations (:math:`\sigma_i \propto |\theta_i|`) probe:
    ``expected_sharpness(..., sigma=s * abs(theta)).second_order`` equals :math:`\frac{s^2}{2}` ``trace``;
    Petzka et al. 2021's relative flatness is a per-layer relative of it. The radial curvature
    :math:`\theta^T H\theta` is invariant under every linear function-preserving map.

    method: ``"exact"`` (eigh of the dense :math:`\Theta H \Theta`), ``"lanczos"`` (on HVPs
    :math:`v \mapsto |\theta| \odot H(|\theta| \odot v)`, tolerance ``tol``) or ``"auto"`` (exact when the
    Hessian fits in memory). The trace comes from the exact diagonal (``net.hessian_diagonal``).
    """
    if method not in ("auto", "exact", "lanczos"):
        raise ValueError(f"method must be 'auto', 'exact' or 'lanczos', got {method!r}")
    xp = namespace(theta)
    if method == "auto":
        method = "exact" if _hessian_fits(net, theta, X, max_memory) else "lanczos"
    magnitude = xp.abs(theta)  # (P,) the diagonal of Theta
    if method == "exact":
        H = net.hessian(theta, X, y, max_memory=max_memory)
        top = float(exact_spectrum(magnitude[:, None] * H * magnitude[None, :], k=1).values[0])
    else:
        q0 = xp.asarray(np.random.default_rng(seed).standard_normal(net.num_params), dtype=theta.dtype,
                        device=device_of(theta))
        hvp = net.hvp_operator(theta, X, y)
        top = float(lanczos(lambda v: magnitude * hvp(magnitude * v), q0, k=1,
                            which="largest", tol=tol).values[0])
    trace = float(xp.sum(theta * theta * net.hessian_diagonal(theta, X, y)))
    radial = float(xp.sum(theta * net.hvp(theta, X, y, theta)))
    return RelativeSharpness(top, trace, radial, method)


def fisher_rao_norm(net, theta, X, y, chunk=512):
    r"""The empirical Fisher-Rao norm (Liang et al. 2019; one of Jiang et al. 2019's measures), squared:

    .. math::  \lVert\theta\rVert_{fr}^2 = \frac1N \sum_n \langle \theta, \nabla_\theta \ell_n(\theta)\rangle^2
               = \theta^T \hat F \theta, \qquad \hat F = \frac1N \sum_n g_n g_n^T,

    the empirical Fisher with the true labels (Liang et al. take the model's own; on a fit model they are close).
    Invariant under every linear function-preserving map :math:`\theta' = D\theta`, since :math:`\ell_n \circ D =
    \ell_n` gives :math:`g_n' = D^{-T} g_n` and :math:`\langle D\theta, D^{-T} g_n\rangle = \langle\theta, g_n\rangle`.
    The per-example gradients ``(chunk, P)`` are formed ``chunk`` examples at a time. With ``l2 > 0`` each
    :math:`g_n` includes the penalty's gradient :math:`\lambda\theta` (as ``net.per_example_grads`` does).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    xp = namespace(theta)
    total = 0.0
    for start in range(0, X.shape[0], chunk):
        G = net.per_example_grads(theta, X[start:start + chunk], y[start:start + chunk])  # (chunk, P)
        total += float(xp.sum((G @ theta) ** 2))
    return total / X.shape[0]


# ---- summary ------------------------------------------------------------------------------------------

@dataclass
class SharpnessSummary:
    r"""Size of the Hessian in four numbers.

    top_eigenvalue :math:`\lambda_1`; trace :math:`\sum_i\lambda_i` (always exact, from the diagonal);
    frobenius_norm :math:`(\sum_i \lambda_i^2)^{1/2} = \lVert H\rVert_F`;
    effective_dimension :math:`\sum_i \max(\lambda_i, 0)/(\max(\lambda_i, 0) + z)` (MacKay 1992;
    Maddox et al. 2020), negative eigenvalues counted as 0.
    method "exact": all from the dense eigendecomposition. "lanczos": top eigenvalue and effective
    dimension from the ``k`` largest Ritz values (the effective dimension is then a lower bound,
    ``effective_dimension_is_bound``), Frobenius norm by Hutchinson on :math:`\mathrm{tr}(H^2) = \mathbb E\lVert
    Hv\rVert^2` with ``frobenius_stderr`` (delta method; 0 when exact).
    """

    top_eigenvalue: float
    trace: float
    frobenius_norm: float
    effective_dimension: float
    z: float
    method: str
    frobenius_stderr: float = 0.0
    effective_dimension_is_bound: bool = False

    def as_dict(self):
        return {"top_eigenvalue": self.top_eigenvalue, "trace": self.trace,
                "frobenius_norm": self.frobenius_norm, "effective_dimension": self.effective_dimension}


def effective_dimension(eigenvalues, z=1.0):
    r""":math:`\sum_i \lambda_i^+/(\lambda_i^+ + z)`, :math:`\lambda^+ = \max(\lambda, 0)`, ``z > 0``."""
    if not z > 0:
        raise ValueError(f"z must be > 0, got {z!r}")
    lam = np.maximum(np.asarray(eigenvalues, dtype=np.float64), 0.0)
    return float(np.sum(lam / (lam + z)))


def sharpness_summary(net, theta, X, y, z=1.0, method="auto", k=20, num_probes=32, seed=0, max_memory=None):
    """Top eigenvalue, trace, Frobenius norm and effective dimension (with constant ``z``, in the units of
    the Hessian's eigenvalues; in Maddox et al.'s reading, a prior precision) of the Hessian of
    ``net.loss``. ``method``: "exact", "lanczos" or "auto" (exact when the Hessian fits in memory)."""
    if method not in ("auto", "exact", "lanczos"):
        raise ValueError(f"method must be 'auto', 'exact' or 'lanczos', got {method!r}")
    if method == "auto":
        method = "exact" if _hessian_fits(net, theta, X, max_memory) else "lanczos"
    spec = hessian_spectrum(net, theta, X, y, k=None if method == "exact" else min(k, net.num_params),
                            method=method, seed=seed, max_memory=max_memory)
    values = np.asarray(spec.values, dtype=np.float64)
    if method == "exact":
        return SharpnessSummary(float(values[0]), float(values.sum()), float(np.sqrt(np.sum(values ** 2))),
                                effective_dimension(values, z), float(z), "exact")
    xp = namespace(theta)
    rng = np.random.default_rng(seed + 1)
    V = xp.asarray(rng.choice([-1.0, 1.0], size=(net.num_params, num_probes)), dtype=theta.dtype,
                   device=device_of(theta))  # (P, num_probes) Rademacher probes
    samples = to_numpy(xp.sum(net.hvp(theta, X, y, V) ** 2, axis=0)).astype(np.float64)  # ||H v||^2
    mean = float(samples.mean())
    frobenius = math.sqrt(max(mean, 0.0))
    stderr = float(samples.std(ddof=1) / math.sqrt(num_probes)) / (2 * frobenius) if frobenius > 0 else 0.0
    return SharpnessSummary(float(values[0]), hessian_trace(net, theta, X, y), frobenius,
                            effective_dimension(values, z), float(z), "lanczos", stderr, True)
