"""Optimizers: closed-form iterates on a quadratic, hand-computed steps for momentum, Nesterov and Adam,
the two forms of weight decay, purity, dtypes and backends.

Hand-computed cases use the quadratic f(theta) = 1/2 theta^T A theta with A = diag(1, 2), so g = A theta, and
lr = 0.1, mu = 0.5 from theta_0 = (1, 1); the numbers below were worked out by hand (and are exact decimals),
so the tolerance is float64 round-off (rtol 1e-12).
"""
import math

import numpy as np
import pytest

from minisgd.training.optim import SGD, Adam, Momentum, Nesterov, make_optimizer
from minisgd.training.optim import proximal_step

A = np.diag([1.0, 2.0])


def run(opt, theta, grad_fn, lr, steps):
    state = opt.init(theta)
    path = []
    for _ in range(steps):
        theta, state = opt.update(theta, grad_fn(theta), state, lr)
        path.append(theta)
    return np.array(path), state


def test_sgd_on_a_quadratic_matches_the_closed_form():
    # f = 1/2 theta^T H theta - b^T theta, H SPD: theta_t = theta* + (I - lr H)^t (theta_0 - theta*)
    rng = np.random.default_rng(0)
    M = rng.standard_normal((5, 5))
    H, b, theta0 = M @ M.T / 5 + 0.1 * np.eye(5), rng.standard_normal(5), rng.standard_normal(5)
    lr = 0.9 / np.linalg.eigvalsh(H).max()
    path, state = run(SGD(), theta0, lambda th: H @ th - b, lr, 30)
    star = np.linalg.solve(H, b)
    expected = [star + np.linalg.matrix_power(np.eye(5) - lr * H, t) @ (theta0 - star) for t in range(1, 31)]
    np.testing.assert_allclose(path, expected, rtol=1e-10, atol=1e-12)
    assert state == {"step": 30}


def test_momentum_by_hand():
    path, state = run(Momentum(mu=0.5), np.array([1.0, 1.0]), lambda th: A @ th, 0.1, 3)
    # v1 = (1, 2), theta1 = (0.9, 0.8); v2 = (1.4, 2.6), theta2 = (0.76, 0.54);
    # v3 = (1.46, 2.38), theta3 = (0.614, 0.302)
    np.testing.assert_allclose(path, [[0.9, 0.8], [0.76, 0.54], [0.614, 0.302]], rtol=1e-12)
    np.testing.assert_allclose(state["velocity"], [1.46, 2.38], rtol=1e-12)
    assert state["step"] == 3


def test_nesterov_by_hand():
    path, state = run(Nesterov(mu=0.5), np.array([1.0, 1.0]), lambda th: A @ th, 0.1, 3)
    # theta_{t+1} = theta_t - lr (g_t + mu v_{t+1}): (0.85, 0.7), (0.6975, 0.44), (0.559125, 0.248)
    np.testing.assert_allclose(path, [[0.85, 0.7], [0.6975, 0.44], [0.559125, 0.248]], rtol=1e-12)
    np.testing.assert_allclose(state["velocity"], [1.3725, 2.08], rtol=1e-12)


def test_momentum_with_mu_zero_is_sgd():
    rng = np.random.default_rng(1)
    theta = rng.standard_normal(4)
    p1, _ = run(Momentum(mu=0.0), theta, lambda th: th ** 3, 0.1, 5)
    p2, _ = run(SGD(), theta, lambda th: th ** 3, 0.1, 5)
    np.testing.assert_allclose(p1, p2, rtol=1e-14)


def adam_by_hand(theta, grads, lr, b1, b2, eps):
    """Kingma & Ba's Algorithm 1, one coordinate at a time, in Python floats."""
    out = []
    for i, th in enumerate(theta):
        m = v = 0.0
        for t, g in enumerate(grads, start=1):
            m = b1 * m + (1 - b1) * g[i]
            v = b2 * v + (1 - b2) * g[i] ** 2
            th = th - lr * (m / (1 - b1 ** t)) / (math.sqrt(v / (1 - b2 ** t)) + eps)
        out.append(th)
    return out


def test_adam_by_hand():
    grads = [np.array([0.5, -1.0]), np.array([0.1, -1.0]), np.array([-0.2, 3.0])]
    opt, theta, state = Adam(beta1=0.9, beta2=0.999, eps=1e-8), np.array([1.0, -2.0]), None
    state = opt.init(theta)
    for t, g in enumerate(grads, start=1):
        theta, state = opt.update(theta, g, state, 0.1)
        if t == 1:  # first step: m_hat = g, v_hat = g^2, so each coordinate moves by lr * sign(g)
            np.testing.assert_allclose(theta, [0.9, -1.9], rtol=1e-8)
        if t == 2:  # second coordinate saw -1 twice: m_hat = -1, v_hat = 1, one more lr
            assert theta[1] == pytest.approx(-1.8, rel=1e-8)
        np.testing.assert_allclose(theta, adam_by_hand([1.0, -2.0], grads[:t], 0.1, 0.9, 0.999, 1e-8), rtol=1e-12)
    np.testing.assert_allclose(state["m"], 0.9 ** 2 * 0.1 * grads[0] + 0.9 * 0.1 * grads[1] + 0.1 * grads[2],
                               rtol=1e-12)
    assert state["step"] == 3


