r"""Linear stability of a minimum: how large a step gradient descent and SGD can take before they leave it.

**GD.** Near a minimum :math:`\theta^*` the loss is the quadratic model
:math:`L(\theta^* + x) = L^* + \tfrac12 x^T H x`, on which a GD step is the linear map

.. math::
    x_{t+1} = (I - \eta H)\, x_t, \qquad x_t = \sum_i (1 - \eta\lambda_i)^t (u_i^T x_0)\, u_i ,

so the component along the eigenvector :math:`u_i` is multiplied by :math:`1 - \eta\lambda_i` every step. For
:math:`H \succeq 0` the minimum is stable iff every :math:`|1 - \eta\lambda_i| \le 1`, i.e.
:math:`\eta \le \eta^* = 2/\lambda_{max}` (the classical bound; Cohen et al. 2021 call :math:`2/\eta` the edge of
stability). Just above it the top direction grows by :math:`|1 - \eta\lambda_{max}| > 1` per step.

**SGD** (Wu, Ma & E 2018, "How SGD selects the global minima in over-parameterized learning: a dynamical stability
perspective", NeurIPS). At a global minimum of an over-parameterized model every per-example gradient vanishes,
and the linearized SGD step with batch :math:`\mathcal B_t` is :math:`x_{t+1} = (I - \eta H_{\mathcal B_t}) x_t`,
:math:`H_{\mathcal B} = \frac1B \sum_{i\in\mathcal B} H_i` (per-example Hessians :math:`H_i`, mean :math:`H`).
The second moment :math:`M_t = E[x_t x_t^T]` evolves linearly,

.. math::
    \operatorname{vec} M_{t+1} = T\, \operatorname{vec} M_t, \qquad
    T = E[(I - \eta H_{\mathcal B}) \otimes (I - \eta H_{\mathcal B})]
      = I \otimes I - \eta (H \otimes I + I \otimes H) + \eta^2 E[H_{\mathcal B} \otimes H_{\mathcal B}],

    E[H_{\mathcal B} \otimes H_{\mathcal B}] = H \otimes H + c_B \Big(\frac1N \sum_i H_i \otimes H_i
      - H \otimes H\Big), \qquad c_B = \frac1B \text{ (with replacement)}, \quad
      c_B = \frac{N - B}{B (N - 1)} \text{ (without)},

(the covariance of a mean of B draws, with the finite-population factor without replacement), and SGD is
*mean-square stable* iff the spectral radius :math:`\rho(T) \le 1`: that is the exact criterion. T is symmetric
(a sum of Kronecker squares of symmetric matrices) and :math:`M \mapsto E[A M A^T]` maps positive semidefinite
matrices to positive semidefinite ones, so :math:`\rho(T)` is its largest eigenvalue (Evans & Hoegh-Krohn 1978),
and :math:`\rho(T) \le 1 \iff A_1 - \eta A_2 \succeq 0` with :math:`A_1 = H \otimes I + I \otimes H`,
:math:`A_2 = E[H_{\mathcal B} \otimes H_{\mathcal B}]`: the threshold is a generalized eigenvalue,
:math:`\eta^*_B = 1 / \lambda_{max}(A_1^{-1/2} A_2 A_1^{-1/2})` on the range of :math:`A_1`
(for B = N it is :math:`2/\lambda_{max}`).

Wu et al. summarize the minimum by its sharpness :math:`a = \lambda_{max}(H)` and non-uniformity
:math:`s = \lambda_{max}(\Sigma)^{1/2}`, :math:`\Sigma = \frac1N\sum_i H_i^2 - H^2`. What holds:

* P = 1: :math:`T = (1 - \eta a)^2 + \eta^2 c_B s^2`; the condition :math:`(1-\eta a)^2 + \eta^2 c_B s^2 \le 1`
  is exact (:func:`wu_condition`).
* P > 1: :math:`a \le 2/\eta` is necessary (the mean :math:`E x_t = (I - \eta H)^t x_0` must not grow, and
  :math:`E|x_t|^2 \ge |E x_t|^2`); :math:`\lambda_{max}\big((I - \eta H)^2 + \eta^2 c_B \Sigma\big) \le 1` is
  sufficient (it says :math:`E|x_{t+1}|^2 \le |x_t|^2` for every :math:`x_t`; :math:`(I - \eta H)^2 +
  \eta^2 c_B \Sigma = E[(I - \eta H_{\mathcal B})^2]`). Neither is exact; :func:`sgd_radius` is. The
  non-uniformity bound :math:`s \le 1/(\eta\sqrt{c_B})` that the 1-D condition implies is *not* necessary in
  P > 1, and Wu et al.'s (a, s) expression is neither necessary nor sufficient: at the exact threshold of random
  PSD examples it lies on both sides of 1 and :math:`\eta^2 c_B s^2` reaches 1.2 (tests/test_stability.py).

Shapes: ``H: (P, P)``, ``Hs: (N, P, P)`` per-example Hessians, ``x0: (P,)``; T is ``(P^2, P^2)``, so the SGD
routines are for small P (about 100 at most: 8 P^4 bytes); :func:`check_operator_fits` says so before allocating.
"""
from dataclasses import dataclass
import numpy as np

