r"""The sweep runner: a scenario's grid of points on any executor, and the run folder it keeps.

A scenario (:mod:`minisgd.experiments`) gives ``grid(config) -> [point, ...]`` and a pure, top-level
``run_point(point) -> result``. A *point* is a plain dict (config values and a ``seed``); a *result* is a dict
of numbers, strings, lists and NumPy arrays, nested dicts allowed. Each point is one task: config and seed in,
numbers out, no file written. The client alone (this module, in the calling process) writes the run folder::

    OUT/config.json                {"scenario": name, "config": {...}}: checked when the sweep is resumed
    OUT/points/KEY.json            one finished point: key, point, result (arrays by reference), seconds
    OUT/points/KEY.npz             its arrays
    OUT/points/KEY.failed.json     a failed point: the point, the error and its traceback
    OUT/results.json, results.npz  every finished point, collected (arrays under "KEY/path/in/result")
    OUT/summary.md                 key numbers and tables (the scenario's), failed points, compute spent
    OUT/figures/NAME.png           the scenario's figures

Each point is written as it arrives, NPZ first and JSON last, each to a temporary file renamed into place
(``minisgd.training.checkpoint.atomic_write_bytes``), so the JSON's presence means the point is complete. Running the
same sweep again skips every point whose JSON is there, retries failed ones, and re-collects, re-summarizes and redraws
from the stored points; the stored config must equal the new one (:class:`ConfigMismatchError` names the keys
that differ).

The executor is anything with ``submit(fn, *args) -> future`` whose futures have ``done()`` and ``result()``:
:class:`SerialExecutor` (in this process, one point at a time), :func:`process_pool` (the standard library's
``ProcessPoolExecutor``), or a Dask ``distributed.Client`` (:func:`dask_client`: a running scheduler, or a
``LocalCluster``). A point that raises is recorded with its traceback and the sweep goes on; the report and
``summary.md`` list it. A worker lost mid-sweep costs nothing finished: the pool reports its points as failed (run
the sweep again), Dask reruns them on the other workers.

A point's result does not depend on where it ran: its seeds come from the point, never from the worker, so a sweep
on Dask workers stores the same bits as the same sweep run serially with the same number of BLAS threads per process
(``tests/test_dask.py`` checks it; with another count OpenBLAS splits its sums differently, which moves results by
rounding). :func:`process_pool` and ``local:N`` give each worker :func:`blas_threads`.
"""
import io
import json
import math
import multiprocessing
import os
import re
import sys
import time
import traceback
from concurrent import futures as cf
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .training.checkpoint import ConfigMismatchError, atomic_write_bytes
from .errors import ClusterError, ExtraNotInstalledError

FORMAT = "minisgd-sweep"
# Thread-count variables of the BLAS / OpenMP / Numba pools, set for worker processes: J workers x T threads
# should not exceed the cores, or the busy-waiting BLAS threads of one worker slow every other worker down.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


# ---- results: JSON for the numbers, NPZ for the arrays ---------------------------------------------------

def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, (tuple, set)):
        return list(value)
    raise TypeError(f"cannot store a {type(value).__name__} in a result; use numbers, strings, lists, dicts, arrays")


def to_json(value):
    """``value`` as it reads back from JSON (tuples become lists, NumPy scalars Python numbers)."""
    return json.loads(json.dumps(value, default=_jsonable))


def pack(result):
    """Split a result into a JSON-able tree and its arrays: every ``np.ndarray`` (of any size, not of dtype object)
    becomes ``{"__array__": "a/b/c"}``, its path in the tree, and goes into the returned dict of arrays."""
    arrays = {}

    def walk(value, path):
        if isinstance(value, dict):
            return {str(k): walk(v, f"{path}/{k}" if path else str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)) and any(isinstance(v, (dict, np.ndarray)) for v in value):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(value)]
        if isinstance(value, np.ndarray) and value.dtype != object:
            arrays[path] = value
            return {"__array__": path}
        return value

    return to_json(walk(result, "")), arrays


def unpack(tree, arrays):
    """The inverse of :func:`pack`: put the arrays back where the references are."""
    if isinstance(tree, dict):
        if set(tree) == {"__array__"}:
            return np.asarray(arrays[tree["__array__"]])
        return {k: unpack(v, arrays) for k, v in tree.items()}
    if isinstance(tree, list):
        return [unpack(v, arrays) for v in tree]
    return tree


