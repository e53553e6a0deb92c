"""The library pieces of the large-batch remedies, each against an independent computation:

* ``weighted_gradient``: against the dense per-example gradients weighted (rtol 1e-12) and against central finite
  differences of the weighted loss, on every test case (depths 1-4, all activations, both losses, l2 on and off);
* random shifts: against ``np.roll`` plus zeroing on hand-made images, shapes, seeded reproducibility, and the
  offsets' uniformity (chi-square at the 0.1% level);
* the proximal step: against the closed-form proximal point of a quadratic and the exact contraction of its inner
  SGD iterates, and the trainer's proximal steps against those closed forms on least squares;
* matched noise injection: against the dense formula ``c G^T (I - 11^T/B) z`` (1e-12), its exact covariance
  against ``(1/b - 1/B)`` times the sample covariance of the per-example gradients (1e-12), and by Monte Carlo:
  the injected noise has that covariance, and a large batch plus the noise has the covariance of a small batch
  (tolerance: 5 standard errors of the Monte Carlo mean, estimated from the draws themselves);
* the trainer: each option changes the step as documented, and a run resumed from a checkpoint is bit-identical.
"""
import numpy as np
import pytest
from scipy import stats

import minisgd as ms
from minisgd.data import augment
from minisgd import injection
from minisgd.optim import SGD, Adam, proximal_step
from minisgd.testing import check_gradient
from minisgd.train import TrainConfig, batch_sequence, train


# ---- weighted gradient ------------------------------------------------------------------------------------------

def test_weighted_gradient_equals_weighted_per_example_gradients(case):
    p = case.problem()
    w = np.random.default_rng(case.seed).standard_normal(p.X.shape[0])
    G = p.net.per_example_grads(p.theta, p.X, p.y)  # (N, P), L2 in every row
    np.testing.assert_allclose(p.net.weighted_gradient(p.theta, p.X, p.y, w), w @ G, rtol=1e-12,
                               atol=1e-12 * np.abs(G).max())
    mean = np.full(p.X.shape[0], 1.0 / p.X.shape[0])  # w = 1/N is the gradient
    np.testing.assert_allclose(p.net.weighted_gradient(p.theta, p.X, p.y, mean),
                               p.net.loss_and_grad(p.theta, p.X, p.y)[1], rtol=1e-12, atol=1e-14)


def test_weighted_gradient_against_finite_differences(case):
    p = case.problem()
    w = np.random.default_rng(case.seed + 1).standard_normal(p.X.shape[0])

    def weighted_loss(theta):  # sum_n w_n (l_n + l2/2 |theta|^2)
        return float(w @ p.net.per_example_losses(theta, p.X, p.y) + w.sum() * 0.5 * p.net.l2 * theta @ theta)

    check_gradient(weighted_loss, lambda th: p.net.weighted_gradient(th, p.X, p.y, w), p.theta, rtol=1e-6,
                   atol=1e-9, what="weighted gradient")


def test_weighted_gradient_rejects_bad_weights(case):
    p = case.problem()
    with pytest.raises(ms.ShapeError, match="one weight per example"):
        p.net.weighted_gradient(p.theta, p.X, p.y, np.ones(p.X.shape[0] + 1))
    with pytest.raises(ms.NonFiniteError, match="weights"):
        p.net.weighted_gradient(p.theta, p.X, p.y, np.full(p.X.shape[0], np.nan))


# ---- random shifts ----------------------------------------------------------------------------------------------

def rolled_and_zeroed(image, dy, dx):
    """The definition: np.roll, then zero the rows and columns that wrapped around."""
    out = np.roll(image, (dy, dx), axis=(0, 1))
    if dy > 0:
        out[:dy, :] = 0
    elif dy < 0:
        out[dy:, :] = 0
    if dx > 0:
        out[:, :dx] = 0
    elif dx < 0:
        out[:, dx:] = 0
    return out


