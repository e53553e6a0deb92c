"""The trainer: closed-form GD / SGD iterates on linear least squares, budgets, divergence, measurements,
the history's contents, other backends, and an MNIST run to a stated test accuracy.

Least squares is an MLP ``[d, 1]`` with mse: the loss 1/(2N) |X~ theta - y|^2 with X~ = [X, 1] is exactly
quadratic in theta = (w, b), with Hessian H = X~^T X~ / N and gradient H theta - X~^T y / N, so its iterates
are computed here with numpy.linalg, independently of the MLP, and compared at rtol 1e-10 (float64).
"""
import math
from pathlib import Path

import numpy as np
import pytest

import minisgd as ms
from minisgd.training.callbacks import GradientNoise, StopTraining, every
from support import DATA_ROOT, HostCopies, needs_gpu, needs_mnist
from minisgd.training.train import DivergenceError, TrainConfig, batch_sequence, planned_steps, train
from minisgd.data import augment
from minisgd.training import injection

REPO = Path(__file__).resolve().parents[1]


def least_squares(N=30, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, d))
    y = X @ rng.standard_normal(d) + 0.5 + 0.3 * rng.standard_normal(N)
    net = ms.MLP([d, 1], activation="identity", loss="mse")
    theta0 = rng.standard_normal(d + 1)  # (w, b): W is (d, 1) row-major, then the bias
    return net, theta0, X, y


def aug(X):
    return np.hstack([X, np.ones((len(X), 1))])  # X~ = [X, 1]: (N, d + 1)


def test_gradient_descent_matches_closed_form_iterates():
    net, theta0, X, y = least_squares()
    A = aug(X)
    H, b = A.T @ A / len(X), A.T @ y / len(X)
    lr, T = 1.0 / np.linalg.eigvalsh(H).max(), 25
    result = train(net, theta0, (X, y), TrainConfig(sampling="full", lr=lr, max_steps=T), progress=False)
    star = np.linalg.solve(H, b)
    iterates = [star + np.linalg.matrix_power(np.eye(len(b)) - lr * H, t) @ (theta0 - star) for t in range(T + 1)]
    np.testing.assert_allclose(result.theta, iterates[T], rtol=1e-10, atol=1e-12)
    losses = [0.5 * np.mean((A @ th - y) ** 2) for th in iterates[:T]]
    np.testing.assert_allclose(result.history["loss"], losses, rtol=1e-10)
    assert result.history["batch_size"] == [len(X)] * T and result.history["examples"] == [len(X) * t for t in range(T)]


@pytest.mark.parametrize("sampling, drop_last", [("shuffle", False), ("shuffle", True), ("replacement", False)])
def test_sgd_matches_closed_form_iterates_on_its_batches(sampling, drop_last):
    net, theta0, X, y = least_squares(N=30)
    A = aug(X)
    cfg = TrainConfig(sampling=sampling, drop_last=drop_last, lr=0.05, batch_size=7, epochs=3, seed=5)
    result = train(net, theta0, (X, y), cfg, progress=False)
    theta, losses = theta0.copy(), []
    for epoch in range(3):
        for idx in batch_sequence(cfg, len(X), epoch):  # the batches, listed independently of the run
            r = A[idx] @ theta - y[idx]
            losses.append(0.5 * np.mean(r ** 2))
            theta = theta - 0.05 * A[idx].T @ r / len(idx)
    np.testing.assert_allclose(result.theta, theta, rtol=1e-10)
    np.testing.assert_allclose(result.history["loss"], losses, rtol=1e-10)
    assert result.step == len(losses) == planned_steps(cfg, len(X))


def small_classifier(N=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, 3))
    y = (X[:, 0] > 0).astype(np.int64)
    net = ms.MLP([3, 5, 2], activation="tanh")
    return net, net.init(seed=1), (X, y, X[:10], y[:10])


@pytest.mark.parametrize("budget, stop, steps, epochs, examples", [
    ({"epochs": 3}, "epochs", 12, 3, 90),  # N = 30, B = 8: batches 8, 8, 8, 6 per epoch
    ({"max_steps": 5}, "max_steps", 5, 1, 38),
    ({"max_examples": 50}, "max_examples", 6, 1, 46),  # a 7th step would reach 54 > 50
    ({"max_examples": 60, "epochs": 1}, "epochs", 4, 1, 30),  # the first budget reached wins
])
def test_budgets_stop_where_they_should(budget, stop, steps, epochs, examples):
    net, theta, data = small_classifier()
    cfg = TrainConfig(batch_size=8, eval_every=None, **budget)
    r = train(net, theta, data, cfg, progress=False)
    assert (r.stop_reason, r.step, r.epoch, r.examples) == (stop, steps, epochs, examples)
    assert planned_steps(cfg, 30) == steps == len(r.history["step"])
    assert r.history["eval_step"] == [steps]  # eval_every=None: only the final state is evaluated


