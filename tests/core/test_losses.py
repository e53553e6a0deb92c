"""Losses on the network outputs: value, gradient, Hessian, Hessian-vector product, stability."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from cases import reference_loss_values
from minisgd.core import losses
from minisgd.testing import assert_allclose_relative, check_gradient, finite_difference_jacobian
import minisgd as ms

LOSSES = ("cross_entropy", "mse")
N, K = 6, 4


def make(loss, rng, scale=2.0, n=N, k=K):
    """Moderate logits Z ~ N(0, scale^2) and matching targets."""
    Z = scale * rng.standard_normal((n, k))
    if loss == "cross_entropy":
        y = rng.integers(0, k, size=n)
    else:
        y = rng.standard_normal((n, k))
    return Z, y


def test_names():
    for name in LOSSES:
        assert losses.get(name).name == name


def test_unknown_loss_lists_names():
    with pytest.raises(ValueError, match=r"hinge") as info:
        losses.get("hinge")
    for name in LOSSES:
        assert name in str(info.value)


@pytest.mark.parametrize("loss", LOSSES)
def test_value_matches_naive_formula(loss, rng):
    fn = losses.get(loss)
    Z, y = make(loss, rng)
    v = fn.value(Z, y)
    assert v.shape == (N,)
    # Algebraically equal (log-sum-exp with or without the max shift); at |z| <~ 6 both are accurate to a
    # few ulps of O(10) intermediates: 1e-12 relative + 1e-14 absolute (losses can be ~1e-3).
    assert_allclose_relative(v, reference_loss_values(loss, Z, y), rtol=1e-12, atol=1e-14,
                             what=f"{loss} value vs naive formula")


def test_cross_entropy_known_values():
    fn = losses.get("cross_entropy")
    Z = np.array([[0.0, 0.0, 0.0], [np.log(2.0), 0.0, 0.0], [5.0, 5.0, 5.0]])
    y = np.array([0, 0, 2])
    # exact: log 3; log 4 - log 2 = log 2; log 3 (shift invariance). 1e-15 relative: a few ulps.
    assert_allclose_relative(fn.value(Z, y), np.array([np.log(3), np.log(2), np.log(3)]), rtol=1e-15,
                             what="cross_entropy at hand-computed logits")


def test_mse_is_half_squared_error_summed_over_outputs():
    fn = losses.get("mse")
    Z = np.array([[1.0, 2.0], [0.0, -1.0]])
    Y = np.array([[0.0, 0.0], [1.0, 1.0]])
    np.testing.assert_allclose(fn.value(Z, Y), [2.5, 2.5], rtol=1e-15)  # (1 + 4)/2, (1 + 4)/2
    np.testing.assert_allclose(fn.grad(Z, Y), Z - Y, rtol=0, atol=0)


def test_mse_accepts_1d_targets_when_single_output(rng):
    """Contract: mse y is (N, K), or (N,) when K == 1. Must not broadcast (N, 1) - (N,) to (N, N)."""
    fn = losses.get("mse")
    Z = rng.standard_normal((5, 1))
    y = rng.standard_normal(5)
    # same numbers, different target shape: results must be identical (exactly the same arithmetic)
    np.testing.assert_array_equal(fn.value(Z, y), fn.value(Z, y[:, None]))
    assert np.shape(fn.grad(Z, y)) == (5, 1)
    np.testing.assert_array_equal(fn.grad(Z, y), fn.grad(Z, y[:, None]))


@pytest.mark.parametrize("loss", LOSSES)
def test_stable_at_huge_logits(loss, rng):
    fn = losses.get(loss)
    Z, y = make(loss, rng, scale=1e3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            v, g, H = fn.value(Z, y), fn.grad(Z, y), fn.hessian(Z, y)
            R = rng.standard_normal((N, K))
            hv = fn.hessian_vector_product(Z, y, R)
    for name, a in (("value", v), ("grad", g), ("hessian", H), ("hvp", hv)):
        assert np.all(np.isfinite(a)), f"{loss} {name} not finite at logits ~1e3"
    if loss == "cross_entropy":
        # Stable reference by hand: max + log(sum exp(z - max)) - z_y. 1e-12 relative: same algebra.
        m = Z.max(axis=1)
        ref = m + np.log(np.sum(np.exp(Z - m[:, None]), axis=1)) - Z[np.arange(N), y]
        assert_allclose_relative(v, ref, rtol=1e-12, atol=1e-12, what="cross_entropy at logits ~1e3")
        assert np.all(v >= 0)
        # the gradient p - e_y has entries in [-1, 1] and rows summing to 0 (to rounding, 1e-14)
        assert np.all(np.abs(g) <= 1.0 + 1e-15)
        np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=1e-14)
    else:
        assert_allclose_relative(v, 0.5 * np.sum((Z - y) ** 2, axis=1), rtol=1e-14, what="mse at ~1e3")


@pytest.mark.parametrize("loss", LOSSES)
def test_grad_matches_finite_differences(loss, rng):
    fn = losses.get(loss)
    Z, y = make(loss, rng)
    assert fn.grad(Z, y).shape == (N, K)
    # l_n depends on z_n only, so sum_n l_n has gradient grad (N, K). Central FD, h = 1e-5: error ~1e-10
    # relative for O(1) losses; default rtol 1e-6 / atol 1e-8 of minisgd.testing.
    check_gradient(lambda z: float(np.sum(fn.value(z, y))), lambda z: fn.grad(z, y), Z,
                   num_directions=6, seed=1, what=f"{loss} grad")


@pytest.mark.parametrize("loss", LOSSES)
def test_hessian_matches_finite_differences_of_grad(loss, rng):
    fn = losses.get(loss)
    Z, y = make(loss, rng)
    H = np.asarray(fn.hessian(Z, y))
    assert H.shape == (N, K, K)
    # dense FD Jacobian of the flat gradient (N*K) w.r.t. flat Z (N*K): block diagonal with blocks A_n.
    J = finite_difference_jacobian(lambda z: fn.grad(z, y).ravel(), Z).reshape(N, K, N, K)
    blocks = np.zeros((N, K, N, K))
    for n in range(N):
        blocks[n, :, n, :] = H[n]
    # central FD h = 1e-5 of an O(1) gradient: ~1e-10 absolute; 1e-6 relative to the largest entry.
    assert_allclose_relative(blocks, J, rtol=1e-6, atol=1e-9, relative_to="max",
                             what=f"{loss} hessian vs FD of grad")


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("rshape", ["NK", "kNK"])
def test_hessian_vector_product_matches_hessian(loss, rshape, rng):
    fn = losses.get(loss)
    Z, y = make(loss, rng)
    H = np.asarray(fn.hessian(Z, y))
    if rshape == "NK":
        R = rng.standard_normal((N, K))
        expected = np.einsum("nkl,nl->nk", H, R)
    else:
        R = rng.standard_normal((3, N, K))
        expected = np.einsum("nkl,jnl->jnk", H, R)
    got = np.asarray(fn.hessian_vector_product(Z, y, R))
    assert got.shape == R.shape
    # Same products summed in a different order: 1e-13 relative to the largest entry.
    assert_allclose_relative(got, expected, rtol=1e-13, relative_to="max",
                             what=f"{loss} hessian_vector_product vs hessian @ R ({rshape})")


def test_cross_entropy_hessian_rows_sum_to_zero_and_psd(rng):
    fn = losses.get("cross_entropy")
    Z, y = make("cross_entropy", rng, scale=3.0)
    H = np.asarray(fn.hessian(Z, y))
    # diag(p) - p p^T: rows sum to p_k (1 - sum p) = O(eps); entries are <= 1/4, so 1e-14 absolute.
    np.testing.assert_allclose(H.sum(axis=2), 0.0, atol=1e-14)
    np.testing.assert_allclose(H, np.transpose(H, (0, 2, 1)), atol=1e-15)  # symmetric: exact up to an ulp
    eig = np.linalg.eigvalsh(H)
    # PSD: smallest eigenvalue is 0 (direction 1) up to rounding ~eps * max eig.
    assert eig.min() >= -1e-14 * max(eig.max(), 1.0), eig.min()
    assert eig.max() > 1e-3  # not the zero matrix
    # independent closed form: diag(p) - p p^T with p = softmax(Z)
    p = np.exp(Z - Z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    ref = np.stack([np.diag(pn) - np.outer(pn, pn) for pn in p])
    assert_allclose_relative(H, ref, rtol=1e-13, relative_to="max", what="cross_entropy hessian closed form")


def test_mse_hessian_is_identity(rng):
    fn = losses.get("mse")
    Z, y = make("mse", rng)
    np.testing.assert_array_equal(np.asarray(fn.hessian(Z, y)), np.broadcast_to(np.eye(K), (N, K, K)))


def test_hessian_factor_squares_to_the_loss_hessian():
    rng = np.random.default_rng(2)
    Z = 3 * rng.standard_normal((20, 5))
    for loss, y in [("cross_entropy", rng.integers(0, 5, 20)), ("mse", rng.standard_normal((20, 5)))]:
        fn = ms.core.losses.get(loss)
        R = fn.hessian_factor(Z, y)
        np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), fn.hessian(Z, y), rtol=0, atol=1e-14)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("scale", [0.5, 2.0, 300.0])
def test_value_and_grad_is_value_and_grad(loss, scale, rng):
    """The fused call against the two separate ones (the same formulas, so equal to rounding), huge logits too."""
    fn = losses.get(loss)
    Z, y = make(loss, rng, scale=scale, n=9, k=5)
    v, g = fn.value_and_grad(Z, y)
    assert_allclose_relative(v, fn.value(Z, y), rtol=1e-14, atol=1e-300, what=f"{loss} value")
    assert_allclose_relative(g, fn.grad(Z, y), rtol=1e-14, atol=1e-300, what=f"{loss} grad")
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g))


@pytest.mark.parametrize("k", [1, 2, 10, 64, 65, 200])
def test_cross_entropy_row_reductions_on_narrow_and_wide_outputs(k, rng):
    """The column-wise row max and the ones-vector row sums (K <= 64) and NumPy's reductions (K > 64) against
    an independent log-sum-exp with ``np.max``/``np.sum`` along rows, logits large enough to overflow exp."""
    Z = 300.0 * rng.standard_normal((37, k))
    y = rng.integers(0, k, 37)
    m = np.max(Z, axis=1, keepdims=True)
    p = np.exp(Z - m) / np.sum(np.exp(Z - m), axis=1, keepdims=True)
    expected = np.log(np.sum(np.exp(Z - m), axis=1)) + (m[:, 0] - Z[np.arange(37), y])
    fn = losses.get("cross_entropy")
    v, g = fn.value_and_grad(Z, y)
    # log(s) with s = 1 + tiny carries an absolute rounding error of a few 1e-16 whatever the summation order
    np.testing.assert_allclose(v, expected, rtol=1e-13, atol=1e-15)
    p[np.arange(37), y] -= 1.0
    np.testing.assert_allclose(g, p, rtol=0, atol=1e-15)
    R = rng.standard_normal((3, 37, k))
    np.testing.assert_allclose(fn.hessian_vector_product(Z, y, R), np.einsum("nij,knj->kni", fn.hessian(Z, y), R),
                               rtol=0, atol=1e-14)