def _npz_bytes(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _json_bytes(obj):
    return (json.dumps(obj, indent=1, default=_jsonable) + "\n").encode()


def _load_npz(path):
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


# ---- points and their keys ---------------------------------------------------------------------------------

def _slug(value):
    text = json.dumps(to_json(value)) if not isinstance(value, str) else value
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "_"


def point_keys(points):
    """One file-name-safe key per point, from the fields whose values differ between points (``"point"`` for a
    grid of one), e.g. ``optimizer=adam_seed=3``. Raises ``ValueError`` if two points get the same key."""
    points = [to_json(p) for p in points]
    fields_ = list(dict.fromkeys(k for p in points for k in p))
    varying = [k for k in fields_ if len({json.dumps(p.get(k), sort_keys=True) for p in points}) > 1]
    keys = ["_".join(f"{k}={_slug(p.get(k))}" for k in varying) or "point" for p in points]
    if len(set(keys)) != len(keys):
        twice = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError("the grid holds the same point twice: " + ", ".join(twice))
    return keys


# ---- the task and the executors -----------------------------------------------------------------------------

def execute(fn, point):
    """The task sent to a worker: ``fn(point)``, timed; never raises, so every failure comes back as data.

    Returns ``{"ok": True, "result": ..., "seconds": s}`` or ``{"ok": False, "error": "Type: message",
    "traceback": text, "seconds": s}``.
    """
    start = time.perf_counter()
    try:
        result = fn(point)
        if not isinstance(result, dict):
            raise TypeError(f"run_point must return a dict, got {type(result).__name__}")
        return {"ok": True, "result": result, "seconds": time.perf_counter() - start}
    except Exception as exc:  # noqa: BLE001 (a failing point must not take the sweep down)
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                "seconds": time.perf_counter() - start}


class SerialExecutor:
    """Runs each task in this process when it is submitted; ``submit`` returns a finished future."""

    def submit(self, fn, *args, **kwargs):
        future = cf.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 (delivered through the future, as a pool would)
            future.set_exception(exc)
        return future

    def shutdown(self, wait=True, cancel_futures=False):
        pass


def blas_threads(workers):
    """BLAS threads per worker process when ``workers`` share this machine: cores // workers, at least 1."""
    return max(1, (os.cpu_count() or 1) // workers)


@contextmanager
def _thread_env(threads):
    """The variables of :data:`THREAD_VARS` set to ``threads`` in this process's environment while the block runs
    (processes started in it read them at start-up, before NumPy loads its BLAS), restored afterwards."""
    saved = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: str(threads) for k in THREAD_VARS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def process_pool(jobs, threads=None):
    """A ``ProcessPoolExecutor`` of ``jobs`` fresh (spawned) workers, each with ``threads`` BLAS threads
    (default :func:`blas_threads`), shut down on exit. The variables in :data:`THREAD_VARS` are set while
    the pool lives (it spawns its workers when tasks arrive) and restored afterwards."""
    with _thread_env(threads or blas_threads(jobs)):
        pool = cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
        try:
            yield pool
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


DIST_EXTRA = "pip install 'minisgd[dist]'"


def _import_distributed():
    try:
        import distributed
    except ImportError as exc:
        raise ExtraNotInstalledError(f"running a sweep on Dask needs dask.distributed, which is not installed "
                                     f"({exc}); install the extra with `{DIST_EXTRA}`") from exc
    return distributed


def _local_workers(address):
    """N for ``"local:N"``, ``None`` for the address of a running scheduler."""
    if not address.startswith("local:"):
        return None
    count = address[len("local:"):]
    if not count.isdigit() or int(count) < 1:
        raise ClusterError(f"--scheduler local:N takes a number of workers N >= 1, got {address!r}")
    return int(count)


@contextmanager
def dask_client(address, timeout=5.0, threads=None):
    """A ``distributed.Client`` for a sweep, closed on exit (with the cluster it started).

    address: ``"tcp://HOST:PORT"`` (any address Dask takes) of a running scheduler, or ``"local:N"`` for a
    ``LocalCluster`` of N worker processes on this machine, one task at a time each, with ``threads`` BLAS threads
    (default :func:`blas_threads`). The workers of a running scheduler are as they were started (see the README).

    Raises :class:`~minisgd.errors.ExtraNotInstalledError` without Dask, and :class:`~minisgd.errors.ClusterError`
    when no scheduler answers within ``timeout`` seconds or the workers cannot import this version of minisgd.
    """
    distributed = _import_distributed()
    workers = _local_workers(address)
    cluster = None
    try:
        if workers is not None:
            # Each nanny reads the BLAS variables from this environment when it is made (its "pre-spawn" variables,
            # set before a worker process starts, or Dask sets 1), and env sets NUMBA_NUM_THREADS in the worker
            # before Numba loads; both hold for the workers a nanny restarts. Dask's pre-spawn
            # MALLOC_TRIM_THRESHOLD_ is dropped: it turns off glibc's dynamic mmap threshold, so every large NumPy
            # temporary is mapped and zeroed afresh (batch-sweep's points ran 2.5x slower, most of it system time).
            import dask  # installed with distributed
            threads = threads or blas_threads(workers)
            trim = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
            with _thread_env(threads), dask.config.set({trim: None}):
                cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                   env={k: str(threads) for k in THREAD_VARS})
        try:
            client = distributed.Client(cluster or address, timeout=timeout)
        except Exception as exc:  # noqa: BLE001 (OSError on a timeout; anything else when a non-Dask server answers)
            raise ClusterError(
                f"no Dask scheduler answered at {address} within {timeout:g} s ({type(exc).__name__}: {exc}). "
                "Check that `dask scheduler` runs there, that the address is its tcp://HOST:PORT (port 8786 by "
                "default) and that this machine can reach it; or use --scheduler local:N for workers on this "
                "machine") from exc
        try:
            _check_workers(client)
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def _check_workers(client):
    """Every connected worker has this version of minisgd (else each point would fail on unpickling its task)."""
    from importlib.metadata import version  # stdlib: sent by name, callable on any worker

    from ._version import __version__ as here
    found = client.run(version, "minisgd", on_error="return")
    wrong = {w: v for w, v in found.items() if v != here}
    if wrong:
        listed = "; ".join(f"{w}: {v if isinstance(v, str) else type(v).__name__ + ': ' + str(v)}"
                           for w, v in sorted(wrong.items()))
        raise ClusterError(f"the Dask workers must run minisgd {here}, as this client does; found {listed}. "
                           f"Install it on every worker ({DIST_EXTRA}, from the same checkout or wheel)")


