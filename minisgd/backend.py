"""Array backends: the namespace comes from the arrays, never from a global switch.

The core is written once against the array API standard (what NumPy, CuPy and array_api_strict share),
and ``namespace(theta, X)`` picks the module. ``device_namespace`` and ``to_device`` are the only places
that name a concrete library, so moving a whole computation to the GPU is ``to_device(theta, "gpu")``.
"""
import os

import array_api_compat
import numpy as np

from .errors import BackendUnavailableError

DEVICES = ("cpu", "gpu")
GPU_INSTALL_HINT = ("install CuPy with `pip install minisgd[gpu]` (CUDA 12) or `pip install minisgd[gpu-cuda13]` "
                    "(CUDA 13; `nvidia-smi` shows the driver's CUDA version) on a machine with an NVIDIA GPU")


device_of = array_api_compat.device


def namespace(*arrays):
    """The array-API namespace shared by ``arrays`` (NumPy, CuPy or array_api_strict, wrapped)."""
    return array_api_compat.array_namespace(*arrays)


def _cupy():
    try:
        import cupy
    except ImportError as exc:
        raise BackendUnavailableError(f"device='gpu' needs CuPy, which is not installed: {GPU_INSTALL_HINT}") from exc
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CuPy raises its own CUDA error types when no driver is present
        raise BackendUnavailableError(f"device='gpu': CuPy is installed but found no usable CUDA device ({exc}); "
                                      f"use device='cpu', or {GPU_INSTALL_HINT}") from exc
    if count == 0:
        raise BackendUnavailableError(f"device='gpu': CuPy found no CUDA device; use device='cpu', or {GPU_INSTALL_HINT}")
    return cupy


def device_namespace(device):
    """The namespace for ``device``: ``"cpu"`` is NumPy, ``"gpu"`` is CuPy (both array-API wrapped)."""
    if device == "cpu":
        return array_api_compat.array_namespace(np.empty(0))
    if device == "gpu":
        cupy = _cupy()
        return array_api_compat.array_namespace(cupy.empty(0))
    raise ValueError(f"unknown device {device!r}; choose one of {DEVICES}")


def to_device(array, device):
    """Copy ``array`` to ``device`` ("cpu" gives a NumPy array, "gpu" a CuPy array)."""
    if device == "cpu":
        return to_numpy(array)
    if device == "gpu":
        return _cupy().asarray(to_numpy(array) if not _is_cupy(array) else array)
    raise ValueError(f"unknown device {device!r}; choose one of {DEVICES}")


def _is_cupy(array):
    return array_api_compat.is_cupy_array(array)


def to_numpy(array):
    """A NumPy view or copy of any supported array (CuPy copies from the device)."""
    if _is_cupy(array):
        return array.get()
    if isinstance(array, np.ndarray):
        return array
    if type(array).__module__.startswith("array_api_strict"):
        import array_api_strict  # its stand-in devices ("device1") refuse implicit copies to the host, as CuPy does
        array = array.to_device(array_api_strict.Device())
    return np.asarray(array)


def available_memory(xp):
    """Bytes that a new allocation in namespace ``xp`` can use: free device memory for CuPy,
    MemAvailable from /proc/meminfo otherwise (the OS page cache counts as available)."""
    if "cupy" in xp.__name__:
        import cupy
        free, _total = cupy.cuda.Device().mem_info
        return free + cupy.get_default_memory_pool().free_bytes()
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
