"""Backends: array_api_strict and CuPy agree with NumPy; float32 agrees with float64; GPU errors."""
from __future__ import annotations

import numpy as np
import pytest

import array_api_compat
import array_api_strict
from cases import CASES, select
from support import HAVE_GPU, needs_gpu
from minisgd import BackendUnavailableError, backend
from minisgd.backend import to_numpy
from minisgd.testing import assert_allclose_relative

# One case per activation (and both losses, l2 on and off) keeps array_api_strict's overhead small.
BACKEND_CASES = []
for _name in sorted({c.activation for c in CASES}):
    BACKEND_CASES.append(max(select(activation=_name), key=lambda c: (c.depth, c.num_params)))
BACKEND_IDS = [c.id for c in BACKEND_CASES]
assert {c.loss for c in BACKEND_CASES} == {"cross_entropy", "mse"}
assert {c.l2 for c in BACKEND_CASES} == {0.0, 1e-2}

QUANTITIES = ["loss_and_grad", "per_example_grads", "per_example_grad_norms", "hvp", "hessian",
              "gauss_newton", "output_jacobian", "forward"]


def compute(net, theta, X, y, V, what):
    """Run ``what`` and return (float or array in the input's namespace)."""
    if what == "loss_and_grad":
        return net.loss_and_grad(theta, X, y)
    if what == "hvp":
        return net.hvp(theta, X, y, V)
    if what in ("output_jacobian", "forward"):
        return getattr(net, what)(theta, X)
    return getattr(net, what)(theta, X, y)


def compare(result, reference, rtol, what):
    """Compare a backend's result with NumPy's; the loss is a float, everything else an array."""
    if isinstance(reference, tuple):  # (loss, grad)
        loss, grad = result
        assert isinstance(loss, float)
        assert loss == pytest.approx(reference[0], rel=rtol), f"{what}: loss"
        compare(grad, reference[1], rtol, what + " gradient")
        return
    assert_allclose_relative(to_numpy(result), reference, rtol=rtol, relative_to="max", what=what)


def numpy_reference(p, V, what):
    r = compute(p.net, p.theta, p.X, p.y, V, what)
    return (r[0], to_numpy(r[1])) if isinstance(r, tuple) else to_numpy(r)


def _array_of(result):
    return result[1] if isinstance(result, tuple) else result


# ---------------------------------------------------------------------------------------------------
# array_api_strict
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("what", QUANTITIES)
@pytest.mark.parametrize("case", BACKEND_CASES, ids=BACKEND_IDS)
def test_array_api_strict_matches_numpy(case, what):
    p = case.problem()
    V = np.random.default_rng(0).standard_normal((p.P, 2))
    ref = numpy_reference(p, V, what)
    xs = array_api_strict
    res = compute(p.net, xs.asarray(p.theta), xs.asarray(p.X), xs.asarray(p.y), xs.asarray(V), what)
    # the result stays in the caller's namespace (no silent conversion to NumPy)
    assert array_api_compat.is_array_api_strict_namespace(array_api_compat.array_namespace(_array_of(res)))
    # array_api_strict runs NumPy underneath: the same float64 operations, at most reordered by the
    # standard-only code path: 1e-12 relative to the largest entry.
    compare(res, ref, 1e-12, f"{case.id} {what} array_api_strict vs numpy")


def test_array_api_strict_mse_1d_targets():
    case = select(label_1d=True)[0]
    p = case.problem()
    xs = array_api_strict
    loss, g = p.net.loss_and_grad(xs.asarray(p.theta), xs.asarray(p.X), xs.asarray(p.y))
    ref_loss, ref_g = p.net.loss_and_grad(p.theta, p.X, p.y)
    assert loss == pytest.approx(ref_loss, rel=1e-12)  # same float64 arithmetic: 1e-12
    assert_allclose_relative(to_numpy(g), to_numpy(ref_g), rtol=1e-12, relative_to="max", what="grad (y 1-D)")


# ---------------------------------------------------------------------------------------------------
# float32 vs float64
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("what", QUANTITIES)
@pytest.mark.parametrize("case", BACKEND_CASES, ids=BACKEND_IDS)
def test_float32_matches_float64(case, what):
    p = case.problem()
    theta32 = p.theta.astype(np.float32)
    X32 = p.X.astype(np.float32)
    y32 = p.y.astype(np.float32) if p.case.loss == "mse" else p.y
    V32 = np.random.default_rng(0).standard_normal((p.P, 2)).astype(np.float32)
    res = compute(p.net, theta32, X32, y32, V32, what)
    assert _array_of(res).dtype == np.float32, f"{what}: float32 inputs must give float32 results"
    # Reference in float64 at the *same* (float32-rounded) inputs, so only the arithmetic differs.
    ref = compute(p.net, theta32.astype(np.float64), X32.astype(np.float64),
                  y32.astype(np.float64) if p.case.loss == "mse" else y32, V32.astype(np.float64), what)
    ref = (ref[0], to_numpy(ref[1])) if isinstance(ref, tuple) else to_numpy(ref)
    # eps32 = 1.2e-7 per operation, amplified by sums over N, widths and up to 4 layers (products of
    # O(1) factors) and by cancellation in small entries: 1e-4 relative to the largest entry (~1000 eps32).
    compare(res, ref, 1e-4, f"{case.id} {what} float32 vs float64")


