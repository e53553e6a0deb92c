"""The sweep runner: the run folder it writes, resuming without redoing finished points, failures that do not stop
the sweep, config checks, and executors (serial, process pool, any object with ``submit``)."""
import json
import os
import time
from concurrent import futures as cf
from dataclasses import dataclass

import numpy as np
import pytest
from matplotlib.figure import Figure

from minisgd import sweep
from minisgd.training.checkpoint import ConfigMismatchError
from minisgd.experiments import Scenario, at_least
from support import plant_object_array

CALLS = []  # the points run in this process (serial executor)
STOP = {"seed": None}  # this seed raises KeyboardInterrupt (a sweep stopped by the user), in this process


@dataclass(frozen=True)
class ToyConfig:
    scale: float = 2.0  # multiplies the seed
    fail_seed: int = -1  # this seed raises ValueError
    seed: int = 0
    seeds: int = 4


def toy_grid(config):
    return [{"scale": config.scale, "fail_seed": config.fail_seed, "seed": s}
            for s in range(config.seed, config.seed + config.seeds)]


def toy_run_point(point):
    CALLS.append(point["seed"])
    release = os.environ.get("TOY_RELEASE")
    while release and point["seed"] >= 2 and not os.path.exists(release):  # a point held until the test says
        time.sleep(0.01)
    if point["seed"] == point["fail_seed"]:
        raise ValueError(f"seed {point['seed']} is cursed")
    if point["seed"] == STOP["seed"]:
        raise KeyboardInterrupt
    s = point["seed"]
    return {"value": point["scale"] * s, "curve": np.arange(3.0) * s, "nested": {"square": np.float64(s * s),
                                                                                   "label": f"s{s}"},
            "threads": os.environ.get("OPENBLAS_NUM_THREADS")}


def toy_summarize(config, records):
    rows = [{"seed": r["point"]["seed"], "value": r["result"]["value"]} for r in records]
    return {"values": rows}, "TOY TABLE " + " ".join(str(r["value"]) for r in rows)


def toy_figures(config, records):
    fig = Figure(figsize=(2, 2))
    fig.subplots().plot([r["result"]["value"] for r in records])
    return {"values": fig}


TOY = Scenario(name="toy", description="a toy scenario for the tests", config_class=ToyConfig, quick={"seeds": 2},
               grid=toy_grid, run_point=toy_run_point, summarize=toy_summarize, figures=toy_figures,
               checks={"fail_seed": at_least(-1)}, needs_mnist=False)  # -1: no seed fails


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()
    STOP["seed"] = None


def test_pack_unpack_round_trip():
    result = {"a": 1, "b": np.arange(4.0), "c": {"d": np.ones((2, 3)), "e": [1, 2], "f": np.float32(2.5)},
              "g": [{"h": np.zeros(2)}], "s": "text", "t": (1, 2)}
    tree, arrays = sweep.pack(result)
    assert set(arrays) == {"b", "c/d", "g/0/h"}
    json.dumps(tree)  # JSON-able
    back = sweep.unpack(tree, arrays)
    np.testing.assert_array_equal(back["b"], result["b"])
    np.testing.assert_array_equal(back["c"]["d"], result["c"]["d"])
    np.testing.assert_array_equal(back["g"][0]["h"], np.zeros(2))
    assert back["c"]["f"] == 2.5 and back["c"]["e"] == [1, 2] and back["s"] == "text" and back["t"] == [1, 2]


def test_point_keys_name_the_varying_fields():
    points = [{"opt": "adam", "lr": 0.1, "seed": 0}, {"opt": "adam", "lr": 0.1, "seed": 1},
              {"opt": "sgd", "lr": 0.1, "seed": 0}]
    assert sweep.point_keys(points) == ["opt=adam_seed=0", "opt=adam_seed=1", "opt=sgd_seed=0"]
    assert sweep.point_keys([{"seed": 3}]) == ["point"]
    assert sweep.point_keys([{"hidden": (64, 32), "seed": 0}, {"hidden": (8,), "seed": 0}]) == \
        ["hidden=64_32", "hidden=8"]
    with pytest.raises(ValueError, match="same point twice"):
        sweep.point_keys([{"seed": 0}, {"seed": 0}])


