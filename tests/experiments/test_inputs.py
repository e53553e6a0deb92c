"""What the experiments feed the library (minisgd.experiments.inputs): fixed seeded choices, size ladders, arrays
in the point's dtype, and the MNIST network of a point."""
import numpy as np

from minisgd.data import make_two_spirals
from minisgd.experiments.inputs import (arrays, as_float64, geometric_sizes, host, mnist_network, subset_indices,
                                        take)
from support import DATA_ROOT, needs_mnist


def test_subset_indices_are_seeded_sorted_and_everything_when_too_many():
    a = subset_indices(100, 10, seed=3)
    assert len(a) == 10 and len(set(a)) == 10 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, subset_indices(100, 10, seed=3))
    assert not np.array_equal(a, subset_indices(100, 10, seed=4))
    np.testing.assert_array_equal(subset_indices(5, None), np.arange(5))
    np.testing.assert_array_equal(subset_indices(5, 9), np.arange(5))


def test_geometric_sizes_end_at_the_stop():
    assert geometric_sizes(32, 1000) == [32, 64, 128, 256, 512, 1000]
    assert geometric_sizes(32, 256) == [32, 64, 128, 256]
    assert geometric_sizes(2, 100, factor=4) == [2, 8, 32, 100]


def test_array_helpers_on_the_host():
    x = np.arange(6, dtype=np.float32)
    y = as_float64(x)
    assert y.dtype == np.float64 and as_float64(y) is y
    np.testing.assert_array_equal(take(x, np.array([4, 1])), [4.0, 1.0])
    assert isinstance(host(x), np.ndarray)


@needs_mnist
def test_mnist_network_of_a_point(monkeypatch):
    monkeypatch.setenv("MINISGD_DATA", str(DATA_ROOT))
    point = {"n_train": 200, "pool": 4, "hidden": (8,), "activation": "relu", "seed": 1, "device": "cpu",
             "dtype": "float32"}
    net, theta, (X, y, Xt, yt) = mnist_network(point)
    assert list(net.sizes) == [49, 8, 10] and theta.dtype == np.float32 and X.shape == (200, 49) and X.dtype == np.float32
    np.testing.assert_array_equal(theta, net.init(seed=1, dtype="float32"))
    assert len(Xt) == len(yt) == 10_000 and set(np.unique(y)) <= set(range(10))


def test_arrays_cast_the_inputs_only():
    ds = make_two_spirals(n_train=20, n_test=10, seed=0)
    X, y, Xt, yt = arrays(ds, "float32")
    assert X.dtype == Xt.dtype == np.float32 and y.dtype == yt.dtype == ds.y_train.dtype
    np.testing.assert_array_equal(X, ds.X_train.astype(np.float32))
