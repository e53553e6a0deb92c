"""Finite-difference checks for hand-derived derivatives.

minisgd has no automatic differentiation: every gradient, per-example gradient, Hessian-vector product
and Hessian is derived by hand. This module is the one tool used to check all of them, in the spirit of
HIPS autograd's ``check_grads``: compare the analytic derivative with a central finite difference along a
few random unit directions. Along a direction the check is a scalar (or one vector) comparison, so it
costs two function evaluations per direction instead of a full Jacobian, and a wrong entry anywhere in
the gradient shows up with probability 1.

Error analysis (float64, central differences)
---------------------------------------------
For a smooth ``f`` and a unit direction ``v`` the central difference satisfies (Taylor to order 3)::

    (f(x + h v) - f(x - h v)) / (2 h)  =  D_v f(x)  +  h**2 / 6 * D_v^3 f(x)  +  O(h**4)

so the *truncation* error is ``O(h**2)`` (about ``h**2 |f'''| / 6``). Evaluating ``f`` in floating
point adds a *rounding* error of about ``eps |f| / h`` (two values, each with relative error ``eps``,
divided by ``2 h``). The total ``h**2 |f'''| / 6 + eps |f| / h`` is smallest at
``h* = (3 eps |f| / |f'''|)**(1/3)``, which for ``eps = 2.2e-16`` and ``|f| ~ |f'''| ~ 1`` is about
``8.7e-6``. Hence :data:`DEFAULT_STEP` ``= 1e-5``: there both errors are about ``2e-11`` (relative to the
size of ``f`` and ``f'''``), so the finite difference agrees with the true derivative to roughly
10 significant digits for the O(1)-scaled functions of a small MLP.

The default tolerances leave a wide margin above that: :data:`DEFAULT_RTOL` ``= 1e-6`` relative, plus
:data:`DEFAULT_ATOL` ``= 1e-8`` absolute for derivatives that happen to be near zero (where the
``eps |f| / h ~ 2e-11 |f|`` rounding floor dominates any relative criterion). A hand-derived formula
with a mistake (a missing term, a wrong sign, a transposed factor, a missing ``1/N``) is wrong by
O(1) relative to the derivative, far above ``1e-6``; a correct one lands near ``1e-10``. The margin of
~4 decades absorbs larger third derivatives (deep nets, saturating activations, ``|f'''|`` up to ~1e4).

Do not use these checks in float32: there ``eps = 1.2e-7`` and the best achievable accuracy is about
``eps**(2/3) ~ 2e-5``; all functions here cast ``x`` to float64 before differencing.

Functions with kinks (ReLU) are only checked correctly where no kink lies within ``h`` of ``x`` along
the direction; the test-suite keeps its ReLU inputs at least ``1e-2`` away from every kink.

All functions take and return NumPy arrays (convert CuPy / array_api_strict results with
``minisgd.backend.to_numpy`` first).
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "DEFAULT_STEP",
    "DEFAULT_RTOL",
    "DEFAULT_ATOL",
    "DEFAULT_NUM_DIRECTIONS",
    "random_unit_directions",
    "directional_derivative",
    "check_gradient",
    "check_jacobian_vector",
    "finite_difference_jacobian",
    "assert_allclose_relative",
]

#: Central-difference step for float64: balances truncation ``h**2 |f'''| / 6`` against rounding
#: ``eps |f| / h`` (optimum ``(3 eps)**(1/3) ~ 8.7e-6`` for O(1) functions), see the module docstring.
DEFAULT_STEP = 1e-5
#: Relative tolerance of a finite-difference check: the achievable agreement at ``h = 1e-5`` is ~1e-10,
#: a wrong formula is off by O(1); 1e-6 separates the two with decades to spare.
DEFAULT_RTOL = 1e-6
#: Absolute tolerance for derivatives near zero, ~500x the rounding floor ``eps |f| / h ~ 2e-11 |f|``
#: of an O(1) function.
DEFAULT_ATOL = 1e-8
#: Random directions per check: one wrong entry is caught by every random direction with probability 1,
#: a few directions guard against an unlucky near-orthogonal draw.
DEFAULT_NUM_DIRECTIONS = 4


def _as_float64(x):
    x = np.asarray(x)
    if x.dtype != np.float64:
        x = x.astype(np.float64)
    return x


def random_unit_directions(shape, num, seed=0):
    """``num`` independent directions of shape ``shape``, each with Euclidean norm 1.

    Drawn as standard normal vectors normalised to unit length (uniform on the sphere), from
    ``numpy.random.default_rng(seed)``. Returns an array of shape ``(num,) + shape``.
    """
    shape = tuple(shape)
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((num,) + shape)
    norms = np.sqrt(np.sum(v.reshape(num, -1) ** 2, axis=1))
    return v / norms.reshape((num,) + (1,) * len(shape))


def directional_derivative(f, x, v, h=DEFAULT_STEP):
    """Central finite difference of ``f`` at ``x`` along ``v``.

    ``(f(x + h v) - f(x - h v)) / (2 h)``, an approximation of ``J_f(x) v`` with error
    ``h**2 / 6 * D_v^3 f(x) + O(h**4)`` (truncation) plus about ``eps |f| / h`` (rounding).

    Parameters
    ----------
    f : callable
        Maps an array of the shape of ``x`` to a scalar or an array of any fixed shape ``S``.
    x, v : array, same shape
        Point and direction (float64; ``v`` is used as given, not normalised).
    h : float
        Step, :data:`DEFAULT_STEP` by default.

    Returns
    -------
    float if ``f`` is scalar-valued, else ndarray of shape ``S``.
    """
    x = _as_float64(x)
    v = _as_float64(v)
    if x.shape != v.shape:
        raise ValueError(f"direction shape {v.shape} differs from point shape {x.shape}")
    fp = np.asarray(f(x + h * v), dtype=np.float64)
    fm = np.asarray(f(x - h * v), dtype=np.float64)
    d = (fp - fm) / (2.0 * h)
    return float(d) if d.ndim == 0 else d


def check_gradient(f, grad_f, x, *, num_directions=DEFAULT_NUM_DIRECTIONS, h=DEFAULT_STEP,
                   rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL, seed=0, what="gradient"):
    """Check a gradient against central finite differences along random unit directions.

    For each unit direction ``v`` (the normalised gradient itself, then ``num_directions`` random ones)
    compares the scalars::

        analytic = <grad_f(x), v>          numeric = (f(x + h v) - f(x - h v)) / (2 h)

    and requires ``|analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|)``. The direction
    along the gradient gives the largest directional derivative ``||grad||`` and so catches a wrongly
    scaled gradient; random directions catch wrong individual entries.

    Parameters
    ----------
    f : callable, ``x -> float``
        Scalar function.
    grad_f : callable, ``x -> array of x.shape``
        Its claimed gradient.
    x : array of any shape (cast to float64)
    num_directions, h, rtol, atol, seed : see module constants.
    what : str
        Name used in the failure message.

    Returns
    -------
    float
        The worst ``|analytic - numeric| / tolerance`` ratio (< 1 on success).

    Raises
    ------
    AssertionError
        Naming the failing direction, both values and the tolerance.
    """
    x = _as_float64(x)
    g = _as_float64(grad_f(x))
    if g.shape != x.shape:
        raise AssertionError(f"{what}: shape {g.shape} differs from the point's shape {x.shape}")
    if not np.all(np.isfinite(g)):
        raise AssertionError(f"{what}: contains non-finite entries")
    directions = list(random_unit_directions(x.shape, num_directions, seed))
    gnorm = float(np.sqrt(np.sum(g * g)))
    if gnorm > 0:
        directions.insert(0, g / gnorm)
    worst = 0.0
    failures = []
    for i, v in enumerate(directions):
        analytic = float(np.sum(g * v))
        numeric = directional_derivative(f, x, v, h)
        err = abs(analytic - numeric)
        tol = atol + rtol * max(abs(analytic), abs(numeric))
        worst = max(worst, err / tol)
        if not err <= tol:  # also fails on NaN
            label = "gradient direction" if (gnorm > 0 and i == 0) else f"random direction {i}"
            failures.append(f"{label}: analytic {analytic:.12e}, central difference {numeric:.12e}, "
                            f"|diff| {err:.3e} > tol {tol:.3e}")
    if failures:
        raise AssertionError(f"{what} disagrees with central finite differences (h={h:g}, rtol={rtol:g}, "
                             f"atol={atol:g}) along {len(failures)} of {len(directions)} directions:\n  "
                             + "\n  ".join(failures))
    return worst


def check_jacobian_vector(f_vec, jac_vec, x, *, num_directions=DEFAULT_NUM_DIRECTIONS, h=DEFAULT_STEP,
                          rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL, seed=0, what="Jacobian-vector product"):
    """Check a Jacobian-vector product of a vector-valued map against central finite differences.

    ``f_vec`` maps ``x`` (shape ``S_in``) to an array of shape ``S_out``; ``jac_vec(x, v)`` claims to
    return ``J(x) v`` (shape ``S_out``), ``J = d f_vec / d x``. For each random unit direction ``v``
    compares the vectors::

        analytic = jac_vec(x, v)           numeric = (f_vec(x + h v) - f_vec(x - h v)) / (2 h)

    in the max norm, relative to the larger of the two:
    ``max|analytic - numeric| <= atol + rtol * max(max|analytic|, max|numeric|)``.
    Examples: ``f_vec`` = gradient and ``jac_vec`` = Hessian-vector product; ``f_vec`` = network
    output and ``jac_vec`` = output Jacobian times ``v``.

    Returns the worst error/tolerance ratio; raises AssertionError naming the worst entry on failure.
    """
    x = _as_float64(x)
    worst = 0.0
    failures = []
    for i, v in enumerate(random_unit_directions(x.shape, num_directions, seed)):
        analytic = _as_float64(jac_vec(x, v))
        numeric = np.asarray(directional_derivative(f_vec, x, v, h))
        if analytic.shape != numeric.shape:
            raise AssertionError(f"{what}: shape {analytic.shape} differs from the finite difference's "
                                 f"shape {numeric.shape}")
        diff = np.abs(analytic - numeric)
        scale = max(float(np.max(np.abs(analytic), initial=0.0)), float(np.max(np.abs(numeric), initial=0.0)))
        tol = atol + rtol * scale
        err = float(np.max(diff, initial=0.0)) if np.all(np.isfinite(diff)) else float("inf")
        worst = max(worst, err / tol)
        if not err <= tol:
            j = np.unravel_index(int(np.argmax(np.where(np.isfinite(diff), diff, np.inf))), diff.shape)
            failures.append(f"direction {i}: worst entry {tuple(int(k) for k in j)}: analytic "
                            f"{analytic[j]:.12e}, central difference {numeric[j]:.12e}, "
                            f"max|diff| {err:.3e} > tol {tol:.3e}")
    if failures:
        raise AssertionError(f"{what} disagrees with central finite differences (h={h:g}, rtol={rtol:g} "
                             f"relative to the max entry, atol={atol:g}) along {len(failures)} directions:\n  "
                             + "\n  ".join(failures))
    return worst


def finite_difference_jacobian(f, x, h=DEFAULT_STEP):
    """Dense Jacobian by central differences, one column per coordinate of ``x``.

    ``J[..., j] = (f(x + h e_j) - f(x - h e_j)) / (2 h)`` for ``j < x.size`` (``x`` flattened in
    row-major order). Costs ``2 * x.size`` evaluations of ``f``, so it is meant for small ``x`` (a few
    hundred parameters). Applied to a gradient it gives the Hessian (FD error about ``h**2 |f'''| + eps |g| / h``
    per entry, about 1e-10 for O(1) quantities).

    Parameters
    ----------
    f : callable
        Maps an array of ``x``'s shape to an array of fixed shape ``S`` (or a scalar, ``S = ()``).
    x : array (cast to float64)
    h : float

    Returns
    -------
    ndarray of shape ``S + (x.size,)``.
    """
    x = _as_float64(x)
    flat = x.ravel()
    cols = []
    for j in range(flat.size):
        e = np.zeros_like(flat)
        e[j] = h
        fp = np.asarray(f((flat + e).reshape(x.shape)), dtype=np.float64)
        fm = np.asarray(f((flat - e).reshape(x.shape)), dtype=np.float64)
        cols.append((fp - fm) / (2.0 * h))
    if not cols:
        out_shape = np.asarray(f(x)).shape
        return np.zeros(out_shape + (0,))
    return np.stack(cols, axis=-1)


def assert_allclose_relative(actual, expected, *, rtol, atol=0.0, what="values", relative_to="elementwise"):
    """Assert ``actual`` matches ``expected`` entrywise, with a message naming the worst entry.

    Each entry must satisfy ``|actual - expected| <= atol + rtol * s`` where ``s`` is

    - ``relative_to="elementwise"``: ``|expected[i]|`` (like ``numpy.testing.assert_allclose``);
    - ``relative_to="max"``: ``max |expected|`` over all entries, i.e. a norm-wise relative error. Use
      this for matrices whose small entries carry the absolute rounding error of the large ones (Hessians,
      sums of many terms, finite differences).

    Shapes must be equal (no broadcasting); NaN in either array fails unless both are equal.

    Raises
    ------
    AssertionError
        ``"<what>: k of n entries differ ...; worst at index (i, j): actual ..., expected ..., |diff| ... > tol ..."``
    """
    a = _as_float64(actual)
    e = _as_float64(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {a.shape} differs from expected shape {e.shape}")
    if relative_to == "elementwise":
        tol = atol + rtol * np.abs(e)
    elif relative_to == "max":
        scale = float(np.max(np.abs(e), initial=0.0))
        tol = np.full(e.shape, atol + rtol * scale)
    else:
        raise ValueError(f"relative_to must be 'elementwise' or 'max', not {relative_to!r}")
    diff = np.abs(a - e)
    # NaN differences count as failures; exact equality (also of infinities) always passes.
    bad = ~(diff <= tol) & ~(a == e)
    if np.any(bad):
        excess = np.where(bad, np.where(np.isfinite(diff), diff / np.maximum(tol, 1e-300), np.inf), -1.0)
        idx = np.unravel_index(int(np.argmax(excess)), excess.shape) if excess.ndim else ()
        where = f" at index {tuple(int(i) for i in idx)}" if idx else ""
        scale_txt = "max |expected|" if relative_to == "max" else "|expected|"
        finite = np.isfinite(diff)
        max_rel = float(np.max(diff[finite] / np.maximum(np.abs(e[finite]), 1e-300), initial=0.0)) if np.any(finite) else float("nan")
        raise AssertionError(
            f"{what}: {int(np.sum(bad))} of {a.size} entries differ beyond atol={atol:g} + rtol={rtol:g} * "
            f"{scale_txt}; worst{where}: actual {a[idx]!r}, expected {e[idx]!r}, |diff| {diff[idx]:.3e} > tol "
            f"{tol[idx]:.3e} (max |diff| {float(np.max(np.where(finite, diff, np.inf))):.3e}, "
            f"max elementwise relative {max_rel:.3e})")