def _first_done(futures, poll=0.05):
    """The finished ones among ``futures``, waiting until there is one: without polling for ``concurrent.futures``
    and Dask futures, by polling ``done()`` every ``poll`` seconds for any other kind."""
    if all(isinstance(f, cf.Future) for f in futures):
        return cf.wait(futures, return_when=cf.FIRST_COMPLETED).done
    distributed = sys.modules.get("distributed")  # Dask futures exist only once it is imported: no import here
    if distributed is not None and all(isinstance(f, distributed.Future) for f in futures):
        return distributed.wait(futures, return_when="FIRST_COMPLETED").done
    while not (done := [f for f in futures if f.done()]):
        time.sleep(poll)
    return done


def _completed(pending):
    """The futures of ``pending`` (a dict future -> key) that have finished, waiting until there is one; each is
    removed from ``pending`` as it is yielded."""
    for future in _first_done(list(pending)):
        yield future, pending.pop(future)


# ---- the run folder ----------------------------------------------------------------------------------------

@dataclass
class SweepReport:
    """What a sweep did: the folder, the config (as stored), the points finished (``records``: dicts with
    ``key``, ``point``, ``result``, ``seconds``), those that failed (``failures``: ``key``, ``point``, ``error``,
    ``traceback``), how many were computed now and how many were found done, and the summary text."""

    out: Path
    scenario: str
    config: dict
    total: int
    records: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    computed: int = 0
    skipped: int = 0
    summary: str = ""
    figures: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.failures and len(self.records) == self.total


def _points_dir(out):
    return Path(out) / "points"


def write_point(out, key, point, result, seconds):
    """Store one finished point in ``out/points`` (NPZ, then the JSON that marks it complete); clears a failure."""
    folder = _points_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    tree, arrays = pack(result)
    atomic_write_bytes(folder / f"{key}.npz", _npz_bytes(arrays))
    atomic_write_bytes(folder / f"{key}.json", _json_bytes(
        {"format": FORMAT, "key": key, "point": to_json(point), "result": tree, "seconds": seconds}))
    (folder / f"{key}.failed.json").unlink(missing_ok=True)


def write_failure(out, key, point, error, trace, seconds=math.nan):
    folder = _points_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"key": key, "point": to_json(point), "error": error, "traceback": trace, "seconds": seconds}
    atomic_write_bytes(folder / f"{key}.failed.json", _json_bytes(record))
    return record