from ..backend import to_numpy
from ..errors import HessianTooLargeError, ShapeError
from ..core.hessian import GIB

# eigenvalues of H below this fraction of lambda_max are flat directions (factor 1 - eta lambda = 1)
FLAT_RTOL = 1e-10


# ---- input checks -------------------------------------------------------------------------------------------

def _checked_step(eta):
    if not (np.isfinite(eta) and eta > 0):
        raise ValueError(f"the step size eta must be a finite number > 0, got {eta!r}")
    return float(eta)


def _checked_symmetric(H, name="H", rtol=1e-10):
    """``H`` as a float64 NumPy ``(..., P, P)`` array; an error if it is not square, finite and symmetric."""
    H = np.asarray(to_numpy(H), dtype=np.float64)
    if H.ndim < 2 or H.shape[-1] != H.shape[-2]:
        raise ShapeError(f"{name} must be square (..., P, P), got shape {H.shape}")
    if not np.all(np.isfinite(H)):
        raise ValueError(f"{name} contains NaN or inf")
    asym = np.max(np.abs(H - np.swapaxes(H, -1, -2)), initial=0.0)
    scale = max(np.max(np.abs(H), initial=0.0), np.finfo(float).tiny)
    if asym > rtol * scale:
        raise ValueError(f"{name} is not symmetric: max |{name} - {name}^T| = {asym:.3g} (of max |{name}| = "
                         f"{scale:.3g}); a Hessian is symmetric, symmetrize it with ({name} + {name}^T) / 2 if "
                         "the asymmetry is rounding")
    return 0.5 * (H + np.swapaxes(H, -1, -2))


def _checked_batch(B, N):
    if int(B) != B or not 1 <= B <= N:
        raise ValueError(f"the batch size B must be an integer in 1 .. N = {N}, got {B!r}")
    return int(B)


# ---- GD ------------------------------------------------------------------------------------------------------

def gd_factors(H, eta):
    r"""``(lambdas, factors)``: the eigenvalues of ``H`` (descending) and GD's per-direction factors
    :math:`|1 - \eta\lambda_i|`; GD on the quadratic model is stable iff every factor is <= 1."""
    lambdas = np.linalg.eigvalsh(_checked_symmetric(H))[::-1]
    return lambdas, np.abs(1.0 - _checked_step(eta) * lambdas)


def gd_threshold(H):
    r""":math:`\eta^* = 2/\lambda_{max}(H)`, the largest stable GD step on the quadratic model of ``H: (P, P)``.

    An error if :math:`\lambda_{max} \le 0` (no curvature: every step is stable along the flat directions, and a
    negative direction is unstable for every step)."""
    lam = np.linalg.eigvalsh(_checked_symmetric(H))[-1]
    if not lam > 0:
        raise ValueError(f"lambda_max(H) = {lam:.3g} <= 0: no positive curvature, so no step-size threshold")
    return 2.0 / lam


def gd_on_quadratic(H, x0, eta, steps):
    r"""GD on :math:`\tfrac12 x^T H x`: the iterates ``(steps + 1, P)``, :math:`x_{t+1} = x_t - \eta H x_t`."""
    H = _checked_symmetric(H)
    eta = _checked_step(eta)
    x = np.asarray(to_numpy(x0), dtype=np.float64)
    if x.shape != H.shape[:1]:
        raise ShapeError(f"x0 must have shape ({H.shape[0]},), got {x.shape}")
    xs = [x]
    for _ in range(int(steps)):
        x = x - eta * (H @ x)
        xs.append(x)
    return np.array(xs)


