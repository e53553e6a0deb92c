"""The sweep runner: the run folder it writes, resuming without redoing finished points, failures that do not stop
the sweep, config checks, and executors (serial, process pool, any object with ``submit``)."""
import json
import os
from concurrent import futures as cf
from dataclasses import dataclass

import numpy as np
import pytest
from matplotlib.figure import Figure

from minisgd import sweep
from minisgd.training.checkpoint import ConfigMismatchError
from minisgd.experiments import Scenario, at_least

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
