"""The bundle of sharpness measures two experiments share (minisgd.experiments.measures): every key is the number
its library function gives, and the flags say the truth: under a function-preserving rescaling of a ReLU net
(Dinh et al. 2017) every measure marked invariant keeps its value (rtol 1e-7: Lanczos at tol 1e-8 and the seeded
Monte Carlo averages see the same draws), and every one marked not invariant moves by more than 10%."""
import numpy as np
import pytest

import minisgd as ms
from minisgd.curvature.eigen import hessian_trace, top_eigenvalues
from minisgd.experiments.measures import INVARIANT, KEYS, LABELS, sharpness_measures
from minisgd.theory.reparametrize import opposite_factors, rescale


@pytest.fixture(scope="module")
def relu_problem():
    rng = np.random.default_rng(0)
    net = ms.MLP([5, 6, 6, 3], activation="relu")
    X, y = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    theta = net.init(seed=2) + 0.1 * rng.standard_normal(net.num_params)
    return net, theta, X, y


def test_every_key_is_its_library_function(relu_problem):
    net, theta, X, y = relu_problem
    m = sharpness_measures(net, theta, X, y, noise_samples=4)
    assert tuple(m) == KEYS and set(LABELS) == set(INVARIANT) == set(KEYS)
    assert m["top_eigenvalue"] == pytest.approx(top_eigenvalues(net, theta, X, y, k=1).values[0], rel=1e-9)
    assert m["top_eigenvalue"] == pytest.approx(np.linalg.eigvalsh(net.hessian(theta, X, y))[-1], rel=1e-7)
    assert m["trace"] == pytest.approx(hessian_trace(net, theta, X, y), rel=1e-12)
    assert m["parameter_norm"] == pytest.approx(theta @ theta, rel=1e-12)


def test_the_invariance_flags_hold_under_a_rescaling(relu_problem):
    net, theta, X, y = relu_problem
    moved = rescale(net, theta, opposite_factors(net.num_layers, 8.0))
    np.testing.assert_allclose(net.forward(moved, X), net.forward(theta, X), rtol=1e-12, atol=1e-12)
    before = sharpness_measures(net, theta, X, y, noise_samples=4)
    after = sharpness_measures(net, moved, X, y, noise_samples=4)
    for key in KEYS:
        change = abs(after[key] - before[key]) / abs(before[key])
        if INVARIANT[key]:
            assert change < 1e-7, (key, change)
        else:
            assert change > 0.1, (key, change)