def read_point(out, key):
    """The stored record of point ``key`` (``None`` when it is not finished)."""
    path = _points_dir(out) / f"{key}.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    arrays = _load_npz(path.with_suffix(".npz"))
    record["result"] = unpack(record["result"], arrays)
    return record


def read_failures(out):
    return [json.loads(p.read_text()) for p in sorted(_points_dir(out).glob("*.failed.json"))]


def _config_dict(config):
    return to_json(asdict(config) if is_dataclass(config) else dict(config))


def _defaults(config):
    """``{field: default}`` of a config dataclass (``{}`` for a plain dict)."""
    if not is_dataclass(config):
        return {}
    return to_json({f.name: f.default for f in fields(config) if f.default is not MISSING})


def prepare(out, scenario_name, config):
    """Create ``out`` with its ``config.json``, or check that the stored one is this sweep's.

    A key the stored config lacks is accepted when its new value is the field's default (a field added to the
    scenario since the run, whose default reproduces the old behaviour); the stored config is then completed.
    Returns ``(config dict, added keys)``."""
    out = Path(out)
    now = {"format": FORMAT, "scenario": scenario_name, "config": _config_dict(config)}
    path = out / "config.json"
    if not path.is_file():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, _json_bytes(now))
        return now["config"], {}
    stored = json.loads(path.read_text())
    if stored.get("scenario") != scenario_name:
        raise ConfigMismatchError(f"{out} holds a run of scenario {stored.get('scenario')!r}, not "
                                  f"{scenario_name!r}; choose another --out")
    old, new, defaults = stored.get("config", {}), now["config"], _defaults(config)
    added = {k: new[k] for k in set(new) - set(old) if k in defaults and new[k] == defaults[k]}
    changed = [k for k in sorted(set(old) | set(new)) if k not in added and old.get(k) != new.get(k)]
    if changed:
        lines = "; ".join(f"{k}: stored {old.get(k)!r}, now {new.get(k)!r}" for k in changed)
        raise ConfigMismatchError(
            f"cannot resume {out}: {', '.join(changed)} changed ({lines}). Resuming needs the same config; "
            "run the stored config again, or choose another --out (or delete the folder) for a new one")
    if added:
        atomic_write_bytes(path, _json_bytes(now))
    return now["config"], added


def run_sweep(scenario, config, out, *, executor=None, window=None, progress=None, on_failure=None,
              figures=True):
    """Run every point of ``scenario.grid(config)`` not already finished in ``out``, then collect, summarize and
    draw. Returns a :class:`SweepReport`.

    executor: ``None`` runs the points here, one after another (:class:`SerialExecutor`); else anything with
    ``submit(fn, *args) -> future``. window: at most this many points in flight (default: 1 for the serial
    executor, all of them otherwise). progress: a tqdm bar of points done / total and failures (``None``: in a
    terminal only). on_failure: called with each failure record as it arrives (the CLI prints it).
    Stopping the sweep (``KeyboardInterrupt``) cancels the points not started; the finished ones stay on disk and
    the same call resumes.
    """
    out = Path(out)
    config_dict, added = prepare(out, scenario.name, config)
    points = scenario.grid(config)
    keys = point_keys(points)
    report = SweepReport(out, scenario.name, config_dict, len(points))
    todo = []
    for key, point in zip(keys, points):
        record = read_point(out, key)
        if record is None:
            todo.append((key, point))
            continue
        if {**{k: v for k, v in added.items() if k in point}, **record["point"]} != to_json(point):
            raise ConfigMismatchError(f"{out}/points/{key}.json holds point {record['point']}, not {to_json(point)}; "
                                      "the folder belongs to another grid: choose another --out")
        report.records.append(record)
    report.skipped = len(report.records)
    for stale in _points_dir(out).glob("*.failed.json"):  # failures of earlier attempts are retried now
        if stale.name[:-len(".failed.json")] in dict(todo):
            stale.unlink()

    executor = SerialExecutor() if executor is None else executor
    window = (1 if isinstance(executor, SerialExecutor) else len(todo)) if window is None else max(1, int(window))
    show = sys.stderr.isatty() if progress is None else bool(progress)
    bar = tqdm(total=len(points), initial=report.skipped, desc=scenario.name, unit="point", disable=not show,
               dynamic_ncols=True)
    bar.set_postfix(failed=0)
    queue, pending = list(todo), {}
    try:
        while queue or pending:
            while queue and len(pending) < window:
                key, point = queue.pop(0)
                pending[executor.submit(execute, scenario.run_point, point)] = (key, point)
            for future, (key, point) in _completed(pending):
                try:
                    outcome = future.result()
                except Exception as exc:  # the executor itself failed (a worker died, a pickling error, ...)
                    outcome = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                               "traceback": traceback.format_exc(), "seconds": math.nan}
                if outcome["ok"]:
                    write_point(out, key, point, outcome["result"], outcome["seconds"])
                    report.records.append(read_point(out, key))
                else:
                    failure = write_failure(out, key, point, outcome["error"], outcome["traceback"],
                                            outcome["seconds"])
                    report.failures.append(failure)
                    if on_failure is not None:
                        on_failure(failure)
                report.computed += 1
                bar.update(1)
                bar.set_postfix(failed=len(report.failures))
    except BaseException:
        for future in pending:
            future.cancel()
        raise
    finally:
        bar.close()
    order = {k: i for i, k in enumerate(keys)}
    report.records.sort(key=lambda r: order[r["key"]])
    finish(scenario, config, out, report, figures=figures)
    return report