@pytest.mark.parametrize("shape", [(5, 7), (6, 6)])
def test_shift_equals_roll_and_zero_fill(shape):
    H, W = shape
    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-3, 4)]
    images = np.arange(len(offsets) * H * W, dtype=float).reshape(len(offsets), H, W) + 1  # no zero pixels
    shifted = augment.shift_images(images.reshape(len(offsets), H * W), shape, offsets)
    assert shifted.shape == (len(offsets), H * W)
    for image, out, (dy, dx) in zip(images, shifted, offsets):
        np.testing.assert_array_equal(out.reshape(H, W), rolled_and_zeroed(image, dy, dx))
    one = np.zeros((H, W))
    one[2, 3] = 1.0  # a single pixel moves down by dy and right by dx
    moved = augment.shift_images(one.reshape(1, -1), shape, [(1, -2)]).reshape(H, W)
    assert moved[3, 1] == 1.0 and moved.sum() == 1.0


def test_random_shifts_are_seeded_and_uniform():
    rng = np.random.default_rng(0)
    X = rng.random((40, 9 * 8)).astype(np.float32)
    a = augment.random_shifts(X, (9, 8), 2, seed=[augment.STREAM, 3, 17])
    assert a.shape == X.shape and a.dtype == X.dtype
    np.testing.assert_array_equal(a, augment.random_shifts(X, (9, 8), 2, seed=[augment.STREAM, 3, 17]))
    assert not np.array_equal(a, augment.random_shifts(X, (9, 8), 2, seed=[augment.STREAM, 3, 18]))
    np.testing.assert_array_equal(  # the documented draw
        a, augment.shift_images(X, (9, 8), augment.random_shift_offsets(40, 2, [augment.STREAM, 3, 17])))
    np.testing.assert_array_equal(augment.random_shifts(X, (9, 8), 0, seed=1), X)
    k, M = 2, 50_000
    offsets = augment.random_shift_offsets(M, k, seed=11)
    assert offsets.min() == -k and offsets.max() == k
    cells = (offsets[:, 0] + k) * (2 * k + 1) + offsets[:, 1] + k  # the 25 joint cells, equally likely
    counts = np.bincount(cells, minlength=(2 * k + 1) ** 2)
    chi2 = stats.chisquare(counts)
    assert chi2.pvalue > 1e-3, (counts, chi2)


def test_shift_rejects_bad_input():
    with pytest.raises(ValueError, match="image_shape"):
        augment.random_shifts(np.zeros((3, 10)), (3, 4), 1, seed=0)
    with pytest.raises(ValueError, match="max_shift must lie in"):
        augment.random_shifts(np.zeros((3, 12)), (3, 4), 3, seed=0)


# ---- the proximal step ------------------------------------------------------------------------------------------

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


def least_squares(N=24, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, d))
    y = X @ rng.standard_normal(d) + 0.3 * rng.standard_normal(N)
    return ms.MLP([d, 1], activation="identity", loss="mse"), rng.standard_normal(d + 1), X, y


def test_trainer_proximal_steps_follow_the_closed_form():
    """Least squares, loss 1/(2B) |A theta - y|^2 on each batch: every outer step from theta_t is
    theta_t* + (I - lr (H_B + rho I))^K (theta_t - theta_t*), theta_t* = (H_B + rho I)^{-1}(rho theta_t + b_B)."""
    net, theta0, X, y = least_squares()
    rho, K, lr = 2.0, 4, 0.1
    cfg = TrainConfig(lr=lr, batch_size=8, epochs=2, seed=4, proximal=rho, proximal_steps=K, eval_every=None)
    result = train(net, theta0, (X, y), cfg, progress=False)
    A, I = np.hstack([X, np.ones((len(X), 1))]), np.eye(len(theta0))
    theta = theta0
    for epoch in range(2):
        for idx in batch_sequence(cfg, len(X), epoch):
            H, b = A[idx].T @ A[idx] / len(idx), A[idx].T @ y[idx] / len(idx)
            star = np.linalg.solve(H + rho * I, rho * theta + b)
            theta = star + np.linalg.matrix_power(I - lr * (H + rho * I), K) @ (theta - star)
    np.testing.assert_allclose(result.theta, theta, rtol=1e-10)
    assert result.opt_state["step"] == K * result.step


# ---- matched noise injection ------------------------------------------------------------------------------------

def noise_problem(N=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, 3))
    y = rng.integers(0, 2, N)
    net = ms.MLP([3, 4, 2], activation="tanh", l2=1e-2)
    return net, net.init(seed=seed), X, y