def test_target_loss_stops_at_the_first_evaluation_below_it():
    net, theta, data = small_classifier()
    cfg = TrainConfig(lr=0.5, batch_size=8, epochs=50, target_loss=0.3, eval_every=2, eval_unit="step")
    r = train(net, theta, data, cfg, progress=False)
    h = r.history
    assert r.stop_reason == "target_loss" and h["train_loss"][-1] <= 0.3 < min(h["train_loss"][:-1])
    assert h["eval_step"][-1] == r.step and r.step % 2 == 0 and h["eval_step"] == list(range(0, r.step + 1, 2))


def test_history_and_measurements():
    net, theta, data = small_classifier()
    calls = []

    def stop_at_9(net, theta, data, step):
        calls.append(step)
        if step == 9:
            raise StopTraining
        return {"a": step * 2.0, "b": 1.0}

    cfg = TrainConfig(batch_size=8, epochs=10, eval_every=1)
    r = train(net, theta, data, cfg, callbacks=[every(3, stop_at_9, name="probe"),
                                                 every(4, GradientNoise(subset=None), name="noise")], progress=False)
    h = r.history
    assert r.stop_reason == "callback" and r.step == 9 and calls == [0, 3, 6, 9]
    assert h["probe_step"] == [0, 3, 6] and h["a"] == [0.0, 6.0, 12.0]
    assert h["noise_step"] == [0, 4, 8] and len(h["grad_noise_trace"]) == 3
    assert h["eval_step"] == [0, 4, 8, 9] and h["eval_epoch"] == [0, 1, 2, 2]
    for key in ("step", "epoch", "lr", "batch_size", "loss", "grad_norm", "examples", "wall_time"):
        assert len(h[key]) == 9, key
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "eval_examples", "eval_wall_time"):
        assert len(h[key]) == 4, key
    assert np.all(np.diff(h["wall_time"]) >= 0)
    # the logged minibatch loss and gradient norm are those of theta_t on batch t (checked at t = 0)
    idx = batch_sequence(cfg, 30, 0)[0]
    loss, g = net.loss_and_grad(theta, data[0][idx], data[1][idx])
    assert h["loss"][0] == loss and h["grad_norm"][0] == pytest.approx(np.linalg.norm(g), rel=1e-12)
    assert h["train_loss"][0] == pytest.approx(net.loss(theta, data[0], data[1]), rel=1e-12)




@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")  # without a factor, only inf / nan stops the run
@pytest.mark.parametrize("factor", [100.0, None])
def test_divergence_is_reported_with_the_last_good_state(factor, tmp_path):
    net, theta0, X, y = least_squares()
    cfg = TrainConfig(lr=1e3, batch_size=10, epochs=100, divergence_factor=factor, out=str(tmp_path / "run"))
    with pytest.raises(DivergenceError, match="Lower the learning rate") as info:
        train(net, theta0, (X, y), cfg, progress=False)
    err = info.value
    assert err.step > 0 and len(err.history["step"]) == len(err.history["loss"]) == err.step
    assert np.all(np.isfinite(err.theta)) and err.opt_state["step"] == err.step - 1
    loss0 = err.history["loss"][0]
    assert math.isfinite(err.history["loss"][-1])  # the minibatch loss measured at err.theta
    if factor is None:
        assert not math.isfinite(err.loss)
    else:
        assert err.loss > factor * loss0 and max(err.history["loss"]) <= factor * loss0
        assert math.isfinite(0.5 * np.mean((aug(X) @ err.theta - y) ** 2))
    stored = ms.training.checkpoint.load(tmp_path / "run", name="diverged")[0]
    np.testing.assert_array_equal(stored["theta"], err.theta)
    assert stored["history.loss"].tolist() == err.history["loss"]


def test_config_validation():
    with pytest.raises(ValueError, match="budget"):
        TrainConfig()
    with pytest.raises(ValueError, match="sampling"):
        TrainConfig(epochs=1, sampling="bootstrap")
    with pytest.raises(ValueError, match="out="):
        TrainConfig(epochs=1, checkpoint_every=10)
    with pytest.raises(ValueError, match="optimizer object"):
        TrainConfig(epochs=1, optimizer=ms.training.optim.Adam(), betas=(0.5, 0.9))
    net, theta, data = small_classifier()
    with pytest.raises(TypeError, match="every"):
        train(net, theta, data, TrainConfig(epochs=1), callbacks=[lambda *a: 0.0], progress=False)