def test_run_folder_layout_and_contents(tmp_path):
    report = sweep.run_sweep(TOY, ToyConfig(), tmp_path / "run")
    out = tmp_path / "run"
    assert report.ok and report.computed == 4 and report.skipped == 0
    assert sorted(CALLS) == [0, 1, 2, 3]
    assert json.loads((out / "config.json").read_text())["config"]["scale"] == 2.0
    for s in range(4):
        assert (out / "points" / f"seed={s}.json").is_file() and (out / "points" / f"seed={s}.npz").is_file()
    stored = json.loads((out / "results.json").read_text())
    assert [p["result"]["value"] for p in stored["points"]] == [0.0, 2.0, 4.0, 6.0]
    assert stored["tables"]["values"][3] == {"seed": 3, "value": 6.0}
    with np.load(out / "results.npz") as npz:
        np.testing.assert_array_equal(npz["seed=2/curve"], [0.0, 2.0, 4.0])
    assert "TOY TABLE 0.0 2.0 4.0 6.0" in (out / "summary.md").read_text()
    assert (out / "figures" / "values.png").read_bytes()[:4] == b"\x89PNG"
    rec = report.records[2]
    assert rec["result"]["nested"] == {"square": 4.0, "label": "s2"}
    np.testing.assert_array_equal(rec["result"]["curve"], [0.0, 2.0, 4.0])
    name, config, records, failures = sweep.load_sweep(out)
    assert name == "toy" and config["seeds"] == 4 and len(records) == 4 and failures == []


def test_rerun_skips_finished_points(tmp_path):
    sweep.run_sweep(TOY, ToyConfig(), tmp_path)
    CALLS.clear()
    report = sweep.run_sweep(TOY, ToyConfig(), tmp_path)
    assert CALLS == [] and report.computed == 0 and report.skipped == 4 and report.ok
    assert "TOY TABLE 0.0 2.0 4.0 6.0" in report.summary


def test_stopped_sweep_resumes_without_redoing_finished_points(tmp_path):
    STOP["seed"] = 2
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(TOY, ToyConfig(), tmp_path)
    assert sorted(p.name for p in (tmp_path / "points").glob("*.json")) == ["seed=0.json", "seed=1.json"]
    assert not [p for p in (tmp_path / "points").iterdir() if "tmp" in p.name]  # no temporary files left
    STOP["seed"] = None
    CALLS.clear()
    report = sweep.run_sweep(TOY, ToyConfig(), tmp_path)  # the same command again
    assert sorted(CALLS) == [2, 3] and report.skipped == 2 and report.computed == 2 and report.ok
    assert [r["result"]["value"] for r in report.records] == [0.0, 2.0, 4.0, 6.0]


def test_failed_point_is_recorded_and_does_not_stop_the_sweep(tmp_path):
    seen = []
    report = sweep.run_sweep(TOY, ToyConfig(fail_seed=1), tmp_path, on_failure=seen.append)
    assert not report.ok and len(report.records) == 3 and len(report.failures) == 1
    failure = report.failures[0]
    assert failure["key"] == "seed=1" and failure["point"]["seed"] == 1 and seen == [failure]
    assert "ValueError: seed 1 is cursed" in failure["error"] and "toy_run_point" in failure["traceback"]
    assert (tmp_path / "points" / "seed=1.failed.json").is_file()
    summary = (tmp_path / "summary.md").read_text()
    assert "## Failed points" in summary and "seed=1" in summary and "seed 1 is cursed" in summary
    assert json.loads((tmp_path / "results.json").read_text())["failures"][0]["key"] == "seed=1"
    # running again retries only the failed point (it fails again, and the others are not recomputed)
    CALLS.clear()
    report = sweep.run_sweep(TOY, ToyConfig(fail_seed=1), tmp_path)
    assert CALLS == [1] and report.skipped == 3 and len(report.failures) == 1


