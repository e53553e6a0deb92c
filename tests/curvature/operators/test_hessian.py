"""The Hessian operator against the block-formula Hessian; SciPy's eigsh on it against eigh; what every operator
shares (chunks of directions, device handling, shape and memory errors)."""
import numpy as np
import pytest
from scipy.sparse.linalg import eigsh

from minisgd.curvature.operators import Hessian, _base
from minisgd.errors import HessianTooLargeError, ShapeError
from minisgd.testing import assert_allclose_relative
from test_backend import HAVE_GPU

from .conftest import RTOL, check_against_dense, make_problem


def test_products_diagonal_and_trace_against_the_dense_hessian(small):
    net, theta, X, y = small
    H = Hessian(net, theta, X, y)
    dense = net.hessian(theta, X, y)
    check_against_dense(H, dense, "Hessian")
    np.testing.assert_array_equal(H.to_dense(), dense)


def test_eigsh_on_the_operator_matches_eigh(small):
    net, theta, X, y = small
    H = Hessian(net, theta, X, y)
    w = np.linalg.eigvalsh(H.to_dense())
    top = eigsh(H, k=4, which="LA", tol=1e-12, return_eigenvectors=False)
    bottom = eigsh(H, k=2, which="SA", tol=1e-12, return_eigenvectors=False)
    # ARPACK to tol 1e-12 against LAPACK: both to ~1e-13 of |lambda|_max
    scale = abs(w).max()
    np.testing.assert_allclose(np.sort(top)[::-1], w[::-1][:4], rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(np.sort(bottom), w[:2], rtol=0, atol=1e-9 * scale)


def test_directions_in_chunks_equal_one_call():
    net, theta, X, y = make_problem([5, 7, 6, 3], "tanh", "cross_entropy", 0.0)
    V = np.random.default_rng(1).standard_normal((net.num_params, 7))
    one = Hessian(net, theta, X, y) @ V
    chunked = Hessian(net, theta, X, y, max_directions=3) @ V  # 3 + 3 + 1 columns
    assert_allclose_relative(chunked, one, rtol=1e-13, relative_to="max", what="chunked directions")


def test_scipy_algebra_and_a_foreign_array_library():
    net, theta, X, y = make_problem([4, 9, 2], "softplus", "mse", 1e-2)
    H = Hessian(net, theta, X, y)
    dense = H.to_dense()
    V = np.random.default_rng(2).standard_normal((net.num_params, 2))
    assert_allclose_relative((2.0 * H + H) @ V, 3.0 * dense @ V, rtol=RTOL, relative_to="max", what="scipy algebra")
    assert_allclose_relative(H.matvec(V[:, 0]), dense @ V[:, 0], rtol=RTOL, relative_to="max", what="matvec")
    xs = pytest.importorskip("array_api_strict")
    out = H @ xs.asarray(V)  # another library's array comes back in that library
    assert not isinstance(out, np.ndarray)
    assert_allclose_relative(np.asarray(out), dense @ V, rtol=RTOL, relative_to="max", what="array_api_strict V")


def test_bad_shapes_and_too_large_dense_raise(monkeypatch):
    net, theta, X, y = make_problem([4, 9, 2], "softplus", "mse", 1e-2)
    H = Hessian(net, theta, X, y)
    with pytest.raises(ShapeError, match="V must have shape"):
        H.dot(pytest.importorskip("array_api_strict").ones((3, 2)))
    with pytest.raises(ValueError):  # SciPy's own check for NumPy input
        H @ np.ones(net.num_params + 1)
    # the generic dense form (the operator times the identity's columns) is a second route to the Hessian
    assert_allclose_relative(_base.CurvatureOperator.to_dense(H), net.hessian(theta, X, y), rtol=RTOL,
                             relative_to="max", what="identity columns")
    monkeypatch.setattr(_base, "available_memory", lambda xp: 1000)
    with pytest.raises(HessianTooLargeError, match="to_dense"):
        _base.CurvatureOperator.to_dense(H)


@pytest.mark.skipif(not HAVE_GPU, reason="needs CuPy and a CUDA GPU")
def test_every_operator_keeps_cupy_arrays_on_the_gpu():
    """An operator built on CuPy arrays: ``@`` with a CuPy V stays on the GPU, with a NumPy V (SciPy's eigsh) comes
    back as NumPy; both equal the CPU operator's products (float64, cuBLAS vs OpenBLAS rounding: 1e-10)."""
    import array_api_compat
    import cupy

    from minisgd.curvature.operators import (EKFAC, KFAC, EmpiricalFisher, Fisher, GaussNewton, Residual)
    net, theta, X, y = make_problem([5, 7, 6, 3], "tanh", "cross_entropy", 1e-3)
    gpu = [cupy.asarray(a) for a in (theta, X, y)]
    V = np.random.default_rng(4).standard_normal((net.num_params, 3))
    for cls, kwargs in [(Hessian, {}), (GaussNewton, {}), (Residual, {}), (Fisher, {}), (Fisher, {"mc_samples": 2}),
                        (EmpiricalFisher, {}), (KFAC, {}), (EKFAC, {})]:
        cpu_op, gpu_op = cls(net, theta, X, y, **kwargs), cls(net, *gpu, **kwargs)
        ref = cpu_op @ V
        on_gpu = gpu_op @ cupy.asarray(V)
        assert array_api_compat.is_cupy_array(on_gpu), cls.__name__
        assert_allclose_relative(cupy.asnumpy(on_gpu), ref, rtol=1e-10, relative_to="max", what=cls.__name__)
        back = gpu_op @ V
        assert isinstance(back, np.ndarray)
        assert_allclose_relative(back, ref, rtol=1e-10, relative_to="max", what=f"{cls.__name__}, NumPy V")
        assert gpu_op.trace() == pytest.approx(cpu_op.trace(), rel=1e-10)
    top = eigsh(Hessian(net, *gpu), k=2, which="LA", tol=1e-12, return_eigenvectors=False)
    np.testing.assert_allclose(np.sort(top), np.linalg.eigvalsh(net.hessian(theta, X, y))[-2:], rtol=1e-9)
    inverse = KFAC(net, *gpu).inverse(1e-2)
    assert_allclose_relative(cupy.asnumpy(inverse @ cupy.asarray(V)), KFAC(net, theta, X, y).inverse(1e-2) @ V,
                             rtol=1e-9, relative_to="max", what="KFAC inverse on the GPU")


def test_products_copy_nothing_to_the_host():
    """On a stand-in GPU (array_api_strict's second device, counting device-to-host copies as CuPy would wait for
    them) the inputs are checked once when an operator is built; its products then read nothing back."""
    pytest.importorskip("array_api_strict")
    from minisgd.curvature.operators import EKFAC, KFAC, EmpiricalFisher, Fisher, GaussNewton, Residual
    from support import HostCopies

    net, theta, X, y = make_problem([5, 7, 6, 3], "tanh", "cross_entropy", 1e-3)
    V = np.random.default_rng(4).standard_normal((net.num_params, 3))
    for cls in (Hessian, GaussNewton, Residual, Fisher, EmpiricalFisher, KFAC, EKFAC):
        with HostCopies() as host:
            op = cls(net, *(host.asarray(a) for a in (theta, X, y)))
            W = host.asarray(V)
            built = host.count
            out = op @ W
            assert host.count == built, f"{cls.__name__}: {host.count - built} host copies in a product"
        here = np.asarray(out.to_device(host.xp.Device("CPU_DEVICE")))
        assert_allclose_relative(here, cls(net, theta, X, y) @ V, rtol=1e-12,
                                 relative_to="max", what=f"{cls.__name__} on the stand-in device")