def test_float32_X_is_cast_to_theta_dtype():
    """X: (N, d) real floating, cast to theta's dtype: float64 theta with float32 X computes in float64."""
    p = CASES[5].problem()
    loss, g = p.net.loss_and_grad(p.theta, p.X.astype(np.float32), p.y)
    assert to_numpy(g).dtype == np.float64
    ref_loss, ref_g = p.net.loss_and_grad(p.theta, p.X.astype(np.float32).astype(np.float64), p.y)
    assert loss == pytest.approx(ref_loss, rel=1e-14)  # identical computation after the cast
    np.testing.assert_allclose(to_numpy(g), to_numpy(ref_g), rtol=1e-14, atol=0)
    # and the other way round: float32 theta with float64 X computes (and returns) float32
    t32 = p.theta.astype(np.float32)
    for what in ("loss_and_grad", "per_example_grads", "hvp", "hessian", "forward"):
        res = compute(p.net, t32, p.X, p.y, np.ones((p.P, 2), dtype=np.float32), what)
        assert to_numpy(_array_of(res)).dtype == np.float32, f"{what}: X must be cast to theta's float32"


# ---------------------------------------------------------------------------------------------------
# GPU
# ---------------------------------------------------------------------------------------------------
@pytest.mark.skipif(HAVE_GPU, reason="CuPy with a GPU is available: device='gpu' works here")
def test_gpu_without_cupy_raises_with_install_hint():
    net = CASES[5].make_net()
    hint = r"minisgd\[gpu\]"
    with pytest.raises(BackendUnavailableError, match=hint):
        net.init(seed=0, device="gpu")
    with pytest.raises(BackendUnavailableError, match=hint):
        backend.device_namespace("gpu")
    with pytest.raises(BackendUnavailableError, match=hint):
        backend.to_device(np.zeros(3), "gpu")


def test_the_memory_check_on_cupy_counts_the_gpus_free_memory(monkeypatch):
    """On CuPy, available memory is the device's free memory plus the free blocks CuPy's pool holds (not the host's
    RAM), and the exact Hessian's check refuses what does not fit there. A stand-in for the cupy module reports
    3 GiB free on the device and 1 GiB in the pool."""
    import sys
    import types
    from minisgd import MLP, HessianTooLargeError
    from minisgd.core import hessian
    GiB = 2 ** 30
    device = types.SimpleNamespace(mem_info=(3 * GiB, 141 * GiB))  # (free, total)
    pool = types.SimpleNamespace(free_bytes=lambda: GiB)
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=types.SimpleNamespace(Device=lambda: device),
                                                                   get_default_memory_pool=lambda: pool))
    cupy_namespace = types.ModuleType("array_api_compat.cupy")  # what backend.namespace gives for CuPy arrays
    assert backend.available_memory(cupy_namespace) == 4 * GiB
    net = MLP([784, 22, 10])  # P = 17,500: the float64 Hessian and its work space need 3.4 GiB
    hessian.check_hessian_fits(net, 1000, 8, cupy_namespace)
    with pytest.raises(HessianTooLargeError, match="only 4.00 GiB are available"):
        hessian.check_hessian_fits(net, 1000, 16, cupy_namespace)  # as if 16 bytes an entry: twice that


@needs_gpu
def test_cupy_available_memory_is_the_devices():
    import cupy
    free, total = cupy.cuda.Device().mem_info
    assert free <= backend.available_memory(backend.device_namespace("gpu")) <= total


def test_cpu_device_roundtrip():
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(backend.to_numpy(backend.to_device(x, "cpu")), x)
    xp = backend.device_namespace("cpu")
    assert array_api_compat.is_numpy_namespace(xp)
    assert array_api_compat.is_numpy_namespace(backend.namespace(x))


@needs_gpu
@pytest.mark.parametrize("what", QUANTITIES)
@pytest.mark.parametrize("case", BACKEND_CASES, ids=BACKEND_IDS)
def test_cupy_matches_numpy(case, what):
    import cupy

    p = case.problem()
    V = np.random.default_rng(0).standard_normal((p.P, 2))
    ref = numpy_reference(p, V, what)
    res = compute(p.net, cupy.asarray(p.theta), cupy.asarray(p.X), cupy.asarray(p.y), cupy.asarray(V), what)
    assert array_api_compat.is_cupy_array(_array_of(res)), "results must stay on the GPU"
    # float64 on the GPU: cuBLAS and CUDA reductions sum in other orders (and may use FMA), so agreement
    # is to rounding, ~1e-14 relative; 1e-10 relative to the largest entry leaves a wide margin.
    compare(res, ref, 1e-10, f"{case.id} {what} cupy vs numpy")


@needs_gpu
def test_cupy_init_and_to_device():
    import cupy

    net = CASES[5].make_net()
    theta_gpu = net.init(seed=1, device="gpu")
    assert array_api_compat.is_cupy_array(theta_gpu)
    np.testing.assert_array_equal(to_numpy(theta_gpu), net.init(seed=1))  # same draw on every device
    x = np.arange(4.0)
    moved = backend.to_device(x, "gpu")
    assert isinstance(moved, cupy.ndarray)
    np.testing.assert_array_equal(backend.to_device(moved, "cpu"), x)
    assert array_api_compat.is_cupy_namespace(backend.device_namespace("gpu"))


@needs_gpu
def test_cupy_float32_matches_numpy_float64():
    import cupy

    p = CASES[-1].problem()
    t32, X32 = p.theta.astype(np.float32), p.X.astype(np.float32)
    loss, g = p.net.loss_and_grad(cupy.asarray(t32), cupy.asarray(X32), cupy.asarray(p.y))
    ref_loss, ref_g = p.net.loss_and_grad(t32.astype(np.float64), X32.astype(np.float64), p.y)
    assert g.dtype == cupy.float32
    # float32 tolerance as in test_float32_matches_float64 (1e-4 relative to the largest entry)
    assert loss == pytest.approx(ref_loss, rel=1e-4)
    assert_allclose_relative(to_numpy(g), ref_g, rtol=1e-4, relative_to="max", what="cupy float32 gradient")