def growth_rate(norms, last=None):
    r"""The geometric mean of :math:`|x_{t+1}| / |x_t|` over the last ``last`` steps (default: all) of
    ``norms: (T + 1,)``, i.e. :math:`(|x_T| / |x_{T - last}|)^{1/last}`."""
    norms = np.asarray(norms, dtype=np.float64)
    last = len(norms) - 1 if last is None else int(last)
    if not 1 <= last < len(norms):
        raise ValueError(f"last must lie in 1 .. {len(norms) - 1}, got {last}")
    return float((norms[-1] / norms[-1 - last]) ** (1.0 / last))


@dataclass(frozen=True)
class Threshold:
    """GD's step-size threshold at ``theta``: ``lambda_max``, ``eta_star = 2 / lambda_max`` and the top
    eigenvector ``vector: (P,)`` (NumPy, unit norm), with how it was found (``"exact"`` or ``"lanczos"``)."""

    lambda_max: float
    eta_star: float
    vector: np.ndarray
    method: str


def gd_threshold_of_net(net, theta, X, y, method="auto", seed=0):
    r"""GD's threshold :math:`2/\lambda_{max}` of the training loss of ``net`` at ``theta`` (meaningful at a
    minimizer, where the quadratic model holds), from :func:`minisgd.curvature.eigen.hessian_spectrum` (``"exact"``:
    ``eigh`` of the exact Hessian; ``"lanczos"``: on Hessian-vector products; ``"auto"``: exact if it fits)."""
    from ..curvature.eigen import hessian_spectrum

    spec = hessian_spectrum(net, theta, X, y, k=1, method=method, return_vectors=True, seed=seed)
    lam = float(spec.values[0])
    if not lam > 0:
        raise ValueError(f"lambda_max = {lam:.3g} <= 0 at theta: not near a minimum, no step-size threshold")
    v = np.asarray(to_numpy(spec.vectors[:, 0]), dtype=np.float64)
    return Threshold(lam, 2.0 / lam, v / np.linalg.norm(v), spec.method)


# ---- SGD: the second-moment operator ---------------------------------------------------------------------------

def per_example_hessians(net, theta, X, y):
    r"""``(N, P, P)``: the exact Hessian of each example's loss (plus the net's L2 term), their mean is
    ``net.hessian``. N full Hessians: for small P."""
    return np.stack([np.asarray(to_numpy(net.hessian(theta, X[i:i + 1], y[i:i + 1])), dtype=np.float64)
                     for i in range(X.shape[0])])


def curved_subspace(Hs, rtol=FLAT_RTOL):
    r"""``(Hs_c: (N, k, k), U: (P, k))``: the per-example Hessians restricted to the k eigen-directions of their
    mean H with :math:`\lambda_i >` ``rtol`` x :math:`\lambda_{max}`, :math:`H_{c,i} = U^T H_i U`.

    Exact for the SGD dynamics when every :math:`H_i` vanishes on the rest (true when all :math:`H_i \succeq 0`,
    as at an interpolating minimum of the MSE, where :math:`H_i = J_i^T J_i`): there x is not moved at all, the
    operator T is 1 on those directions, and the curved block alone decides growth or decay. There
    :math:`k \le N K`, so an over-parameterized net (P >> N K) gets a small operator. An error if some
    :math:`H_i` does not vanish on the flat directions (relative to ``max |H_i|``, tolerance 1e-8)."""
    Hs = _checked_symmetric(Hs, "Hs")
    lambdas, U = np.linalg.eigh(Hs.mean(axis=0))
    curved = lambdas > rtol * max(lambdas[-1], 0.0)
    flat = U[:, ~curved]
    leak = np.max(np.abs(Hs @ flat), initial=0.0)
    if leak > 1e-8 * np.max(np.abs(Hs)):
        raise ValueError(f"the per-example Hessians do not vanish on the flat directions of their mean (max |H_i u| "
                         f"= {leak:.3g}): restricting to the curved subspace would not be exact here (a non-PSD "
                         "H_i, or not a minimum); use the full operator")
    Uc = U[:, curved]
    return np.einsum("pi,npq,qj->nij", Uc, Hs, Uc), Uc


def batch_variance_factor(N, B, replacement):
    r"""``c_B``: :math:`\mathrm{Cov}` of a mean of B of N items over the population covariance (1/N):
    :math:`1/B` with replacement, :math:`(N - B) / (B (N - 1))` without (zero for B = N)."""
    if replacement:  # B draws with replacement: any B >= 1, even above N
        if int(B) != B or B < 1:
            raise ValueError(f"the batch size B must be an integer >= 1, got {B!r}")
        return 1.0 / int(B)
    B = _checked_batch(B, N)
    return (N - B) / (B * (N - 1)) if N > 1 else 0.0


