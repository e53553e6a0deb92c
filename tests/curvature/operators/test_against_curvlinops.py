"""Every operator against curvlinops (PyTorch), the library these follow, on the same imported network: the exact ones
and KFAC/EKFAC under the conventions stated in minisgd.curvature.operators.kfac (curvlinops's ``type-2`` and
``empirical`` Fisher, ``separate_weight_and_bias=False``). Optional: skipped without torch and curvlinops."""
import numpy as np
import pytest

from minisgd import MLP
from minisgd.curvature.operators import EKFAC, KFAC, EmpiricalFisher, GaussNewton, Hessian
from minisgd.testing import assert_allclose_relative
from support import torch_order

torch = pytest.importorskip("torch")
curvlinops = pytest.importorskip("curvlinops")


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_operators_equal_curvlinops(loss):
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 5))
    y = rng.integers(0, 3, 40) if loss == "cross_entropy" else rng.standard_normal((40, 3))
    # minisgd's mse is (1/N) sum_n 1/2 |z_n - y_n|^2, curvlinops's MSELoss(reduction="sum") sum_n |z_n - y_n|^2: its
    # Hessian-type matrices are 2N times minisgd's, its squared-gradient ones (gradients 2 (z - y) J) 4N times
    loss_func = nn.CrossEntropyLoss() if loss == "cross_entropy" else nn.MSELoss(reduction="sum")
    N = X.shape[0]
    curvature, squares = (1.0, 1.0) if loss == "cross_entropy" else (1.0 / (2 * N), 1.0 / (4 * N))
    data = [(torch.from_numpy(X[:25]), torch.from_numpy(y[:25])), (torch.from_numpy(X[25:]), torch.from_numpy(y[25:]))]
    params = list(model.parameters())
    net, theta = MLP.from_torch(model, loss=loss)
    perm = torch_order(net)
    V = rng.standard_normal((net.num_params, 3))
    V_torch = np.empty_like(V)
    V_torch[perm] = V
    common = dict(check_deterministic=False)
    kron = dict(separate_weight_and_bias=False, **common)
    cl = curvlinops
    pairs = [(Hessian(net, theta, X, y), cl.HessianLinearOperator(model, loss_func, params, data, **common), curvature),
             (GaussNewton(net, theta, X, y), cl.GGNLinearOperator(model, loss_func, params, data, **common), curvature),
             (EmpiricalFisher(net, theta, X, y), cl.EFLinearOperator(model, loss_func, params, data, **common), squares),
             (KFAC(net, theta, X, y), cl.KFACLinearOperator(model, loss_func, params, data, fisher_type="type-2", **kron),
              curvature),
             (KFAC(net, theta, X, y, fisher_type="empirical"),
              cl.KFACLinearOperator(model, loss_func, params, data, fisher_type="empirical", **kron), squares),
             (EKFAC(net, theta, X, y), cl.EKFACLinearOperator(model, loss_func, params, data, fisher_type="type-2",
                                                              **kron), curvature)]
    for ours, theirs, factor in pairs:
        expected = (theirs @ torch.from_numpy(V_torch)).numpy()[perm] * factor
        # two float64 implementations of the same formulas: rounding apart; 1e-10 of the largest entry
        assert_allclose_relative(ours @ V, expected, rtol=1e-10, relative_to="max",
                                 what=f"{type(ours).__name__} vs curvlinops ({loss})")