def test_changed_config_is_an_error_naming_the_key(tmp_path):
    sweep.run_sweep(TOY, ToyConfig(seeds=2), tmp_path)
    with pytest.raises(ConfigMismatchError, match=r"scale.*stored 2\.0, now 3\.0"):
        sweep.run_sweep(TOY, ToyConfig(seeds=2, scale=3.0), tmp_path)
    other = Scenario(**{**TOY.__dict__, "name": "other"})
    with pytest.raises(ConfigMismatchError, match="scenario 'toy'"):
        sweep.run_sweep(other, ToyConfig(seeds=2), tmp_path)


@dataclass(frozen=True)
class ToyConfigV2(ToyConfig):
    offset: float = 0.0  # a field added after a run was made; its default reproduces the old points


def test_a_field_added_with_its_default_keeps_old_runs(tmp_path):
    sweep.run_sweep(TOY, ToyConfig(seeds=2), tmp_path)
    v2 = Scenario(**{**TOY.__dict__, "config_class": ToyConfigV2,
                     "grid": lambda c: [{**p, "offset": c.offset} for p in toy_grid(c)]})
    CALLS.clear()
    report = sweep.run_sweep(v2, ToyConfigV2(seeds=2), tmp_path)
    assert CALLS == [] and report.skipped == 2 and report.ok
    assert json.loads((tmp_path / "config.json").read_text())["config"]["offset"] == 0.0
    with pytest.raises(ConfigMismatchError, match="offset"):
        sweep.run_sweep(v2, ToyConfigV2(seeds=2, offset=1.0), tmp_path)


def test_process_pool_gives_the_serial_results_and_one_thread_per_worker(tmp_path):
    serial = sweep.run_sweep(TOY, ToyConfig(), tmp_path / "serial")
    before = os.environ.get("OPENBLAS_NUM_THREADS")
    with sweep.process_pool(2, threads=1) as pool:
        pooled = sweep.run_sweep(TOY, ToyConfig(), tmp_path / "pool", executor=pool)
    assert os.environ.get("OPENBLAS_NUM_THREADS") == before  # restored
    assert [r["key"] for r in pooled.records] == [r["key"] for r in serial.records]
    assert [r["result"]["value"] for r in pooled.records] == [r["result"]["value"] for r in serial.records]
    assert {r["result"]["threads"] for r in pooled.records} == {"1"}
    assert (tmp_path / "pool" / "summary.md").read_text().split("## Config")[1] == \
        (tmp_path / "serial" / "summary.md").read_text().split("## Config")[1]


class _LazyFuture:
    """A future that is not a ``concurrent.futures.Future`` (as Dask's are): ``done()`` and ``result()`` only."""

    def __init__(self, fn, args):
        self._fn, self._args, self._polls = fn, args, 0

    def done(self):
        self._polls += 1
        return self._polls > 2  # "finishes" after being polled twice

    def result(self):
        return self._fn(*self._args)

    def cancel(self):
        return False


class _DaskLikeExecutor:
    def submit(self, fn, *args):
        return _LazyFuture(fn, args)


def test_any_executor_with_submit_works(tmp_path):
    report = sweep.run_sweep(TOY, ToyConfig(), tmp_path, executor=_DaskLikeExecutor())
    assert report.ok and sorted(CALLS) == [0, 1, 2, 3]
    assert [r["result"]["value"] for r in report.records] == [0.0, 2.0, 4.0, 6.0]


def test_executor_failure_becomes_a_failed_point(tmp_path):
    class Broken:
        def submit(self, fn, *args):
            future = cf.Future()
            future.set_exception(RuntimeError("worker died"))
            return future

    report = sweep.run_sweep(TOY, ToyConfig(seeds=2), tmp_path, executor=Broken())
    assert len(report.failures) == 2 and "RuntimeError: worker died" in report.failures[0]["error"]
    assert "no points finished" not in report.summary and "Points finished: 0 of 2" in report.summary


# ---- damaged points, untrusted files -----------------------------------------------------------------------------

def _untimed(data):
    """A point file's content but the time it took (and the seal, which covers that time)."""
    if not data.startswith(b"{"):
        return data
    return {k: v for k, v in json.loads(data).items() if k not in ("seconds", "json_sha256")}


