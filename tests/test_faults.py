"""Real faults, and what survives them: processes killed at chosen moments (between a point's NPZ and its JSON, in
the middle of an atomic write, while results are collected, between a checkpoint's arrays and its manifest), a file
size limit that fills the "disk", two writers into one folder, and SIGINT / SIGHUP / SIGTERM / SIGKILL to the main
process of a ``--jobs 2`` sweep. After each: nothing finished is lost, nothing wrong is accepted, no worker or
temporary file is left behind, and the final results equal an uninterrupted run's to the bit.

Every fault runs in a child process started as a user starts ``minisgd`` (see ``faults_toy.py``, which also holds the
scenario, a small network trained for real, and how a child arms its fault); the processes synchronize through files.

Children get one BLAS thread, as the reference does (the arrays here are too small for BLAS to split anyway).
Slow (each child starts Python and NumPy): marked ``slow``, run by default.
"""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from faults_toy import HOLD, NAME, WAIT, problem, scenario
from minisgd import experiments, sweep
from minisgd.cli import main
from minisgd.errors import FolderInUseError
from minisgd.training import checkpoint as ckpt

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
CHILD = [sys.executable, "-c", "import faults_toy; faults_toy.child()"]


def _env(**extra):
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p),
            **{k: "1" for k in sweep.THREAD_VARS}, **extra}


SPAWNED = []  # the children started with spawn(), each the leader of its own process group


