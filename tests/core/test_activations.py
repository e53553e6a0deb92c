"""Activations: values vs naive formulas, f' and f'' vs central finite differences, stability."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from cases import REFERENCE_ACTIVATIONS
from minisgd.core import activations
from minisgd.testing import DEFAULT_STEP, assert_allclose_relative

NAMES = activations.NAMES
H = DEFAULT_STEP
# Grid on [-6, 6] with an even number of points: symmetric, never exactly 0 (the ReLU kink). The
# nearest points to 0 are +-0.06, far beyond the FD step 1e-5, so ReLU's stencils never cross the kink.
GRID = np.linspace(-6.0, 6.0, 102)


def test_names_are_the_documented_ones():
    assert set(NAMES) == {"identity", "relu", "tanh", "sigmoid", "softplus", "gelu", "silu"}


@pytest.mark.parametrize("name", NAMES)
def test_value_matches_naive_formula(name):
    act = activations.get(name)
    assert act.name == name
    # 1e-12 relative (elementwise), 1e-15 absolute: stable and naive formulas are algebraically equal;
    # on [-6, 6] both are accurate to a few ulps of the larger intermediate (|f| <= 6, so atol 1e-15
    # covers values that pass through 0, e.g. gelu/silu near z = 0 and sigmoid's 1 - s cancellations).
    assert_allclose_relative(act.f(GRID), REFERENCE_ACTIVATIONS[name](GRID), rtol=1e-12, atol=1e-15,
                             what=f"{name}(z) vs naive formula")


@pytest.mark.parametrize("name", NAMES)
def test_first_derivative_matches_central_difference(name):
    act = activations.get(name)
    fd = (act.f(GRID + H) - act.f(GRID - H)) / (2 * H)
    # Central FD with h = 1e-5: truncation h^2 |f'''| / 6 <~ 2e-11, rounding eps |f| / h <~ 1.4e-10
    # (|f| <= 6 on the grid). rtol 1e-6 + atol 1e-8 leaves >= 70x margin; a wrong formula is off by O(1).
    assert_allclose_relative(act.df(GRID), fd, rtol=1e-6, atol=1e-8, what=f"{name}'(z) vs FD of {name}")


@pytest.mark.parametrize("name", NAMES)
def test_second_derivative_matches_central_difference(name):
    act = activations.get(name)
    fd = (act.df(GRID + H) - act.df(GRID - H)) / (2 * H)
    # Same error budget as above with f' in place of f (|f'| <= 1.2, |f''''| = O(1)): FD error ~1e-10.
    assert_allclose_relative(act.d2f(GRID), fd, rtol=1e-6, atol=1e-8, what=f"{name}''(z) vs FD of {name}'")


@pytest.mark.parametrize("name", NAMES)
def test_derivatives_triple_matches_single_functions(name):
    act = activations.get(name)
    f, df, d2f = act.derivatives(GRID)
    # Same formulas evaluated in one pass: equal up to rounding of shared intermediates (1e-14 relative).
    for got, want, what in ((f, act.f(GRID), "f"), (df, act.df(GRID), "f'"), (d2f, act.d2f(GRID), "f''")):
        assert got.shape == GRID.shape
        assert_allclose_relative(got, want, rtol=1e-14, atol=1e-15, what=f"{name}.derivatives()[{what}]")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_and_shape_preserved(name, dtype):
    act = activations.get(name)
    z = GRID.astype(dtype).reshape(6, 17)
    for out in act.derivatives(z):
        assert out.shape == z.shape
        assert out.dtype == dtype


def test_relu_derivatives_exact():
    act = activations.get("relu")
    # exact: relu' is the indicator of z > 0 and relu'' vanishes (no tolerance needed).
    np.testing.assert_array_equal(act.f(GRID), np.where(GRID > 0, GRID, 0.0))
    np.testing.assert_array_equal(act.df(GRID), (GRID > 0).astype(float))
    np.testing.assert_array_equal(act.d2f(GRID), np.zeros_like(GRID))


def test_identity_derivatives_exact():
    act = activations.get("identity")
    np.testing.assert_array_equal(act.f(GRID), GRID)
    np.testing.assert_array_equal(act.df(GRID), np.ones_like(GRID))
    np.testing.assert_array_equal(act.d2f(GRID), np.zeros_like(GRID))


# Limits as z -> +inf / -inf of (f, f', f'') for the saturating activations. None: f ~ z (checked as f == z).
LIMITS = {
    "sigmoid": {+1: (1.0, 0.0, 0.0), -1: (0.0, 0.0, 0.0)},
    "softplus": {+1: (None, 1.0, 0.0), -1: (0.0, 0.0, 0.0)},
    "tanh": {+1: (1.0, 0.0, 0.0), -1: (-1.0, 0.0, 0.0)},
    "silu": {+1: (None, 1.0, 0.0), -1: (0.0, 0.0, 0.0)},
    "gelu": {+1: (None, 1.0, 0.0), -1: (0.0, 0.0, 0.0)},
}


@pytest.mark.parametrize("name", sorted(LIMITS))
@pytest.mark.parametrize("magnitude", [500.0, 1000.0, 1e5])
def test_stable_at_huge_arguments(name, magnitude):
    """|z| = 500 is the documented case; 1000 and 1e5 are where a naive exp(|z|) overflows float64."""
    act = activations.get(name)
    z = np.array([magnitude, -magnitude])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # overflow / invalid value must not even be warned
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            f, df, d2f = act.derivatives(z)
    for out in (f, df, d2f):
        assert np.all(np.isfinite(out)), f"{name} not finite at +-{magnitude}: {f}, {df}, {d2f}"
    for sign, i in ((+1, 0), (-1, 1)):
        for k, (got, want) in enumerate(zip((f[i], df[i], d2f[i]), LIMITS[name][sign])):
            if want is None:
                want = z[i]  # f(z) = z + o(1): relative 1e-15
                assert abs(got - want) <= 1e-15 * abs(want), (name, z[i], k, got)
            else:
                # The deviation from the limit is below e^{-500} ~ 7e-218 (or 0 after rounding);
                # 1e-200 allows that and nothing else.
                assert abs(got - want) <= 1e-200, f"{name}^({k})({z[i]}) = {got!r}, limit {want}"


@pytest.mark.parametrize("name", NAMES)
def test_float32_finite_at_large_arguments(name):
    """In float32 exp overflows already at z ~ 89: the stable forms must stay finite at |z| = 500."""
    act = activations.get(name)
    z = np.array([500.0, -500.0, 88.0, -88.0, 100.0, -100.0], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        outs = act.derivatives(z)
    for out in outs:
        assert out.dtype == np.float32
        assert np.all(np.isfinite(out)), (name, outs)


def test_unknown_activation_lists_names():
    with pytest.raises(ValueError, match=r"swish") as info:
        activations.get("swish")
    for name in NAMES:
        assert name in str(info.value)