@pytest.mark.parametrize("B, b", [(10, 2), (25, 5), (7, 6)])
def test_matched_noise_equals_the_dense_formula(B, b):
    net, theta, X, y = noise_problem()
    Xb, yb = X[:B], y[:B]
    G = net.per_example_grads(theta, Xb, yb)  # (B, P)
    c = np.sqrt((1 / b - 1 / B) / (B - 1))
    z = np.random.default_rng([injection.STREAM, 3, 8]).standard_normal(B)  # the documented draw
    centering = np.eye(B) - np.ones((B, B)) / B
    xi = injection.matched_noise(net, theta, Xb, yb, b, seed=[injection.STREAM, 3, 8])
    np.testing.assert_allclose(xi, c * G.T @ centering @ z, rtol=1e-12, atol=1e-14)
    # the exact covariance of the linear map z -> xi is (1/b - 1/B) x the unbiased covariance of the rows of G
    M = c * G.T @ centering  # (P, B)
    np.testing.assert_allclose(M @ M.T, (1 / b - 1 / B) * np.cov(G, rowvar=False), rtol=1e-12, atol=1e-16)
    assert injection.matched_noise_scale(B, B) == 0.0 and injection.matched_noise_scale(B, B + 3) == 0.0


def assert_covariance(samples, mean, target, num_directions=6, seed=0, z=5.0):
    """The second moments of ``samples: (M, P)`` about the known ``mean`` equal ``target: (P, P)`` along the
    trace and random unit directions, within ``z`` standard errors of the Monte Carlo average."""
    D = samples - mean
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((samples.shape[1], num_directions))
    U /= np.linalg.norm(U, axis=0)
    for name, q, expected in [("trace", np.sum(D * D, axis=1), np.trace(target))] + [
            (f"direction {j}", (D @ U[:, j]) ** 2, U[:, j] @ target @ U[:, j]) for j in range(num_directions)]:
        error = q.std(ddof=1) / np.sqrt(len(q))
        assert abs(q.mean() - expected) <= z * error, (name, q.mean(), expected, error)


def test_injected_noise_has_the_stated_covariance_over_draws():
    net, theta, X, y = noise_problem()
    B, b, M = 16, 4, 4000
    Xb, yb = X[:B], y[:B]
    xi = np.stack([injection.matched_noise(net, theta, Xb, yb, b, seed=[injection.STREAM, 0, t]) for t in range(M)])
    G = net.per_example_grads(theta, Xb, yb)
    assert_covariance(xi, 0.0, (1 / b - 1 / B) * np.cov(G, rowvar=False))


@pytest.mark.parametrize("replace", [True, False])
def test_large_batch_plus_noise_has_the_small_batch_covariance(replace):
    """Over random batches of B (with or without replacement) and noise draws, g_B + xi has mean g and the
    covariance of a batch of b drawn the same way: sigma^2 / b with replacement, S^2 (1/b - 1/N) without."""
    net, theta, X, y = noise_problem(N=30, seed=1)
    N, B, b, M = 30, 15, 3, 6000
    G = net.per_example_grads(theta, X, y)  # the population's per-example gradients
    S2 = np.cov(G, rowvar=False)  # 1/(N - 1)
    target = (N - 1) / N * S2 / b if replace else S2 * (1 / b - 1 / N)
    rng = np.random.default_rng(5)
    draws = []
    for t in range(M):
        idx = rng.integers(0, N, B) if replace else rng.choice(N, B, replace=False)
        _, g = net.loss_and_grad(theta, X[idx], y[idx])
        draws.append(g + injection.matched_noise(net, theta, X[idx], y[idx], b, seed=[injection.STREAM, 1, t]))
    assert_covariance(np.stack(draws), G.mean(axis=0), target)


# ---- the trainer's options ----------------------------------------------------------------------------------------

