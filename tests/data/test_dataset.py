"""The Dataset object (minisgd.data.dataset): its checks name what is wrong, its description and metadata, and
moving it to a device (or explaining why it cannot)."""
import numpy as np
import pytest

from minisgd.data import Dataset, DataError, make_gaussian_mixture, make_two_spirals


def test_dataset_checks_and_description():
    X = np.zeros((4, 3))
    with pytest.raises(DataError, match=r"labels y_train span \[0, 5\], outside \[0, 3\)"):
        Dataset("bad", X, np.array([0, 1, 2, 5]), X, np.zeros(4, dtype=np.int64), num_classes=3)
    with pytest.raises(DataError, match="X_test has 2 inputs"):
        Dataset("bad", X, np.zeros(4, dtype=np.int64), np.zeros((4, 2)), np.zeros(4, dtype=np.int64), num_classes=3)
    with pytest.raises(DataError, match="regression targets y_train must be"):
        Dataset("bad", X, np.zeros(4), X, np.zeros((4, 1)), task="regression")
    with pytest.raises(DataError, match="2-D floating"):
        Dataset("bad", X.astype(np.uint8), np.zeros(4, dtype=np.int64), X, np.zeros(4, dtype=np.int64), num_classes=3)
    ds = make_gaussian_mixture(seed=0)
    text = ds.describe()
    assert "gaussian-mixture: classification, 2 classes, d=2" in text and "GaussianMixture" in text
    assert ds.metadata()["has_population"] is True
    moved = ds.to("cpu")
    assert moved.device == "cpu" and isinstance(moved.X_train, np.ndarray)
    np.testing.assert_array_equal(moved.X_train, ds.X_train)


@pytest.mark.gpu  # runs everywhere: on a GPU it moves, elsewhere it explains
def test_to_gpu_moves_or_explains():
    from minisgd.errors import BackendUnavailableError

    ds = make_two_spirals(n_train=10, n_test=5, seed=0)
    try:
        import cupy

        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, or no driver
        has_gpu = False
    if not has_gpu:
        with pytest.raises(BackendUnavailableError, match=r"minisgd\[gpu\]"):
            ds.to("gpu")
        return
    on_gpu = ds.to("gpu")
    assert on_gpu.device == "gpu" and type(on_gpu.X_train).__module__.startswith("cupy")
    back = on_gpu.to("cpu")
    np.testing.assert_array_equal(back.X_train, ds.X_train)
    np.testing.assert_array_equal(back.y_train, ds.y_train)