def _edit_digit(path):
    text = path.read_text()
    path.write_text(text.replace('"value": 4.0', '"value": 5.0'))


def _swap_npz(path):
    path.with_suffix(".npz").write_bytes((path.parent / "seed=1.npz").read_bytes())


def _huge(path):
    with open(path, "wb") as fh:
        fh.truncate(1 << 30)  # sparse: a gigabyte that is never read


DAMAGES = {  # how point seed=2 is damaged -> what the error says
    "truncated JSON": (lambda p: p.write_bytes(p.read_bytes()[:50]), "not valid JSON"),
    "one digit edited": (_edit_digit, "does not match its json_sha256"),
    "NPZ damaged": (lambda p: p.with_suffix(".npz").write_bytes(b"PK\x03\x04" + b"\0" * 40),
                    "does not match the SHA-256 in seed=2.json"),
    "NPZ swapped with another point's": (_swap_npz, "does not match the SHA-256 in seed=2.json"),
    "NPZ missing": (lambda p: p.with_suffix(".npz").unlink(), "seed=2.npz: missing or not a regular file"),
    "JSON of another point": (lambda p: p.write_bytes((p.parent / "seed=1.json").read_bytes()),
                              "holds point 'seed=1', not 'seed=2'"),
    "written before checksums": (lambda p: p.write_text(json.dumps({k: v for k, v in json.loads(p.read_text()).items()
                                                                    if k not in ("json_sha256", "npz_sha256")})),
                                 "no json_sha256 checksum"),
    "object array": (plant_object_array, "holds Python objects"),
    "a gigabyte of JSON": (_huge, "1,073,741,824 bytes, more than a point file may hold"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_point_is_named_moved_aside_and_recomputed(tmp_path, damage, capsys, monkeypatch):
    from minisgd import experiments
    from minisgd.cli import main
    from minisgd.errors import CorruptFileError
    spoil, says = DAMAGES[damage]
    sweep.run_sweep(TOY, ToyConfig(), tmp_path)
    good = {p.name: p.read_bytes() for p in (tmp_path / "points").iterdir() if p.is_file()}
    results = (tmp_path / "results.json").read_text()
    spoil(tmp_path / "points" / "seed=2.json")
    # show names the file and what is wrong, changes nothing, and says the run is not whole
    monkeypatch.setitem(experiments.SCENARIOS, "toy", TOY)
    assert main(["show", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"damaged point seed=2: {tmp_path / 'points'}" in out and says in out
    assert "moves it to points/damaged/" in out
    with pytest.raises(CorruptFileError, match=says):
        sweep.load_sweep(tmp_path)
    # the next run moves it aside with a note, computes that point only, and ends where the first run ended
    CALLS.clear()
    report = sweep.run_sweep(TOY, ToyConfig(), tmp_path)
    assert CALLS == [2] and report.ok and report.skipped == 3
    (note,) = report.damaged
    assert note["key"] == "seed=2" and says in note["reason"]
    damaged = tmp_path / "points" / "damaged"
    assert json.loads((damaged / "seed=2.reason.json").read_text())["reason"] == note["reason"]
    assert (damaged / "seed=2.json").is_file()
    assert {p.name: _untimed(p.read_bytes()) for p in (tmp_path / "points").iterdir() if p.is_file()} == \
        {name: _untimed(data) for name, data in good.items()}
    assert [{**p, "seconds": 0} for p in json.loads((tmp_path / "results.json").read_text())["points"]] == \
        [{**p, "seconds": 0} for p in json.loads(results)["points"]]
    assert "## Damaged points" in report.summary and says in report.summary
    assert main(["show", str(tmp_path)]) == 0 and "## Damaged points" in capsys.readouterr().out


def test_damaged_config_is_one_error_naming_it(tmp_path):
    from minisgd.errors import CorruptFileError
    sweep.run_sweep(TOY, ToyConfig(), tmp_path)
    (tmp_path / "config.json").write_text('{"scenario": "toy"')
    with pytest.raises(CorruptFileError, match="config.json: not valid JSON"):
        sweep.run_sweep(TOY, ToyConfig(), tmp_path)


def test_a_folder_where_every_point_failed_takes_a_new_config(tmp_path):
    report = sweep.run_sweep(TOY, ToyConfig(seeds=1, fail_seed=0), tmp_path)
    assert len(report.failures) == 1 and not report.records
    report = sweep.run_sweep(TOY, ToyConfig(seeds=2, scale=3.0), tmp_path)  # another config: accepted
    assert report.ok and [r["result"]["value"] for r in report.records] == [0.0, 3.0]
    assert json.loads((tmp_path / "config.json").read_text())["config"]["scale"] == 3.0
    assert not list((tmp_path / "points").glob("*.failed.json"))
    with pytest.raises(ConfigMismatchError, match="scale"):  # now a point finished: the config is bound
        sweep.run_sweep(TOY, ToyConfig(seeds=2, scale=4.0), tmp_path)


def test_a_second_sweep_is_refused_while_the_folder_is_in_use(tmp_path):
    from minisgd.errors import FolderInUseError
    from minisgd.training.storage import folder_lock
    with folder_lock(tmp_path):
        with pytest.raises(FolderInUseError, match=rf"PID {os.getpid()}\)"):
            sweep.run_sweep(TOY, ToyConfig(), tmp_path)
    assert not (tmp_path / "points").exists()


def test_temporaries_of_killed_writes_are_removed_when_the_folder_is_taken(tmp_path):
    """What a writer killed mid-write leaves (``.NAME.tmp-PID``, as large as the file it was writing) in the run
    folder, points/, points/damaged/ and figures/ is removed by the next sweep; nothing else is."""
    sweep.run_sweep(TOY, ToyConfig(), tmp_path)
    assert (tmp_path / "figures").is_dir()
    (tmp_path / "points" / "damaged").mkdir()
    stale = [tmp_path / ".results.npz.tmp-41", tmp_path / "points" / ".seed=0.npz.tmp-42",
             tmp_path / "points" / "damaged" / ".seed=1.reason.json.tmp-43", tmp_path / "figures" / ".toy.png.tmp-44"]
    kept = [tmp_path / ".notes", tmp_path / "points" / "seed=0.tmp-45", tmp_path / "figures" / ".toy.png.tmp-x"]
    for path in stale + kept:
        path.write_bytes(b"x" * 100)
    report = sweep.run_sweep(TOY, ToyConfig(), tmp_path)
    assert report.ok and report.computed == 0
    assert [p for p in stale if p.exists()] == [] and all(p.read_bytes() == b"x" * 100 for p in kept)


# ---- disk full, read-only ----------------------------------------------------------------------------------------

def _refuse_writes(monkeypatch, code, refuse):
    """Make ``atomic_write_bytes`` in the sweep fail with ``code`` for the files ``refuse(name)`` says."""
    from minisgd.training.storage import storage_error
    real, written = sweep.atomic_write_bytes, []

    def write(path, data):
        if refuse(path.name):
            raise storage_error(OSError(code, os.strerror(code)), path, len(data))
        written.append(path.name)
        real(path, data)

    monkeypatch.setattr(sweep, "atomic_write_bytes", write)
    return written


def test_a_point_the_disk_refuses_is_kept_and_written_after_the_others(tmp_path, monkeypatch):
    """The disk is full when seed=1's arrays come, with every point in flight, and has room again later: seed=1 is
    written once the others are in, computed once, and the sweep goes on."""
    import errno
    tries = []

    def once(name):
        if name == "seed=1.npz":
            tries.append(name)
            return len(tries) == 1
        return False

    written = _refuse_writes(monkeypatch, errno.ENOSPC, once)
    report = sweep.run_sweep(TOY, ToyConfig(seeds=6), tmp_path, executor=_DoneExecutor())
    assert report.ok and len(tries) == 2 and sorted(CALLS) == list(range(6))
    points = [n for n in written if n.startswith("seed=") and n.endswith(".json")]
    assert sorted(points) == [f"seed={s}.json" for s in range(6)] and points[-1] == "seed=1.json"
    CALLS.clear()
    tries.clear()
    monkeypatch.undo()  # serially: no new point starts until the refused one is written
    written = _refuse_writes(monkeypatch, errno.ENOSPC, once)
    report = sweep.run_sweep(TOY, ToyConfig(seeds=6), tmp_path / "serial")
    assert report.ok and CALLS == list(range(6)) and len(tries) == 2
    assert [n for n in written if n.startswith("seed=") and n.endswith(".json")] == \
        [f"seed={s}.json" for s in range(6)]


@pytest.mark.parametrize("code", [__import__("errno").ENOSPC, __import__("errno").EROFS])
def test_disk_full_or_read_only_is_one_line_naming_the_folder_and_bytes(tmp_path, monkeypatch, code):
    _refuse_writes(monkeypatch, code, lambda name: name.startswith("seed=1."))
    CALLS.clear()
    with pytest.raises(sweep.StorageError) as error:
        sweep.run_sweep(TOY, ToyConfig(), tmp_path)
    message = str(error.value)
    assert "\n" not in message and CALLS == [0, 1]
    assert message.startswith(f"cannot store 1 computed point(s) in {tmp_path / 'points'} (seed=1; ")
    assert f"bytes needed): {os.strerror(code)}. 1 of 4 points are stored, 2 not started. Free space" in message
    assert error.value.needed > 0 and error.value.errno == code


# ---- stopping ----------------------------------------------------------------------------------------------------

class _DoneExecutor:
    """Runs each task at once (like the serial one) but is not the serial executor, so the whole grid is in flight."""

    def submit(self, fn, *args):
        future = cf.Future()
        future.set_result(fn(*args))
        return future


def test_a_stop_during_a_write_waits_for_it_and_the_finished_points_are_written(tmp_path, monkeypatch):
    """SIGTERM arrives while seed=0's arrays are being written, with every other point finished but not collected:
    seed=0's JSON is still written, then the others are, then the sweep stops with SweepStopped."""
    import signal
    real = sweep.atomic_write_bytes

    def write(path, data):
        if path.name == "seed=0.npz":
            os.kill(os.getpid(), signal.SIGTERM)  # handled at once, in this thread, by the sweep's handler
        real(path, data)

    monkeypatch.setattr(sweep, "atomic_write_bytes", write)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(sweep.SweepStopped) as stop:
        sweep.run_sweep(TOY, ToyConfig(), tmp_path, executor=_DoneExecutor())
    assert stop.value.signum == signal.SIGTERM and isinstance(stop.value, KeyboardInterrupt)
    assert signal.getsignal(signal.SIGTERM) is before  # restored
    assert sorted(p.name for p in (tmp_path / "points").glob("*.json")) == [f"seed={s}.json" for s in range(4)]
    assert sweep.read_run(tmp_path).damaged == [] and not (tmp_path / "results.json").exists()
    report = sweep.run_sweep(TOY, ToyConfig(), tmp_path)
    assert report.ok and report.computed == 0


def test_points_waiting_in_a_pool_when_the_disk_refuses_are_cancelled_and_counted(tmp_path, monkeypatch):
    """One worker; points from seed=2 on wait for a file that appears when the disk refuses seed=1: the points still
    waiting in the pool are cancelled (not computed for nothing), those already handed to the worker are stored, and
    the error counts both."""
    import errno
    import re
    release = tmp_path / "release"
    monkeypatch.setenv("TOY_RELEASE", str(release))

    def refuse(name):
        if name == "seed=1.npz":
            release.touch()
            return True
        return False

    _refuse_writes(monkeypatch, errno.ENOSPC, refuse)
    with sweep.process_pool(1, threads=1) as pool, pytest.raises(sweep.StorageError) as error:
        sweep.run_sweep(TOY, ToyConfig(seeds=8), tmp_path / "run", executor=pool)
    stored, not_started = map(int, re.search(r"(\d+) of 8 points are stored, (\d+) not started", str(error.value))
                              .groups())
    # the pool hands its worker 3 points at most: the one it runs and two queued (max_workers + 1 calls)
    assert stored + 1 + not_started == 8 and not_started >= 3
    assert len(list((tmp_path / "run" / "points").glob("seed=*.json"))) == stored