def test_weight_decay_l2_and_decoupled():
    theta, zero = np.array([1.0]), np.array([0.0])
    # SGD: both forms are theta - lr (g + wd theta)
    for decoupled in (False, True):
        new, _ = SGD(weight_decay=0.1, decoupled=decoupled).update(theta, np.array([2.0]), {"step": 0}, 0.5)
        np.testing.assert_allclose(new, [1.0 - 0.5 * (2.0 + 0.1)], rtol=1e-14)
    # Adam with g = 0: L2 makes g = wd theta = 0.1 and the first step moves by lr; decoupled shrinks by lr wd
    opt = Adam(weight_decay=0.1, decoupled=False)
    new, _ = opt.update(theta, zero, opt.init(theta), 0.1)
    np.testing.assert_allclose(new, [0.9], rtol=1e-7)
    opt = Adam(weight_decay=0.1, decoupled=True)
    new, _ = opt.update(theta, zero, opt.init(theta), 0.1)
    np.testing.assert_allclose(new, [0.99], rtol=1e-14)
    # momentum, L2: the velocity accumulates g + wd theta
    new, state = Momentum(mu=0.5, weight_decay=0.1).update(theta, zero, {"step": 0, "velocity": zero}, 1.0)
    np.testing.assert_allclose(state["velocity"], [0.1], rtol=1e-14)
    np.testing.assert_allclose(new, [0.9], rtol=1e-14)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam"])
def test_update_is_pure_and_keeps_float32(name):
    opt = make_optimizer(name)
    theta = np.linspace(-1, 1, 7, dtype=np.float32)
    grad = np.cos(theta)
    state = opt.init(theta)
    copies = (theta.copy(), grad.copy(), {k: np.copy(v) for k, v in state.items()})
    new, new_state = opt.update(theta, grad, state, np.float64(0.01))  # a NumPy float64 lr must not promote
    assert new.dtype == np.float32 and all(v.dtype == np.float32 for k, v in new_state.items() if k != "step")
    np.testing.assert_array_equal(theta, copies[0])
    np.testing.assert_array_equal(grad, copies[1])
    assert all(np.array_equal(state[k], copies[2][k]) for k in state)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam"])
def test_array_api_strict_matches_numpy(name):
    xps = pytest.importorskip("array_api_strict")
    opt = make_optimizer(name, weight_decay=0.01)
    theta = np.linspace(-1, 1, 6)
    strict = xps.asarray(theta)
    s_np, s_st = opt.init(theta), opt.init(strict)
    for t in range(3):
        g = np.sin(3 * theta + t)
        theta, s_np = opt.update(theta, g, s_np, 0.1)
        strict, s_st = opt.update(strict, xps.sin(3 * strict + t), s_st, 0.1)
    np.testing.assert_allclose(np.asarray(strict), theta, rtol=1e-12)


def test_bad_hyperparameters_are_errors():
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("rmsprop")
    with pytest.raises(ValueError, match="takes"):
        make_optimizer("sgd", mu=0.9)
    with pytest.raises(ValueError, match="mu"):
        Momentum(mu=1.0)
    with pytest.raises(ValueError, match="beta"):
        Adam(beta1=1.0)


def quadratic(P=6, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((P, P))
    H = A @ A.T / P + 0.1 * np.eye(P)  # positive definite
    b = rng.standard_normal(P)
    return H, b, rng.standard_normal(P)


@pytest.mark.parametrize("rho", [0.5, 3.0])
def test_proximal_step_reaches_the_closed_form_proximal_point(rho):
    H, b, theta_t = quadratic()
    star = np.linalg.solve(H + rho * np.eye(len(b)), rho * theta_t + b)  # (H + rho I)^{-1} (rho theta_t + b)
    lr = 1.0 / np.linalg.eigvalsh(H + rho * np.eye(len(b))).max()
    E = np.eye(len(b)) - lr * (H + rho * np.eye(len(b)))
    for steps in (1, 3, 10):  # exact contraction of the inner SGD iterates
        theta, state = proximal_step(lambda th: H @ th - b, theta_t, rho, SGD(), SGD().init(theta_t), lr, steps)
        np.testing.assert_allclose(theta, star + np.linalg.matrix_power(E, steps) @ (theta_t - star), rtol=1e-12,
                                   atol=1e-13)
        assert state["step"] == steps
    theta, _ = proximal_step(lambda th: H @ th - b, theta_t, rho, SGD(), {"step": 0}, lr, 2000)
    np.testing.assert_allclose(theta, star, rtol=1e-10, atol=1e-12)
    # Adam as the inner solver also lands on the proximal point (to its own accuracy), carrying its state
    theta, state = proximal_step(lambda th: H @ th - b, theta_t, rho, Adam(), Adam().init(theta_t), 0.01, 3000)
    np.testing.assert_allclose(theta, star, atol=1e-3)
    assert state["step"] == 3000 and state["m"].shape == theta.shape


def test_proximal_step_without_rho_is_plain_steps_and_uses_grad_t():
    H, b, theta_t = quadratic(seed=1)
    calls = []

    def grad(th):
        calls.append(1)
        return H @ th - b

    theta, _ = proximal_step(grad, theta_t, 0.0, SGD(), {"step": 0}, 0.1, 1, grad_t=H @ theta_t - b)
    np.testing.assert_allclose(theta, theta_t - 0.1 * (H @ theta_t - b), rtol=1e-14)
    assert not calls  # grad_t saved the one evaluation
    with pytest.raises(ValueError, match="rho >= 0 and steps >= 1"):
        proximal_step(grad, theta_t, -1.0, SGD(), {"step": 0}, 0.1, 1)
