"""What the operator tests share: small problems with their dense matrices, and one check of an operator's products,
diagonal and trace against a dense reference (float64)."""
import numpy as np
import pytest

from minisgd import MLP
from minisgd.testing import assert_allclose_relative

# Products against dense matrices are two exact routes with different summation orders: rounding is ~1e-15 of the
# largest products; 1e-10 relative to the largest entry leaves five decades and catches any wrong term (O(1)).
RTOL = 1e-10

NETS = [
    ([5, 7, 6, 3], "tanh", "cross_entropy", 0.0),
    ([4, 9, 2], "softplus", "mse", 1e-2),
    ([6, 5, 5, 5, 4], "relu", "cross_entropy", 1e-3),
    ([3, 6, 4, 2], "gelu", "mse", 0.0),
]


def make_problem(sizes, activation, loss, l2, n=40, seed=11):
    """``(net, theta, X, y)``: a perturbed initialization on ``n`` Gaussian examples."""
    rng = np.random.default_rng(seed)
    net = MLP(sizes, activation=activation, loss=loss, l2=l2)
    theta = net.init(seed=5) + 0.3 * rng.standard_normal(net.num_params)
    X = rng.standard_normal((n, sizes[0]))
    y = rng.integers(0, sizes[-1], n) if loss == "cross_entropy" else rng.standard_normal((n, sizes[-1]))
    return net, theta, X, y


@pytest.fixture(params=NETS, ids=lambda p: f"{p[1]}-{p[2]}-{len(p[0]) - 1}layers-l2={p[3]}")
def small(request):
    return make_problem(*request.param)


def check_against_dense(op, dense, what, rng=None):
    """``op @ V`` for one vector, one column and three columns, ``diagonal()`` and ``trace()`` against ``dense``."""
    rng = np.random.default_rng(0) if rng is None else rng
    P = dense.shape[0]
    assert op.shape == (P, P) and op.dtype == np.float64
    for shape in ((P,), (P, 1), (P, 3)):
        V = rng.standard_normal(shape)
        AV = op @ V
        assert AV.shape == shape
        assert_allclose_relative(AV, dense @ V, rtol=RTOL, relative_to="max", what=f"{what} @ V{shape}")
    assert_allclose_relative(op.diagonal(), np.diag(dense), rtol=RTOL, relative_to="max", what=f"{what} diagonal")
    assert op.trace() == pytest.approx(np.trace(dense), rel=RTOL, abs=RTOL * abs(dense).max())


def blocks(net, dense):
    """The diagonal blocks ``(P_l, P_l)`` of a dense ``(P, P)``, one per layer."""
    return [dense[layer.start:layer.stop, layer.start:layer.stop] for layer in net.layers]
