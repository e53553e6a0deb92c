"""Measurements during training (minisgd.training.callbacks): ``every``'s schedule and names, the fixed seeded
subset, and the two built-in measurements against dense references (the gradient-noise trace against the
per-example gradients, rtol 1e-10; Lanczos's top eigenvalue against eigh of the exact Hessian, rtol 1e-6)."""
import numpy as np
import pytest

import minisgd as ms
from minisgd.training.callbacks import (Doubling, Every, GradientNoise, StopTraining, TopEigenvalue, doubling, every,
                                        fixed_subset)
from minisgd.training.train import ArrayData


def small_classifier(N=30, seed=0):
    rng = np.random.default_rng(seed)
    X, Xt = rng.standard_normal((N, 4)), rng.standard_normal((12, 4))
    y, yt = rng.integers(0, 3, N), rng.integers(0, 3, 12)
    net = ms.MLP([4, 5, 3], activation="tanh")
    return net, net.init(seed=seed), (X, y, Xt, yt)



def test_gradient_noise_and_top_eigenvalue_against_dense_references():
    net, theta, (X, y, _, _) = small_classifier(N=40)
    data = ArrayData(X, y)
    G = net.per_example_grads(theta, X, y)  # (N, P)
    noise = GradientNoise(subset=None)(net, theta, data, 0)
    assert noise["grad_noise_trace"] == pytest.approx(np.mean(np.sum((G - G.mean(0)) ** 2, axis=1)), rel=1e-10)
    assert noise["noise_scale"] == pytest.approx(noise["grad_noise_trace"] / np.sum(G.mean(0) ** 2), rel=1e-12)
    top = TopEigenvalue(subset=None)(net, theta, data, 0)
    assert top == pytest.approx(np.linalg.eigvalsh(net.hessian(theta, X, y))[-1], rel=1e-6)
    sub = TopEigenvalue(subset=25, seed=3)(net, theta, data, 0)
    idx = np.sort(np.random.default_rng(3).choice(40, 25, replace=False))
    assert sub == pytest.approx(np.linalg.eigvalsh(net.hessian(theta, X[idx], y[idx]))[-1], rel=1e-6)


def test_every_runs_at_multiples_of_k_and_names_the_measurement():
    def probe(net, theta, data, step):
        return step

    e = every(3, probe)
    assert isinstance(e, Every) and e.name == "probe" and [s for s in range(10) if e.due(s)] == [0, 3, 6, 9]
    assert every(2, TopEigenvalue()).name == "top_eigenvalue"
    assert every(1, probe, name="other").name == "other"
    with pytest.raises(ValueError, match="k >= 1"):
        every(0, probe)
    with pytest.raises(ValueError, match="give the measurement a name"):
        every(2, lambda net, theta, data, step: 0.0)
    assert issubclass(StopTraining, Exception) and not issubclass(StopTraining, ms.MinisgdError)


def test_doubling_runs_at_zero_and_k_times_each_power_of_two():
    """Against a brute-force list: k * 2^j for j = 0, 1, ... and step 0, nothing between."""
    def probe(net, theta, data, step):
        return step

    for k in (1, 3, 7):
        d = doubling(k, probe)
        expected = [0] + [k * 2 ** j for j in range(20) if k * 2 ** j < 5000]
        assert isinstance(d, Doubling) and d.name == "probe"
        assert [s for s in range(5000) if d.due(s)] == expected
    with pytest.raises(ValueError, match="doubling.*k >= 1"):
        doubling(0, probe)
    with pytest.raises(ValueError, match="give the measurement a name"):
        doubling(2, lambda net, theta, data, step: 0.0)


def test_fixed_subset_is_seeded_sorted_and_all_when_too_large():
    rng = np.random.default_rng(1)
    data = ArrayData(rng.standard_normal((20, 3)), np.arange(20))
    X, y = fixed_subset(data, 7, seed=4)
    expected = np.sort(np.random.default_rng(4).choice(20, 7, replace=False))
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_array_equal(X, data.X_train[expected])
    np.testing.assert_array_equal(fixed_subset(data, 7, seed=4)[1], y)
    assert fixed_subset(data, None)[0] is data.X_train and fixed_subset(data, 50)[1] is data.y_train
