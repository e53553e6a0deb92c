"""What the tests share besides the math cases (``cases.py``): where MNIST is, and the experiments' quick sweeps.

MNIST is found where the library looks for it: ``$MINISGD_DATA`` when set, else the user cache that
``minisgd run`` downloads into (:func:`minisgd.data.data_home`), else ``../shared/data`` beside the checkout (this
project's machines). Tests that need it skip, saying where they looked, only when none holds the four files.
"""
import hashlib
import io
import json
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from minisgd.data.mnist import MNIST_FILES, data_home

REPO = Path(__file__).resolve().parents[1]


def _has_mnist(root):
    folder = Path(root) / "mnist"
    return all((folder / stem).is_file() or (folder / f"{stem}.gz").is_file() for stem in MNIST_FILES.values())


def find_mnist_root():
    """``(root, why)``: the folder that contains ``mnist/`` with the four files, or ``None`` and where we looked."""
    candidates = [data_home(), REPO.parent / "shared" / "data"]
    for root in candidates:
        if _has_mnist(root):
            return root, ""
    return None, (f"MNIST not found in {' or '.join(str(c / 'mnist') for c in candidates)}; set MINISGD_DATA to the "
                  "folder that contains mnist/, or run `minisgd run keskar-mnist --quick` once online")


DATA_ROOT, _WHY = find_mnist_root()
needs_mnist = pytest.mark.skipif(DATA_ROOT is None, reason=_WHY)


def _gpu_available():
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, or CuPy without a driver or device
        return False


HAVE_GPU = _gpu_available()
# The marks of a GPU test: `pytest -m gpu` selects them all (benchmarks/gpu_check.sh does, on a GPU machine), and
# they skip where there is no GPU. For pytest.param(..., marks=GPU).
GPU = (pytest.mark.gpu, pytest.mark.skipif(not HAVE_GPU, reason="needs CuPy and a CUDA GPU"))


def needs_gpu(test):
    """Mark ``test`` as a GPU test (see :data:`GPU`)."""
    for mark in GPU:
        test = mark(test)
    return test


@contextmanager
def quick_sweep(name, folder):
    """Scenario ``name``'s --quick sweep into ``folder``, MNIST read offline from :data:`DATA_ROOT`, on a pool of 2
    worker processes with one BLAS thread each (as `minisgd run --jobs 2`: robust to a busy machine, where a
    2-thread BLAS slows down many times): yields ``(config, report)``."""
    from minisgd import experiments, sweep
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINISGD_DATA", str(DATA_ROOT))
        mp.setenv("MINISGD_OFFLINE", "1")
        with sweep.process_pool(2, threads=1) as pool:
            sc = experiments.get(name)
            config = sc.config(quick=True)
            yield config, sweep.run_sweep(sc, config, folder, executor=pool)


def check_run_folder(report):
    """The run folder of a finished sweep holds its results and figures, and its summary reports no failure."""
    assert report.ok, [f["error"] for f in report.failures]
    out = Path(report.out)
    assert (out / "results.json").is_file() and (out / "results.npz").is_file()
    assert report.figures and all(p.read_bytes()[:4] == b"\x89PNG" for p in report.figures)
    assert "The summary failed" not in report.summary and "Drawing the figures failed" not in report.summary


def torch_order(net):
    """``perm`` with ``theta = torch_flat[perm]``: PyTorch stores each ``Linear`` weight as (out, in) row-major and then
    the bias; minisgd stores ``[W; b]`` with ``W: (in, out)`` row-major (``W = weight.T``)."""
    import numpy as np
    perm, offset = [], 0
    for layer in net.layers:
        I, O = layer.fan_in, layer.fan_out
        perm += [offset + o * I + i for i in range(I) for o in range(O)] + [offset + I * O + o for o in range(O)]
        offset += layer.size
    return np.array(perm)


class HostCopies:
    """Counts device-to-host copies on a stand-in GPU: array_api_strict's device ``"device1"``, whose arrays refuse
    implicit conversion to NumPy as CuPy's do. Each ``float``, ``bool``, ``int`` or index of a 0-d array there and
    each ``to_device`` to the CPU is one copy (on a GPU, one wait for the device). Use as a context manager::

        with HostCopies() as copies:
            ...
        copies.count
    """

    CONVERSIONS = ("__float__", "__bool__", "__int__", "__index__", "__complex__", "to_device")

    def __init__(self):
        import array_api_strict
        self.xp, self.device = array_api_strict, array_api_strict.Device("device1")
        self.count = 0

    def asarray(self, a):
        """``a`` (NumPy) on the stand-in device."""
        return self.xp.asarray(a, device=self.device)

    def __enter__(self):
        from array_api_strict._array_object import Array
        self._patch = pytest.MonkeyPatch()
        for name in self.CONVERSIONS:
            self._patch.setattr(Array, name, self._counted(getattr(Array, name), name))
        return self

    def __exit__(self, *exc):
        self._patch.undo()
        return False

    def _counted(self, method, name):
        def counted(array, *args, **kwargs):
            leaves = name != "to_device" or args[0] != self.device
            if array.device == self.device and leaves:
                self.count += 1
            return method(array, *args, **kwargs)
        return counted


def plant_object_array(point_json):
    """Replace the arrays of the stored point ``point_json`` (its ``.json``) by an NPZ holding a pickled Python object,
    with the point's checksums made to match, as someone crafting a run folder would: only the NPZ reader can stop it.
    Returns the NPZ's path."""
    from minisgd.training.storage import seal
    buffer = io.BytesIO()
    np.savez(buffer, curve=np.array([{"boom": 1}], dtype=object))
    npz = Path(point_json).with_suffix(".npz")
    npz.write_bytes(buffer.getvalue())
    record = json.loads(Path(point_json).read_text())
    record["npz_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    Path(point_json).write_text(json.dumps(seal({k: v for k, v in record.items() if k != "json_sha256"})))
    return npz