@pytest.fixture(autouse=True)
def _end_spawned():
    """Whatever a test leaves running (when it fails) ends with it: each child's whole process group."""
    yield
    while SPAWNED:
        try:
            os.killpg(SPAWNED.pop().pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def spawn(*args, **env):
    """A child running ``args`` (``run ...`` or ``train ...``) in a process group of its own, its output in the file
    ``env["log"]`` if given."""
    log = open(Path(env.pop("log")) if "log" in env else os.devnull, "wb")
    proc = subprocess.Popen([*CHILD, *args], stdout=log,
                            stderr=subprocess.STDOUT, env=_env(**env), start_new_session=True)
    SPAWNED.append(proc)
    return proc


def run_child(*args, **env):
    proc = subprocess.run([*CHILD, *args], capture_output=True, text=True, env=_env(**env), timeout=WAIT)
    return proc.returncode, proc.stderr


def sweep_args(out, *extra):
    return ["run", NAME, "--out", str(out), *extra]


def wait_for(condition, what, proc=None):
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        assert proc is None or proc.poll() is None, f"the child ended (rc {proc.returncode}) before {what}"
        time.sleep(0.02)


# ---- what is checked after every fault ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, in a child like the others."""
    out = tmp_path_factory.mktemp("reference") / "run"
    rc, err = run_child(*sweep_args(out))
    assert rc == 0, err
    return out


def assert_same_results(run, reference):
    """Every point of ``run`` equals ``reference``'s to the bit (floats read back from their shortest repr, so ==
    is bit equality; arrays by their bytes), and no temporary file is left anywhere in ``run``."""
    a, b = (json.loads((Path(r) / "results.json").read_text()) for r in (run, reference))
    assert [(p["key"], p["point"], p["result"]) for p in a["points"]] == \
        [(p["key"], p["point"], p["result"]) for p in b["points"]] and len(a["points"]) == 4
    with np.load(Path(run) / "results.npz") as x, np.load(Path(reference) / "results.npz") as y:
        assert sorted(x.files) == sorted(y.files)
        for name in x.files:
            assert x[name].dtype == y[name].dtype and x[name].tobytes() == y[name].tobytes(), name
    assert temporaries(run) == []


def temporaries(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob(".*.tmp-*"))


def stored(out):
    """``{point file: bytes}`` of the finished points (JSON and NPZ)."""
    return {p.name: p.read_bytes() for p in sorted((Path(out) / "points").glob("*")) if p.is_file()
            and not p.name.startswith(".") and not p.name.endswith(".failed.json")}


def finished(out):
    return sorted(p.stem for p in (Path(out) / "points").glob("*.json") if not p.name.endswith(".failed.json"))


def alive(pid):
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# ---- kills ----------------------------------------------------------------------------------------------------------

def test_sweep_killed_at_each_moment_loses_nothing_finished_and_resumes_to_the_same_bits(reference, tmp_path):
    """One run folder through a series of SIGKILLs, each resumed by the next run: in the middle of writing
    config.json, between point seed=1's NPZ and its JSON (a half-written point: recomputed, not trusted), with point
    seed=2's NPZ complete in its temporary file, then with its JSON complete in its temporary file, and with
    results.json complete in its temporary file; then a run without faults."""
    out = tmp_path / "run"
    kept = {}
    for fault, done in [("replace:config.json", []), ("before:seed=1.json", ["seed=0"]),
                        ("replace:seed=2.npz", ["seed=0", "seed=1"]), ("replace:seed=2.json", ["seed=0", "seed=1"]),
                        ("replace:results.json", ["seed=0", "seed=1", "seed=2", "seed=3"])]:
        rc, err = run_child(*sweep_args(out), FAULT=fault)
        assert rc == -signal.SIGKILL, err
        assert finished(out) == done, fault
        now = stored(out)
        assert {k: now[k] for k in kept} == kept, f"{fault}: a stored point changed"
        kept = {k: v for k, v in now.items() if Path(k).stem in done}
    assert temporaries(out)  # the last kill left results.json's temporary file ...
    rc, err = run_child(*sweep_args(out))
    assert rc == 0, err
    assert "0 computed now, 4 found done" in err
    assert {k: stored(out)[k] for k in kept} == kept
    assert_same_results(out, reference)  # ... which this run removed


@pytest.fixture(scope="module")
def whole_training(tmp_path_factory):
    """The uninterrupted training run's checkpoint folder."""
    whole = tmp_path_factory.mktemp("training") / "whole"
    rc, err = run_child("train", str(whole))
    assert rc == 0, err
    return whole


@pytest.mark.parametrize("fault", ["before:checkpoint.json#2", "after:checkpoint.json#2"])
def test_training_killed_around_a_checkpoint_resumes_to_the_same_bits(whole_training, tmp_path, fault):
    """Killed with checkpoint 2's arrays written but not its manifest, or with its manifest in place but checkpoint
    1's arrays not yet removed: the folder holds one whole checkpoint, the resumed run ends where the uninterrupted
    one does, bit for bit, and the orphaned arrays are removed."""
    whole, out = whole_training, tmp_path / "run"
    rc, err = run_child("train", str(out), FAULT=fault)
    assert rc == -signal.SIGKILL, err
    assert len(list(out.glob("checkpoint-*.npz"))) == 2  # the new arrays beside the old
    assert ckpt.load_state(out)["counters"]["step"] == (5 if fault.startswith("before") else 10)
    rc, err = run_child("train", str(out))
    assert rc == 0, err
    a, b = ckpt.load_state(out), ckpt.load_state(whole)
    assert a["counters"]["step"] == b["counters"]["step"] > 10
    assert a["theta"].tobytes() == b["theta"].tobytes()
    assert {k: v for k, v in a["history"].items() if "wall_time" not in k} == \
        {k: v for k, v in b["history"].items() if "wall_time" not in k}
    assert len(list(out.glob("checkpoint-*.npz"))) == 1 and temporaries(out) == []


# ---- two writers ----------------------------------------------------------------------------------------------------

def test_a_second_sweep_into_a_folder_in_use_is_refused_naming_the_first(reference, tmp_path, capsys, monkeypatch):
    out, hold = tmp_path / "run", tmp_path / "hold"
    hold.mkdir()
    first = spawn(*sweep_args(out), **{HOLD: str(hold)})
    wait_for(lambda: (hold / "running-2").exists(), "the first sweep to hold its point", first)
    monkeypatch.setitem(experiments.SCENARIOS, NAME, scenario())
    assert main(sweep_args(out)) == 2
    err = capsys.readouterr().err
    assert f"is in use by another minisgd process (PID {first.pid})" in err and err.count("\n") == 2
    (hold / "release").touch()
    assert first.wait(WAIT) == 0
    assert_same_results(out, reference)  # the refused one changed nothing


def test_a_second_training_into_a_folder_in_use_is_refused_naming_the_first(tmp_path):
    import minisgd as ms
    out, hold = tmp_path / "run", tmp_path / "hold"
    hold.mkdir()
    first = spawn("train", str(out), str(hold))
    wait_for(lambda: (hold / "running").exists(), "the first training to reach step 3", first)
    X, y = problem()
    net = ms.MLP([4, 6, 2], activation="tanh")
    with pytest.raises(FolderInUseError, match=f"PID {first.pid}"):
        ms.train(net, net.init(seed=0), (X, y), ms.TrainConfig(max_steps=2, out=str(out)), progress=False)
    (hold / "release").touch()
    assert first.wait(WAIT) == 0
    assert ckpt.load_state(out)["counters"]["step"] > 10  # the first one's checkpoints are whole


# ---- disk full ------------------------------------------------------------------------------------------------------

def test_disk_full_stops_cleanly_naming_the_folder_and_the_bytes(reference, tmp_path):
    """With writes limited to 64 kB a file (RLIMIT_FSIZE: they fail with EFBIG, as on a full disk), point seed=2's
    128 kB of arrays cannot be written: it is kept, tried once more, then reported in one line with the folder and
    the bytes it needs; seed=3 is not started. With room again, the same command finishes the sweep."""
    out = tmp_path / "run"
    rc, err = run_child(*sweep_args(out), FAULT_FSIZE=str(64 << 10))
    assert rc == 2, err
    line = err.strip().splitlines()[-1]
    assert line.startswith(f"minisgd: error: cannot store 1 computed point(s) in {out / 'points'} (seed=2; ")
    assert f"bytes needed): {os.strerror(errno.EFBIG)}. 2 of 4 points are stored, 1 not started" in line
    assert finished(out) == ["seed=0", "seed=1"] and temporaries(out) == []
    rc, err = run_child(*sweep_args(out))
    assert rc == 0 and "2 computed now, 2 found done" in err, err
    assert_same_results(out, reference)


# ---- signals to the main process of a --jobs 2 sweep ----------------------------------------------------------------

def _held_sweep(out, hold):
    """A ``--jobs 2`` sweep whose points seed=2 and seed=3 hold in both workers, once every other point is stored.
    Returns the child and the PIDs of its workers."""
    for f in hold.glob("running-*"):
        f.unlink()
    proc = spawn(*sweep_args(out, "--jobs", "2"), log=str(hold / "log"), **{HOLD: str(hold)})
    wait_for(lambda: all((hold / f"running-{s}").exists() for s in (2, 3)) and
             finished(out) == ["seed=0", "seed=1"], "both workers to hold", proc)
    workers = {int((hold / f"running-{s}").read_text()) for s in (2, 3)}
    assert len(workers) == 2 and all(alive(pid) for pid in workers)
    return proc, workers


def test_signals_to_the_main_process_end_its_workers_and_keep_finished_points(reference, tmp_path):
    """SIGINT, SIGHUP, SIGTERM, then SIGKILL to the main process alone (not its group) of one run folder's sweep,
    each while both workers run a point: it ends at once, its workers (and the pool's other helper processes) end
    with it, every finished point stays as it was, and the next run computes only the missing ones, to the same
    bits."""
    out, hold = tmp_path / "run", tmp_path / "hold"
    hold.mkdir()
    before = None
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGKILL):
        proc, workers = _held_sweep(out, hold)
        helpers = _descendants(proc.pid)
        os.kill(proc.pid, signum)
        rc = proc.wait(WAIT)
        expected = -signal.SIGKILL if signum == signal.SIGKILL else 128 + signum
        assert rc == expected, f"{signum!r}: rc {rc}\n" + (hold / "log").read_text()
        wait_for(lambda: not any(alive(pid) for pid in workers | helpers), f"the workers to end after {signum!r}")
        assert finished(out) == ["seed=0", "seed=1"] and temporaries(out) == [], signum
        assert before is None or stored(out) == before, signum
        before = stored(out)
    (hold / "release").touch()
    rc, err = run_child(*sweep_args(out, "--jobs", "2"))
    assert rc == 0 and "2 computed now, 2 found done" in err, err
    assert_same_results(out, reference)


@pytest.mark.dask
def test_a_killed_main_process_takes_its_local_dask_cluster_with_it(tmp_path):
    """``--scheduler local:2``: SIGKILL to the main process while both workers run a point, and every process it
    started (nannies' workers, Dask's helpers) ends too."""
    out, hold = tmp_path / "run", tmp_path / "hold"
    hold.mkdir()
    proc = spawn(*sweep_args(out, "--scheduler", "local:2"), log=str(hold / "log"), **{HOLD: str(hold)})
    wait_for(lambda: all((hold / f"running-{s}").exists() for s in (2, 3)) and
             finished(out) == ["seed=0", "seed=1"], "both workers to hold", proc)
    started = _descendants(proc.pid)
    assert {int((hold / f"running-{s}").read_text()) for s in (2, 3)} <= started
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(WAIT) == -signal.SIGKILL
    wait_for(lambda: not any(alive(pid) for pid in started), "the cluster's processes to end")
    assert finished(out) == ["seed=0", "seed=1"]


def _descendants(pid):
    """The PIDs of every process below ``pid`` (from /proc: no psutil needed)."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            found.add(c)
            todo.append(c)
    return found
