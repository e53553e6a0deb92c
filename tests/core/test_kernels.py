"""Every Numba kernel against its array-API twin, on random blocks of every kind the Hessian produces."""
import numpy as np
import pytest

from minisgd.core import kernels


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("with_first, with_cross", [(True, False), (True, True), (False, True)])
def test_scatter_block_kernel_equals_twin(dtype, with_first, with_cross):
    rng = np.random.default_rng(0)
    ic, Ip, O, Op, jc = 5, 4, 3, 6, 4
    first = rng.standard_normal((ic, Ip, O, Op)).astype(dtype) if with_first else None
    cross = rng.standard_normal((O, Ip, jc, Op)).astype(dtype) if with_cross else None
    H_kernel = np.full((60, 60), np.nan, dtype=dtype)
    H_twin = H_kernel.copy()
    kernels.scatter_block_numba(H_kernel, first, cross, 7, 11)
    kernels.scatter_block_reference(H_twin, first, cross, 7, 11)
    # Pure data movement plus one addition in the same order: the two must agree bit for bit,
    # including the NaNs left outside the block.
    np.testing.assert_array_equal(H_kernel, H_twin)
    rows = (jc if first is None else ic) * O
    assert not np.isnan(H_kernel[7:7 + rows, 11:11 + Ip * Op]).any()


@pytest.mark.parametrize("P", [1, 5, 64, 65, 200])
def test_symmetrize_kernel_equals_twin_and_keeps_the_lower_triangle(P):
    rng = np.random.default_rng(P)
    lower = np.tril(rng.standard_normal((P, P)))
    H_kernel = lower + np.triu(rng.standard_normal((P, P)), 1)  # garbage above the diagonal
    H_twin = H_kernel.copy()
    kernels.symmetrize_from_lower_numba(H_kernel)
    kernels.symmetrize_from_lower_reference(H_twin)
    expected = lower + np.tril(lower, -1).T  # independent: the closed form of the symmetric completion
    np.testing.assert_array_equal(H_kernel, expected)
    np.testing.assert_array_equal(H_twin, expected)


def test_dispatch_uses_the_twin_for_non_contiguous_arrays():
    H = np.zeros((20, 40))[:, ::2]  # a strided view: not C-contiguous, the twin must handle it
    first = np.ones((2, 2, 3, 4))
    kernels.scatter_block(H, first, None, 0, 0)
    np.testing.assert_array_equal(H[:6, :8], 1.0)


@pytest.mark.parametrize("name", kernels.FUSED_ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bias_activation_kernel_equals_twin(name, dtype):
    from minisgd.core import activations
    act = activations.get(name)
    rng = np.random.default_rng(1)
    z = (3 * rng.standard_normal((37, 13))).astype(dtype)
    b = rng.standard_normal(13).astype(dtype)
    expected = kernels.bias_activation_reference(z, b, act)
    got = kernels.bias_activation_numba(z.copy(), b, act)
    for e, g in zip(expected, got):
        assert g.dtype == dtype
        # Same operations on the same numbers; libm's tanh and Numba's may differ in the last ulp.
        np.testing.assert_allclose(g, e, rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).eps)


def test_arrays_of_other_libraries_never_reach_numba(monkeypatch):
    # Numba compiles for NumPy arrays only: a CuPy array handed to a kernel would be copied to the host or fail.
    # With every kernel made to raise, the exact Hessian and a ReLU forward pass on array_api_strict arrays on a
    # stand-in device run on the twins and give NumPy's results (which used the kernels).
    xs = pytest.importorskip("array_api_strict")
    from minisgd import MLP
    rng = np.random.default_rng(3)
    net = MLP([5, 7, 6, 3], activation="relu", l2=1e-3)
    theta, X, y = net.init(seed=2), rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    H_ref, Z_ref = net.hessian(theta, X, y), net.forward(theta, X)
    monkeypatch.setattr(kernels, "_compiled", lambda: pytest.fail("a Numba kernel was called"))
    dev = xs.Device("device1")
    on_device = [xs.asarray(a, device=dev) for a in (theta, X, y)]
    H, Z = net.hessian(*on_device), net.forward(*on_device[:2])
    assert H.device == dev and Z.device == dev
    np.testing.assert_allclose(np.asarray(H.to_device(xs.Device())), H_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(np.asarray(Z.to_device(xs.Device())), Z_ref, rtol=1e-12, atol=1e-14)
