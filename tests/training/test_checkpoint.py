"""Checkpoints: a resumed run equals the uninterrupted one to the bit (CPU), changed configurations and damaged
checkpoints are clear errors, and writes are atomic."""
import json

import numpy as np
import pytest

import minisgd as ms
from minisgd.training import checkpoint as ckpt
from minisgd.training.callbacks import GradientNoise, every
from minisgd.training.train import TrainConfig, load_run, train


def problem():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4))
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)
    net = ms.MLP([4, 6, 2], activation="tanh")
    return net, net.init(seed=0), (X, y, X[:20], y[:20])


def without_wall_time(history):
    return {k: v for k, v in history.items() if "wall_time" not in k}


def assert_same_run(a, b):
    assert np.array_equal(a.theta, b.theta)
    assert without_wall_time(a.history) == without_wall_time(b.history)
    assert a.opt_state.keys() == b.opt_state.keys()
    assert all(np.array_equal(a.opt_state[k], b.opt_state[k]) for k in a.opt_state)
    assert (a.step, a.epoch, a.examples) == (b.step, b.epoch, b.examples)


CALLBACKS = [every(3, GradientNoise(subset=20), name="noise")]


@pytest.mark.parametrize("optimizer, sampling", [("adam", "shuffle"), ("momentum", "replacement")])
def test_one_epoch_then_resume_equals_two_epochs(optimizer, sampling, tmp_path):
    net, theta, data = problem()
    base = dict(optimizer=optimizer, lr=0.05, batch_size=8, sampling=sampling, seed=3, eval_every=1)
    whole = train(net, theta, data, TrainConfig(epochs=2, **base), callbacks=CALLBACKS, progress=False)
    out = str(tmp_path / "run")
    first = train(net, theta, data, TrainConfig(epochs=1, out=out, **base), callbacks=CALLBACKS, progress=False)
    assert first.step == 7 and load_run(out).step == 7
    resumed = train(net, theta, data, TrainConfig(epochs=2, out=out, **base), callbacks=CALLBACKS, resume=out,
                    progress=False)
    assert_same_run(resumed, whole)
    assert resumed.wall_time >= first.wall_time  # the clock carries over


def test_crash_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    net, theta, data = problem()
    out = str(tmp_path / "run")
    cfg = TrainConfig(optimizer="nesterov", lr=0.05, batch_size=8, epochs=3, eval_every=4, eval_unit="step",
                      checkpoint_every=5, out=out)
    armed = []

    def crash(net, theta, data, step):
        if armed and step == 12:
            raise KeyboardInterrupt  # as if the process were killed after step 12; the last checkpoint is step 10
        return 0.0

    callbacks = CALLBACKS + [every(1, crash, name="crash")]
    whole = train(net, theta, data, TrainConfig(**{**vars(cfg), "checkpoint_every": None, "out": None}),
                  callbacks=callbacks, progress=False)
    armed.append(True)
    with pytest.raises(KeyboardInterrupt):
        train(net, theta, data, cfg, callbacks=callbacks, progress=False)
    armed.clear()
    assert load_run(out).step == 10 and load_run(out).stop_reason == "in_progress"
    resumed = train(net, theta, data, cfg, callbacks=callbacks, resume=True, progress=False)
    assert_same_run(resumed, whole)
    np.testing.assert_array_equal(load_run(out).theta, whole.theta)


def test_changed_configuration_is_an_error_naming_the_key(tmp_path):
    net, theta, data = problem()
    out = str(tmp_path / "run")
    train(net, theta, data, TrainConfig(lr=0.1, batch_size=8, max_steps=3, out=out), progress=False)
    with pytest.raises(ckpt.ConfigMismatchError, match=r"lr.*stored 0\.1, now 0\.2"):
        train(net, theta, data, TrainConfig(lr=0.2, batch_size=8, max_steps=6, out=out), resume=out, progress=False)
    with pytest.raises(ckpt.ConfigMismatchError, match="net"):
        other = ms.MLP([4, 6, 2], activation="relu")
        train(other, theta, data, TrainConfig(lr=0.1, batch_size=8, max_steps=6, out=out), resume=out, progress=False)
    with pytest.raises(FileExistsError, match="resume="):
        train(net, theta, data, TrainConfig(lr=0.1, batch_size=8, max_steps=6, out=out), progress=False)
    r = train(net, theta, data, TrainConfig(lr=0.1, batch_size=8, max_steps=6, out=out), resume=out, progress=False)
    assert r.step == 6  # budgets may change: the run is extended


def test_missing_and_corrupt_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load(tmp_path / "nowhere")
    with pytest.raises(ckpt.CheckpointError, match="checkpoint.json is missing"):
        ckpt.load(tmp_path)
    ckpt.save(tmp_path, {"theta": np.arange(5.0)}, {"a": 1}, step=1)
    npz = next(tmp_path.glob("checkpoint-*.npz"))
    npz.write_bytes(npz.read_bytes()[:-10])  # truncated
    with pytest.raises(ckpt.CheckpointError, match="SHA-256"):
        ckpt.load(tmp_path)
    npz.unlink()
    with pytest.raises(ckpt.CheckpointError, match="missing"):
        ckpt.load(tmp_path)
    (tmp_path / "checkpoint.json").write_text("{not json")
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        ckpt.load(tmp_path)
    net, theta, data = problem()
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        train(net, theta, data, TrainConfig(max_steps=2, out=str(tmp_path)), resume=True, progress=False)


def test_writes_are_atomic(tmp_path, monkeypatch):
    arrays, meta = {"theta": np.arange(4.0), "history.loss": np.array([1.5, 0.25])}, {"step": 1}
    ckpt.save(tmp_path, arrays, meta, step=1)
    ckpt.save(tmp_path, {"theta": np.arange(4.0) + 1}, {"step": 2}, step=2)
    assert len(list(tmp_path.glob("*.npz"))) == 1 and not list(tmp_path.glob(".*tmp*"))
    # a crash while the manifest is being replaced leaves the previous checkpoint whole
    real_replace = ckpt.os.replace

    def crash_on_manifest(src, dst):
        if str(dst).endswith("checkpoint.json"):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", crash_on_manifest)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save(tmp_path, {"theta": np.zeros(4)}, {"step": 3}, step=3)
    monkeypatch.undo()
    loaded, meta = ckpt.load(tmp_path)
    np.testing.assert_array_equal(loaded["theta"], np.arange(4.0) + 1)
    assert meta == {"step": 2} and not list(tmp_path.glob(".*tmp*"))
    manifest = json.loads((tmp_path / "checkpoint.json").read_text())
    assert manifest["format"] == "minisgd-checkpoint" and (tmp_path / manifest["arrays"]).is_file()
