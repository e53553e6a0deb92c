"""Checkpoints: a resumed run equals the uninterrupted one to the bit (CPU), changed configurations and damaged
checkpoints are clear errors, and writes are atomic."""
import errno
import json
import os

import numpy as np
import pytest

import minisgd as ms
from minisgd.errors import FolderInUseError, StorageError
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


def _reseal(folder, edit):
    """Apply ``edit`` to the manifest's dict and seal it again: a manifest malformed but not damaged."""
    from minisgd.training.storage import seal
    path = folder / "checkpoint.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(seal({k: v for k, v in manifest.items() if k != "json_sha256"})))


def test_edited_counters_are_caught_by_the_manifest_seal(tmp_path):
    net, theta, data = problem()
    out = tmp_path / "run"
    train(net, theta, data, TrainConfig(lr=0.1, batch_size=8, max_steps=6, out=str(out)), progress=False)
    path = out / "checkpoint.json"
    text = path.read_text()
    assert '"step": 6' in text
    path.write_text(text.replace('"step": 6', '"step": 60', 1))  # one digit more: would skip 54 steps
    with pytest.raises(ckpt.CheckpointError, match="does not match its json_sha256"):
        train(net, theta, data, TrainConfig(lr=0.1, batch_size=8, max_steps=9, out=str(out)), resume=True,
              progress=False)
    manifest = json.loads(text)  # a version-1 manifest (before the seal) still loads
    manifest.pop("json_sha256")
    path.write_text(json.dumps({**manifest, "version": 1}))
    assert load_run(out).step == 6


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["meta"].update(counters="step 6"), "counters is not an object of numbers"),
    (lambda m: m["meta"]["counters"].update(step="6"), "counters is not an object of numbers"),
    (lambda m: m["meta"].update(opt_step=None), "opt_step is not an integer"),
    (lambda m: m["meta"].update(history_keys=[1]), "history_keys is not a list of names"),
    (lambda m: m["meta"]["counters"].update(steps=6), "its counters do not fit"),
    (lambda m: m.update(meta=[]), "meta is list"),
    (lambda m: m.update(arrays="../../elsewhere/checkpoint-000000006-00000000.npz"), "not an NPZ file of this"),
])
def test_malformed_manifest_is_a_checkpoint_error(tmp_path, edit, match):
    net, theta, data = problem()
    out = tmp_path / "run"
    train(net, theta, data, TrainConfig(lr=0.1, batch_size=8, max_steps=6, out=str(out)), progress=False)
    _reseal(out, edit)
    with pytest.raises(ckpt.CheckpointError, match=match) as error:
        train(net, theta, data, TrainConfig(lr=0.1, batch_size=8, max_steps=9, out=str(out)), resume=True,
              progress=False)
    assert str(out / "checkpoint.json") in str(error.value) and "\n" not in str(error.value)  # one line, the file


def test_oversized_manifest_and_arrays_are_refused_unread(tmp_path, monkeypatch):
    ckpt.save(tmp_path, {"theta": np.arange(5.0)}, {"a": 1}, step=1)
    monkeypatch.setattr(ckpt, "MAX_NPZ_BYTES", 100)
    with pytest.raises(ckpt.CheckpointError, match=r"checkpoint-000000001-.*\.npz: \d+ bytes, more than a "
                                                   "checkpoint's NPZ may hold"):
        ckpt.load(tmp_path)
    with open(tmp_path / "checkpoint.json", "wb") as fh:
        fh.truncate(10 ** 9)  # sparse
    with pytest.raises(ckpt.CheckpointError, match=r"checkpoint.json: 1,000,000,000 bytes, more than a checkpoint "
                                                   "manifest may hold"):
        ckpt.load(tmp_path)