def image_problem(N=24, H=5, W=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((N, H * W))
    y = rng.integers(0, 3, N)
    net = ms.MLP([H * W, 6, 3], activation="tanh")
    return net, net.init(seed=seed), X, y


def test_trainer_applies_the_documented_shifts_and_noise():
    net, theta0, X, y = image_problem()
    cfg = TrainConfig(optimizer="sgd", lr=0.1, batch_size=12, max_steps=1, seed=2, augment_shift=1,
                      image_shape=(5, 4), noise_batch=3, eval_every=None)
    result = train(net, theta0, (X, y), cfg, progress=False)
    idx = batch_sequence(cfg, len(X), 0)[0]
    Xb = augment.random_shifts(X[idx], (5, 4), 1, seed=[augment.STREAM, 2, 0])
    loss, g = net.loss_and_grad(theta0, Xb, y[idx])
    xi = injection.matched_noise(net, theta0, Xb, y[idx], 3, seed=[injection.STREAM, 2, 0])
    assert result.history["loss"][0] == pytest.approx(loss, rel=1e-14)
    np.testing.assert_allclose(result.theta, theta0 - 0.1 * (g + xi), rtol=1e-13)
    # no noise when the batch is not larger than noise_batch: the plain run
    plain = train(net, theta0, (X, y), TrainConfig(lr=0.1, batch_size=12, max_steps=3, seed=2), progress=False)
    same = train(net, theta0, (X, y), TrainConfig(lr=0.1, batch_size=12, max_steps=3, seed=2, noise_batch=12),
                 progress=False)
    np.testing.assert_array_equal(plain.theta, same.theta)


def test_trainer_options_resume_bit_identically(tmp_path):
    net, theta0, X, y = image_problem()
    base = dict(optimizer="adam", lr=0.01, batch_size=8, seed=3, augment_shift=1, image_shape=(5, 4),
                noise_batch=2, proximal=1.0, proximal_steps=2)
    whole = train(net, theta0, (X, y), TrainConfig(epochs=2, **base), progress=False)
    out = str(tmp_path / "run")
    train(net, theta0, (X, y), TrainConfig(epochs=1, out=out, **base), progress=False)
    resumed = train(net, theta0, (X, y), TrainConfig(epochs=2, out=out, **base), resume=out, progress=False)
    np.testing.assert_array_equal(resumed.theta, whole.theta)
    assert resumed.history["loss"] == whole.history["loss"]
    with pytest.raises(ms.ConfigMismatchError, match="noise_batch"):
        train(net, theta0, (X, y), TrainConfig(epochs=3, out=out, **{**base, "noise_batch": 4}), resume=out,
              progress=False)


def test_trainer_option_validation():
    net, theta0, X, y = image_problem()
    with pytest.raises(ValueError, match="image shape"):
        train(net, theta0, (X, y), TrainConfig(max_steps=1, augment_shift=1), progress=False)
    for bad, match in [({"augment_shift": -1}, "augment_shift"), ({"noise_batch": 0}, "noise_batch"),
                       ({"proximal": -0.1}, "proximal"), ({"proximal_steps": 3}, "needs proximal > 0")]:
        with pytest.raises(ValueError, match=match):
            TrainConfig(max_steps=1, **bad)


def test_a_checkpoint_from_before_the_options_resumes_with_their_defaults(tmp_path):
    from minisgd import checkpoint as ckpt
    net, theta0, X, y = image_problem()
    out = str(tmp_path / "old")
    whole = train(net, theta0, (X, y), TrainConfig(lr=0.05, batch_size=8, epochs=2), progress=False)
    train(net, theta0, (X, y), TrainConfig(lr=0.05, batch_size=8, epochs=1, out=out), progress=False)
    arrays, meta = ckpt.load(out)
    new_fields = ("augment_shift", "image_shape", "noise_batch", "proximal", "proximal_steps")
    meta["config"] = {k: v for k, v in meta["config"].items() if k not in new_fields}  # as written before them
    ckpt.save(out, arrays, meta, step=meta["counters"]["step"])
    resumed = train(net, theta0, (X, y), TrainConfig(lr=0.05, batch_size=8, epochs=2, out=out), resume=out,
                    progress=False)
    np.testing.assert_array_equal(resumed.theta, whole.theta)
    with pytest.raises(ms.ConfigMismatchError, match="proximal"):
        train(net, theta0, (X, y), TrainConfig(lr=0.05, batch_size=8, epochs=3, out=out, proximal=1.0), resume=out,
              progress=False)