def finish(scenario, config, out, report, figures=True):
    """Collect the finished points into ``results.json`` / ``results.npz``, write ``summary.md`` and the figures."""
    out = Path(out)
    records = report.records
    tables, text = {}, ""
    if records:
        try:
            tables, text = scenario.summarize(config, records)
        except Exception:  # noqa: BLE001 (a summary bug must not hide the results on disk)
            text = "The summary failed:\n\n```\n" + traceback.format_exc() + "```\n"
    trees, arrays = [], {}
    for r in records:
        tree, arrs = pack(r["result"])
        trees.append({"key": r["key"], "point": r["point"], "result": tree, "seconds": r["seconds"]})
        arrays.update({f"{r['key']}/{k}": v for k, v in arrs.items()})
    atomic_write_bytes(out / "results.npz", _npz_bytes(arrays))
    atomic_write_bytes(out / "results.json", _json_bytes(
        {"format": FORMAT, "scenario": scenario.name, "config": report.config, "total": report.total,
         "points": trees, "failures": report.failures, "tables": tables}))
    report.summary = _summary_markdown(scenario, report, text)
    atomic_write_bytes(out / "summary.md", report.summary.encode())
    report.figures = []
    if figures and records:
        from .plotting import png_bytes
        folder = out / "figures"
        folder.mkdir(exist_ok=True)
        try:
            drawn = scenario.figures(config, records)
        except Exception:  # noqa: BLE001 (the numbers are on disk; say what failed)
            drawn = {}
            report.summary += "\nDrawing the figures failed:\n\n```\n" + traceback.format_exc() + "```\n"
            atomic_write_bytes(out / "summary.md", report.summary.encode())
        for name, fig in drawn.items():
            path = folder / f"{name}.png"
            atomic_write_bytes(path, png_bytes(fig))
            report.figures.append(path)
    return report


def _summary_markdown(scenario, report, text):
    lines = [f"# {scenario.name}", "", scenario.description, ""]
    lines.append(f"Points finished: {len(report.records)} of {report.total}"
                 + (f", failed: {len(report.failures)}" if report.failures else "")
                 + f"; compute: {sum(r.get('seconds') or 0 for r in report.records) / 60:.1f} min over the points.")
    lines += ["", text.rstrip(), ""]
    if report.failures:
        lines += ["## Failed points", ""]
        for f in report.failures:
            lines += [f"- `{f['key']}`: {f['error']} (point {json.dumps(f['point'])}; traceback in "
                      f"`points/{f['key']}.failed.json`)"]
        lines.append("")
    lines += ["## Config", "", "```"] + [f"{k} = {json.dumps(v)}" for k, v in report.config.items()] + ["```", ""]
    return "\n".join(lines)


def load_sweep(out):
    """A finished (or partly finished) run folder, read back: ``(scenario name, config dict, records, failures)``
    with the records in file order."""
    out = Path(out)
    path = out / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{out} is not a sweep folder (no config.json); run `minisgd run NAME --out {out}`")
    stored = json.loads(path.read_text())
    records = [read_point(out, p.stem) for p in sorted(_points_dir(out).glob("*.json"))
               if not p.name.endswith(".failed.json")]
    return stored["scenario"], stored["config"], records, read_failures(out)