def test_float32_and_array_api_strict_runs_match_numpy():
    net, theta, (X, y, Xt, yt) = small_classifier()
    cfg = TrainConfig(optimizer="nesterov", lr=0.1, batch_size=8, epochs=2)
    ref = train(net, theta, (X, y, Xt, yt), cfg, progress=False)
    r32 = train(net, theta.astype(np.float32), (X.astype(np.float32), y, Xt.astype(np.float32), yt), cfg,
                progress=False)
    assert r32.theta.dtype == np.float32
    np.testing.assert_allclose(r32.theta, ref.theta, rtol=1e-4, atol=1e-5)
    xps = pytest.importorskip("array_api_strict")
    strict = train(net, xps.asarray(theta), tuple(xps.asarray(a) for a in (X, y, Xt, yt)), cfg, progress=False)
    np.testing.assert_allclose(np.asarray(strict.theta), ref.theta, rtol=1e-12)
    assert strict.history["train_acc"] == pytest.approx(ref.history["train_acc"], abs=1e-12)




@pytest.mark.parametrize("options", [{"optimizer": "sgd"}, {"optimizer": "adam", "log_grad_norm": False},
                                     {"optimizer": "momentum", "proximal": 0.1, "proximal_steps": 3}])
def test_a_step_copies_to_the_host_once(options):
    """On a stand-in GPU a step reads the device once (the loss, with |g|^2), whatever the optimizer: the checks
    of the data run once, not per step. Counted as the difference between 20 and 10 steps, so the setup and the
    final evaluation cancel; the results are NumPy's."""
    pytest.importorskip("array_api_strict")
    net, theta, (X, y, _, _) = small_classifier()
    copies = {}
    for steps in (10, 20):
        cfg = TrainConfig(lr=0.1, batch_size=8, max_steps=steps, eval_every=None, **options)
        with HostCopies() as host:
            got = train(net, host.asarray(theta), (host.asarray(X), host.asarray(y)), cfg, progress=False)
        copies[steps] = host.count
    assert copies[20] - copies[10] == 10
    ref = train(net, theta, (X, y), cfg, progress=False)
    np.testing.assert_allclose(ms.backend.to_numpy(got.theta), ref.theta, rtol=1e-12)
    np.testing.assert_allclose(got.history["loss"], ref.history["loss"], rtol=1e-12)


@needs_gpu
def test_cupy_training_with_a_checkpoint_and_resume_matches_numpy(tmp_path):
    """On CuPy, a run that stops after one epoch, is written and resumed to two matches NumPy's run (float64; the
    GPU sums in other orders: rtol 1e-10), stays on the GPU, and stores NumPy arrays."""
    import cupy
    from dataclasses import replace
    net, theta, data = small_classifier()
    cfg = TrainConfig(optimizer="adam", lr=0.05, batch_size=8, epochs=2, out=str(tmp_path / "gpu"))
    ref = train(net, theta, data, replace(cfg, out=None), progress=False)
    on_gpu = tuple(cupy.asarray(a) for a in data)
    train(net, cupy.asarray(theta), on_gpu, replace(cfg, epochs=1), progress=False)
    got = train(net, cupy.asarray(theta), on_gpu, cfg, resume=True, progress=False)
    assert isinstance(got.theta, cupy.ndarray) and isinstance(ms.training.train.load_run(cfg.out).theta, np.ndarray)
    np.testing.assert_allclose(got.theta.get(), ref.theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.history["loss"], ref.history["loss"], rtol=1e-10)
    np.testing.assert_allclose(got.history["test_acc"], ref.history["test_acc"], rtol=1e-10)


def test_an_overflowing_gradient_is_a_divergence_before_theta_goes_non_finite():
    # Least squares with residuals ~1e150 and inputs ~1e10: the loss (~1e300) is finite, |g|^2 (~1e320) is not.
    # The step reads |g|^2 with the loss, so theta stays finite without a check of theta at every step.
    net, theta0, X, y = small_least_squares()
    cfg = TrainConfig(lr=0.1, batch_size=8, max_steps=5, eval_every=None)
    with pytest.raises(DivergenceError, match="squared gradient norm is inf") as info, np.errstate(over="ignore"):
        train(net, theta0, (1e10 * X, 1e150 * y), cfg, progress=False)
    assert info.value.step == 0
    np.testing.assert_array_equal(info.value.theta, theta0)


