"""What the experiments feed the library: MNIST subsets and their networks (loaded once per worker process), fixed
index choices and size ladders, arrays in the point's dtype on the point's device."""
import functools

import numpy as np

from ..backend import to_device, to_numpy
from ..core.mlp import MLP
from ..data import load_mnist


@functools.lru_cache(maxsize=4)
def mnist(n_train=None, pool=1, standardize=False, pca=None, classes=None, seed=0):
    """``minisgd.data.load_mnist`` with these options, loaded once per process (a worker runs many points)."""
    return load_mnist(n_train=n_train, pool=pool, standardize=standardize, pca=pca, classes=classes, seed=seed)


def arrays(ds, dtype="float64", device="cpu"):
    """``(X_train, y_train, X_test, y_test)`` of a Dataset in ``dtype`` on ``device``."""
    out = (ds.X_train.astype(dtype), ds.y_train, ds.X_test.astype(dtype), ds.y_test)
    return out if device == "cpu" else tuple(to_device(a, device) for a in out)


def mnist_network(point, init="lecun", batch_norm=False):
    """The point's MNIST subset and its classifier: ``(net, theta0, (X, y, X_test, y_test))``.

    Reads ``n_train``, ``pool``, ``hidden``, ``activation``, ``seed``, ``device`` and, when the point has them,
    ``dtype`` (default float64) and ``init`` (default ``init``) from the point; the network is
    ``[inputs, *hidden, classes]`` with the cross-entropy loss (batch normalization on each hidden layer with
    ``batch_norm``), ``theta0`` its seeded initialization."""
    dtype, scheme = point.get("dtype", "float64"), point.get("init", init)
    ds = mnist(n_train=point["n_train"], pool=point["pool"])
    data = arrays(ds, dtype, point["device"])
    net = MLP([ds.input_dim, *point["hidden"], ds.num_classes], activation=point["activation"], loss="cross_entropy",
              batch_norm=batch_norm)
    return net, net.init(seed=point["seed"], scheme=scheme, dtype=dtype, device=point["device"]), data


def subset_indices(n, size, seed=0):
    """A fixed, seeded choice of ``size`` of ``n`` examples (all of them when ``size`` is None or >= n), sorted."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([12345, seed]).choice(n, size, replace=False))


def geometric_sizes(start, stop, factor=2):
    """``start, factor start, factor^2 start, ...`` below ``stop``, then ``stop`` itself: batch or set sizes."""
    sizes, n = [], start
    while n < stop:
        sizes.append(n)
        n *= factor
    return sizes + [stop]


def take(a, idx):
    """``a[idx]`` for NumPy or CuPy ``a`` with host indices."""
    if isinstance(a, np.ndarray):
        return a[idx]
    return a[to_device(idx, "gpu")]


def as_float64(theta):
    """``theta`` in float64 on the same device (measurements are made in float64)."""
    return theta.astype("float64") if str(theta.dtype) != "float64" else theta


def host(x):
    """NumPy copy of a NumPy/CuPy array (results are NumPy)."""
    return np.asarray(to_numpy(x))