def operator_memory_bytes(P, itemsize=8):
    """Bytes for the ``(P^2, P^2)`` operator and ``eigvalsh``'s copy and work space (about 3 such matrices)."""
    return 3 * itemsize * P ** 4


def check_operator_fits(P, max_memory=2 * GIB):
    """Raise ``HessianTooLargeError`` before allocating if the ``(P^2, P^2)`` operator would not fit."""
    need = operator_memory_bytes(P)
    if need > max_memory:
        raise HessianTooLargeError(
            f"the SGD second-moment operator for P = {P} parameters is a {P * P} x {P * P} matrix: it needs "
            f"{need / GIB:.2f} GiB with eigvalsh's work space, over the limit of {max_memory / GIB:.2f} GiB. "
            "Use a smaller model (P <= ~100), or restrict the problem to a k-dimensional subspace with "
            "orthonormal V: (P, k), Hs -> V.T @ Hs @ V (an approximation: the dynamics need not stay in it), "
            "or pass max_memory=<bytes> if you know better.")


def _per_example(Hs, B, replacement, max_memory):
    Hs = _checked_symmetric(Hs, "Hs")
    if Hs.ndim != 3:
        raise ShapeError(f"Hs must hold per-example Hessians (N, P, P), got shape {Hs.shape}")
    N, P = Hs.shape[0], Hs.shape[1]
    check_operator_fits(P, max_memory)
    return Hs, N, P, batch_variance_factor(N, B, replacement)


def _kron_moments(Hs, c):
    r"""``(A1, A2)``: :math:`H\otimes I + I\otimes H` and :math:`E[H_B \otimes H_B]`, each ``(P^2, P^2)``."""
    N, P, _ = Hs.shape
    H = Hs.mean(axis=0)
    I = np.eye(P)
    HH = np.kron(H, H)
    mean_kron = np.einsum("nij,nkl->ikjl", Hs, Hs).reshape(P * P, P * P) / N  # (1/N) sum_n H_n kron H_n
    return np.kron(H, I) + np.kron(I, H), HH + c * (mean_kron - HH)


def sgd_operator(Hs, eta, B, replacement=False, max_memory=2 * GIB):
    r"""The second-moment operator :math:`T = E[(I - \eta H_{\mathcal B}) \otimes (I - \eta H_{\mathcal B})]`,
    ``(P^2, P^2)``, in closed form (module docstring) from per-example Hessians ``Hs: (N, P, P)``;
    :math:`\operatorname{vec} M_{t+1} = T \operatorname{vec} M_t` (row-major vec)."""
    eta = _checked_step(eta)
    Hs, N, P, c = _per_example(Hs, B, replacement, max_memory)
    A1, A2 = _kron_moments(Hs, c)
    return np.eye(P * P) - eta * A1 + eta ** 2 * A2


def sgd_radius(Hs, eta, B, replacement=False, max_memory=2 * GIB):
    r""":math:`\rho(T)`, the spectral radius of the SGD second-moment operator: SGD with step ``eta`` and batch
    ``B`` is mean-square stable at the minimum iff it is <= 1 (Wu et al. 2018); :math:`E|x_t|^2` grows or
    shrinks like :math:`\rho(T)^t`."""
    return float(np.max(np.abs(np.linalg.eigvalsh(sgd_operator(Hs, eta, B, replacement, max_memory)))))


def sgd_threshold(Hs, B, replacement=False, max_memory=2 * GIB):
    r"""The exact mean-square threshold :math:`\eta^*_B = \sup\{\eta : \rho(T(\eta)) \le 1\}`.

    :math:`\rho(T) \le 1 \iff A_1 - \eta A_2 \succeq 0`, so :math:`\eta^*_B = 1/\lambda_{max}(A_1^{-1/2} A_2
    A_1^{-1/2})` on the range of :math:`A_1` (whose eigenpairs are :math:`\lambda_i + \lambda_j`,
    :math:`u_i \otimes u_j`). Directions with :math:`\lambda_i + \lambda_j \le` ``FLAT_RTOL`` x the largest are
    flat and dropped (there :math:`A_2` vanishes too when every :math:`H_i \succeq 0`). An error if H has a
    negative eigenvalue beyond that tolerance (then no step is stable). B = N without replacement gives
    :math:`2/\lambda_{max}`."""
    Hs, N, P, c = _per_example(Hs, B, replacement, max_memory)
    lambdas, U = np.linalg.eigh(Hs.mean(axis=0))
    if lambdas[0] < -FLAT_RTOL * max(lambdas[-1], 0.0):
        raise ValueError(f"the mean Hessian has a negative eigenvalue {lambdas[0]:.3g}: not a minimum, and no "
                         "step size is stable along that direction")
    Ht = np.einsum("pi,npq,qj->nij", U, Hs, U)  # (N, P, P): each H_n in H's eigenbasis
    A1, A2 = _kron_moments(Ht, c)
    d = np.diag(A1)  # lambda_i + lambda_j: A1 is diagonal in this basis
    keep = d > FLAT_RTOL * d.max()
    scale = 1.0 / np.sqrt(d[keep])
    K = A2[np.ix_(keep, keep)] * scale[:, None] * scale[None, :]
    return float(1.0 / np.linalg.eigvalsh(K)[-1])