@needs_mnist
def test_mnist_subset_reaches_88_percent_test_accuracy():
    # 4000 training images (stratified, seed 0), 2x2 average pooling to 14x14 = 196 inputs, 10 classes;
    # 196-64-10 tanh MLP, Adam 3e-3, batch 64, 6 epochs. Reaches 0.9075 test accuracy on the 10000 test images
    # (seeded; about 1.5 s); we require 0.88.
    from minisgd.data import load_mnist

    ds = load_mnist(DATA_ROOT, n_train=4000, pool=2, seed=0, download=False)
    net = ms.MLP([196, 64, 10], activation="tanh")
    cfg = TrainConfig(optimizer="adam", lr=3e-3, batch_size=64, epochs=6, seed=0)
    r = train(net, net.init(seed=0), ds, cfg, progress=False)
    assert r.history["test_acc"][0] < 0.3 and r.history["test_acc"][-1] >= 0.88
    assert r.history["train_loss"][-1] < 0.5 * r.history["train_loss"][0]


def small_least_squares(N=24, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, d))
    y = X @ rng.standard_normal(d) + 0.3 * rng.standard_normal(N)
    return ms.MLP([d, 1], activation="identity", loss="mse"), rng.standard_normal(d + 1), X, y


def test_trainer_proximal_steps_follow_the_closed_form():
    """Least squares, loss 1/(2B) |A theta - y|^2 on each batch: every outer step from theta_t is
    theta_t* + (I - lr (H_B + rho I))^K (theta_t - theta_t*), theta_t* = (H_B + rho I)^{-1}(rho theta_t + b_B)."""
    net, theta0, X, y = small_least_squares()
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