def test_resume_on_other_inputs_is_refused(tmp_path):
    """The fingerprint holds X_train by a hash of rows: standardized inputs, or one row changed among those hashed,
    are another run; so is another y_train."""
    net, theta, (X, y, Xt, yt) = problem()
    out = str(tmp_path / "run")
    cfg = TrainConfig(lr=0.1, batch_size=8, max_steps=3, out=out)
    train(net, theta, (X, y, Xt, yt), cfg, progress=False)
    longer = TrainConfig(lr=0.1, batch_size=8, max_steps=6, out=out)
    for data, key in [(((X - X.mean(0)) / X.std(0), y), "X_train_rows_sha256"), ((X[::-1], y), "X_train_rows_sha256"),
                      ((X, 1 - y), "y_train_sha256"), ((X.astype(np.float32), y), "X_train_rows_sha256")]:
        with pytest.raises(ckpt.ConfigMismatchError, match=key):
            train(net, theta, (*data, Xt, yt), longer, resume=True, progress=False)
    # a checkpoint written before the rows' hash existed resumes without that check
    _reseal(tmp_path / "run", lambda m: m["meta"]["fingerprint"].pop("X_train_rows_sha256"))
    assert train(net, theta, (X, y, Xt, yt), longer, resume=True, progress=False).step == 6


def test_fingerprint_hashes_a_fixed_sample_of_rows():
    import importlib
    train_module = importlib.import_module("minisgd.training.train")  # the module: the package exports train()
    net, theta, _ = problem()
    X = np.random.default_rng(1).standard_normal((5000, 3))
    y = np.zeros(5000, np.int64)
    base = train_module._fingerprint(net, theta, train_module.as_data((X, y)))["X_train_rows_sha256"]
    hashed = np.arange(1024) * 4999 // 1023  # the rows the fingerprint reads
    for row, caught in [(hashed[7], True), (hashed[7] + 1, False)]:
        Z = X.copy()
        Z[row, 0] += 1.0
        now = train_module._fingerprint(net, theta, train_module.as_data((Z, y)))["X_train_rows_sha256"]
        assert (now != base) == caught, row


def test_one_writer_per_checkpoint_folder_and_crash_leftovers_removed(tmp_path):
    net, theta, data = problem()
    out = tmp_path / "run"
    with ckpt.writing(out):
        with pytest.raises(FolderInUseError, match=rf"PID {os.getpid()}\)"):
            train(net, theta, data, TrainConfig(max_steps=2, out=str(out)), progress=False)
    assert not ckpt.has_checkpoint(out)
    ckpt.save(out, {"theta": np.arange(3.0)}, {}, step=1)
    named = json.loads((out / "checkpoint.json").read_text())["arrays"]
    leftovers = [out / "checkpoint-000000002-0123abcd.npz", out / ".checkpoint.json.tmp-4242", out / "diverged-"
                 "000000001-0123abcd.npz"]  # a killed writer's new arrays and temporary file; arrays of no manifest
    for path in leftovers:
        path.write_bytes(b"x")
    with ckpt.writing(out):
        pass
    assert sorted(p.name for p in out.iterdir()) == sorted([".lock", "checkpoint.json", named])
    (out / "checkpoint-000000002-0123abcd.npz").write_bytes(b"x")
    (out / "checkpoint.json").write_text("{damaged")  # unreadable: its arrays might be either, both are kept
    with ckpt.writing(out):
        pass
    assert len(list(out.glob("checkpoint-*.npz"))) == 2


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    ckpt.save(tmp_path, {"theta": np.arange(4.0)}, {"step": 1}, step=1)
    real = ckpt.os.replace

    def full(src, dst):
        if str(dst).endswith(".npz"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", full)
    with pytest.raises(StorageError, match=r"checkpoint-000000002-[0-9a-f]{8}\.npz \(\d+ bytes\): No space"):
        ckpt.save(tmp_path, {"theta": np.zeros(4)}, {"step": 2}, step=2)
    monkeypatch.undo()
    arrays, meta = ckpt.load(tmp_path)
    assert meta == {"step": 1} and arrays["theta"].tobytes() == np.arange(4.0).tobytes()