def second_moment_after(Hs, eta, B, M0, steps, replacement=False, max_memory=2 * GIB):
    r""":math:`E[x_t x_t^T]` after ``steps`` SGD steps on the quadratic model from :math:`E[x_0 x_0^T] =` ``M0``:
    ``(P, P)``, by :math:`\operatorname{vec} M_t = T^t \operatorname{vec} M_0`; its trace is :math:`E|x_t|^2`."""
    T = sgd_operator(Hs, eta, B, replacement, max_memory)
    M0 = np.asarray(M0, dtype=np.float64)
    P = int(round(np.sqrt(T.shape[0])))
    if M0.shape != (P, P):
        raise ShapeError(f"M0 must have shape ({P}, {P}), got {M0.shape}")
    m = M0.reshape(-1)
    for _ in range(int(steps)):
        m = T @ m
    return m.reshape(P, P)


# ---- Wu et al.'s sharpness and non-uniformity -------------------------------------------------------------------

@dataclass(frozen=True)
class SharpnessNonuniformity:
    """Wu et al. 2018's ``a = lambda_max(H)`` and ``s = sqrt(lambda_max(mean_i H_i^2 - H^2))``."""

    a: float
    s: float


def sharpness_nonuniformity(Hs):
    r""":math:`a = \lambda_{max}(H)` and :math:`s = \lambda_{max}(\frac1N\sum_i H_i^2 - H^2)^{1/2}` of
    per-example Hessians ``Hs: (N, P, P)`` (Wu, Ma & E 2018, section 3)."""
    Hs = _checked_symmetric(Hs, "Hs")
    H = Hs.mean(axis=0)
    Sigma = np.einsum("nij,njk->ik", Hs, Hs) / Hs.shape[0] - H @ H
    return SharpnessNonuniformity(float(np.linalg.eigvalsh(H)[-1]),
                                  float(np.sqrt(max(np.linalg.eigvalsh(Sigma)[-1], 0.0))))


def wu_condition(a, s, eta, B, N, replacement=False):
    r""":math:`(1 - \eta a)^2 + \eta^2 c_B s^2` (Wu et al. 2018, eq. 9): stable iff <= 1 in one dimension,
    where it equals :math:`\rho(T)`. In P > 1 dimensions, with :math:`a, s` of :func:`sharpness_nonuniformity`,
    it bounds neither side exactly; use :func:`sgd_radius` (module docstring)."""
    eta = _checked_step(eta)
    return (1.0 - eta * a) ** 2 + eta ** 2 * batch_variance_factor(N, B, replacement) * s ** 2


def sufficient_condition(Hs, eta, B, replacement=False):
    r""":math:`\lambda_{max}(E[(I - \eta H_{\mathcal B})^2]) = \lambda_{max}((I - \eta H)^2 + \eta^2 c_B \Sigma)`:
    when <= 1, :math:`E|x_{t+1}|^2 \le |x_t|^2` for every :math:`x_t`, so SGD is mean-square stable (sufficient,
    not necessary, for P > 1)."""
    eta = _checked_step(eta)
    Hs = _checked_symmetric(Hs, "Hs")
    N, P = Hs.shape[0], Hs.shape[1]
    c = batch_variance_factor(N, B, replacement)
    H = Hs.mean(axis=0)
    A = np.eye(P) - eta * H
    Sigma = np.einsum("nij,njk->ik", Hs, Hs) / N - H @ H
    return float(np.linalg.eigvalsh(A @ A + eta ** 2 * c * Sigma)[-1])