def image_problem(N=24, H=5, W=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((N, H * W))
    y = rng.integers(0, 3, N)
    net = ms.MLP([H * W, 6, 3], activation="tanh")
    return net, net.init(seed=seed), X, y


def test_trainer_applies_the_documented_shifts_and_noise():
    net, theta0, X, y = image_problem()
    cfg = TrainConfig(optimizer="sgd", lr=0.1, batch_size=12, max_steps=1, seed=2,
                      augment=augment.RandomShifts(1, (5, 4)), noise_batch=3, eval_every=None)
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
    base = dict(optimizer="adam", lr=0.01, batch_size=8, seed=3, augment=augment.RandomShifts(1, (5, 4)),
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
    with pytest.raises(ValueError, match="image_shape"):
        train(net, theta0, (X, y), TrainConfig(max_steps=1, augment=augment.RandomShifts(1, (3, 3))),
              progress=False)
    with pytest.raises(ValueError, match="max_shift"):
        augment.RandomShifts(-1, (5, 4))
    for bad, match in [({"augment": lambda X, seed: X}, "augment"), ({"noise_batch": 0}, "noise_batch"),
                       ({"proximal": -0.1}, "proximal"), ({"proximal_steps": 3}, "needs proximal > 0")]:
        with pytest.raises(ValueError, match=match):
            TrainConfig(max_steps=1, **bad)


def test_a_checkpoint_from_before_the_options_resumes_with_their_defaults(tmp_path):
    from minisgd.training import checkpoint as ckpt
    net, theta0, X, y = image_problem()
    out = str(tmp_path / "old")
    whole = train(net, theta0, (X, y), TrainConfig(lr=0.05, batch_size=8, epochs=2), progress=False)
    train(net, theta0, (X, y), TrainConfig(lr=0.05, batch_size=8, epochs=1, out=out), progress=False)
    arrays, meta = ckpt.load(out)
    new_fields = ("augment", "noise_batch", "proximal", "proximal_steps")
    meta["config"] = {k: v for k, v in meta["config"].items() if k not in new_fields}  # as written before them
    meta["config"].update(augment_shift=0, image_shape=None)  # the options `augment` replaced, off
    ckpt.save(out, arrays, meta, step=meta["counters"]["step"])
    resumed = train(net, theta0, (X, y), TrainConfig(lr=0.05, batch_size=8, epochs=2, out=out), resume=out,
                    progress=False)
    np.testing.assert_array_equal(resumed.theta, whole.theta)
    with pytest.raises(ms.ConfigMismatchError, match="proximal"):
        train(net, theta0, (X, y), TrainConfig(lr=0.05, batch_size=8, epochs=3, out=out, proximal=1.0), resume=out,
              progress=False)


def test_progress_bar_shows_when_asked_and_never_otherwise(capsys):
    net, theta, data = small_classifier()
    cfg = TrainConfig(batch_size=8, epochs=2, eval_every=None)
    train(net, theta, data, cfg, progress=True)
    assert "8/8" in capsys.readouterr().err  # tqdm's count: 2 epochs of 4 steps
    train(net, theta, data, cfg, progress=False)
    assert capsys.readouterr().err == ""


# ---- batch normalization: running statistics carried beside theta ---------------------------------------------------

def bn_problem(seed=0):
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((60, 4)), rng.integers(0, 3, 60)
    return ms.MLP([4, 6, 5, 3], activation="tanh", batch_norm=True), X, y


def test_bn_training_steps_and_running_statistics_follow_their_definitions():
    """Plain SGD on full batches, recomputed here from the training-mode gradient and torch's update rule."""
    net, X, y = bn_problem()
    theta0 = net.init(seed=1)
    result = train(net, theta0, (X, y), TrainConfig(optimizer="sgd", lr=0.1, epochs=3, sampling="full"),
                   progress=False)
    theta, stats = theta0.copy(), net.initial_statistics()
    for _ in range(3):
        _, grad, batch = ms.core.batchnorm.train_loss_and_grad(net, theta, X, y)
        z, means, variances = X, [], []
        for (W, b), (gamma, beta) in zip(net.unflatten(theta)[:-1], ms.core.batchnorm.normalization_params(net, theta)):
            z = z @ W + b
            means.append(z.mean(0))
            variances.append(z.var(0, ddof=1))
            z = np.tanh(gamma * (z - z.mean(0)) / np.sqrt(z.var(0) + net.bn_eps) + beta)
        stats = 0.9 * stats + 0.1 * np.concatenate([v for pair in zip(means, variances) for v in pair])
        theta = theta - 0.1 * grad
    np.testing.assert_allclose(result.theta, theta, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(result.bn_stats, stats, rtol=1e-12, atol=1e-14)
    # the history's losses are eval mode's, with the running statistics of that moment
    assert result.history["train_loss"][-1] == pytest.approx(net.eval_mode(stats).loss(theta, X, y), rel=1e-12)


def test_bn_run_resumes_exactly_with_its_running_statistics(tmp_path):
    net, X, y = bn_problem()
    cfg = TrainConfig(optimizer="adam", lr=1e-2, epochs=3, batch_size=16, checkpoint_every=2, out=str(tmp_path / "w"))
    whole = train(net, net.init(0), (X, y), cfg, progress=False)
    train(net, net.init(0), (X, y), TrainConfig(**{**vars(cfg), "epochs": 1, "out": str(tmp_path / "r")}),
          progress=False)
    resumed = train(net, net.init(0), (X, y), TrainConfig(**{**vars(cfg), "out": str(tmp_path / "r")}),
                    resume=True, progress=False)
    assert np.array_equal(resumed.theta, whole.theta) and np.array_equal(resumed.bn_stats, whole.bn_stats)
    assert np.array_equal(ms.load_run(tmp_path / "r").bn_stats, whole.bn_stats)
    plain = ms.MLP([4, 6, 5, 3], activation="tanh")
    with pytest.raises(ms.MinisgdError):  # a net without BN cannot take this checkpoint
        train(plain, plain.init(0), (X, y),
              TrainConfig(**{**vars(cfg), "out": str(tmp_path / "r")}), resume=True, progress=False)


def test_bn_callbacks_measure_the_eval_mode_net():
    net, X, y = bn_problem()
    seen = []

    def grab(net_seen, theta, data, step):
        seen.append(net_seen)
        return net_seen.hessian_diagonal(theta, data.X_train, data.y_train)[0]  # refused in training mode
    train(net, net.init(0), (X, y), TrainConfig(optimizer="adam", lr=1e-2, epochs=1, batch_size=30),
          callbacks=[every(1, grab)], progress=False)
    assert seen and all("eval mode" in repr(n) for n in seen)


def test_plateau_rule_stops_when_the_loss_ceased_to_improve():
    from minisgd.training.train import plateaued
    assert not plateaued([3.0, 2.0, 1.0], 2, 1e-3)
    assert plateaued([3.0, 1.0, 0.9995, 0.9992], 2, 1e-3)  # 0.9992 > 0.999 * 1.0: less than 1e-3 better
    assert not plateaued([3.0, 1.0, 0.9995, 0.998], 2, 1e-3)
    net, theta0, X, y = least_squares()  # GD on a quadratic converges: the loss stops improving
    result = train(net, theta0, (X, y), TrainConfig(optimizer="sgd", lr=0.3, sampling="full", epochs=500,
                                                    plateau_patience=3), progress=False)
    losses = result.history["train_loss"]
    assert result.stop_reason == "plateau" and result.epoch < 500
    assert plateaued(losses, 3, 1e-3) and not plateaued(losses[:-1], 3, 1e-3)
    with pytest.raises(ValueError, match="plateau_patience"):
        TrainConfig(epochs=1, plateau_patience=0)
