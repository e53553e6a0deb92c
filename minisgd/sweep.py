r"""The sweep runner: a scenario's grid of points on any executor, and the run folder it keeps.

A scenario (:mod:`minisgd.experiments`) gives ``grid(config) -> [point, ...]`` and a pure, top-level
``run_point(point) -> result``. A *point* is a plain dict (config values and a ``seed``); a *result* is a dict
of numbers, strings, lists and NumPy arrays, nested dicts allowed. Each point is one task: config and seed in,
numbers out, no file written. The client alone (this module, in the calling process) writes the run folder::

    OUT/config.json                {"scenario": name, "config": {...}}: checked when the sweep is resumed
    OUT/points/KEY.json            one finished point: key, point, result (arrays by reference), seconds, and the
                                   SHA-256 of its NPZ and of its own content (sealed: minisgd.training.storage)
    OUT/points/KEY.npz             its arrays
    OUT/points/KEY.failed.json     a failed point: the point, the error and its traceback
    OUT/points/damaged/            points found damaged, moved aside (KEY.json, KEY.npz, KEY.reason.json)
    OUT/results.json, results.npz  every finished point, collected (arrays under "KEY/path/in/result")
    OUT/summary.md                 key numbers and tables (the scenario's), failed and damaged points, compute spent
    OUT/figures/NAME.png           the scenario's figures
    OUT/.lock                      held by the sweep writing the folder

Each point is written as it arrives, NPZ first and JSON last, each to a temporary file renamed into place
(``minisgd.training.storage.atomic_write_bytes``), so the JSON's presence means the point is complete. Running the
same sweep again skips every point whose JSON is there and checks out (its seal, its key, its NPZ's SHA-256, its
arrays), moves a damaged, swapped or half-written one aside to ``points/damaged/`` and recomputes it, retries failed
ones, and re-collects, re-summarizes and redraws from the stored points; the stored config must equal the new one
(:class:`ConfigMismatchError` names the keys that differ) unless no point of the folder ever finished.

What can go wrong, and what happens:

* **a second sweep into the folder**: refused at once with :class:`~minisgd.errors.FolderInUseError`, which names the
  PID holding the folder's lock (a ``flock``: the kernel releases it however the holder ends, so it is never stale);
  the holder removes the temporary files that killed writers left;
* **stopped** (SIGINT, SIGTERM, SIGHUP to this process): the points finished by then are written (a signal during a
  write waits for the write), the others are cancelled, the pool's workers are ended, and :class:`SweepStopped` (a
  ``KeyboardInterrupt``) is raised; killed (SIGKILL): every point written before stays, and the pool's workers die
  with this process (:func:`process_pool`);
* **disk full or read-only**: no new point starts; the points computed but not written are kept in memory, written
  once more after the running ones finish, and what still cannot be written is one
  :class:`~minisgd.errors.StorageError` line naming the folder and the bytes needed.

The executor is anything with ``submit(fn, *args) -> future`` whose futures have ``done()`` and ``result()``:
:class:`SerialExecutor` (in this process, one point at a time), :func:`process_pool` (the standard library's
``ProcessPoolExecutor``), or a Dask ``distributed.Client`` (:func:`dask_client`: a running scheduler, over TLS with
certificates, or a ``LocalCluster`` on 127.0.0.1). A point that raises is recorded with its traceback and the sweep
goes on; the report and ``summary.md`` list it. A worker lost mid-sweep costs nothing finished: the pool reports its
points as failed (run the sweep again), Dask reruns them on the other workers.

A point's result does not depend on where it ran: its seeds come from the point, never from the worker, so a sweep
on Dask workers stores the same bits as the same sweep run serially with the same number of BLAS threads per process
(``tests/test_dask.py`` checks it; with another count OpenBLAS splits its sums differently, which moves results by
rounding). :func:`process_pool` and ``local:N`` give each worker :func:`blas_threads`.
"""
import hashlib
import io
import json
import math
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
import traceback
from concurrent import futures as cf
from contextlib import contextmanager
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .errors import ClusterError, ConfigMismatchError, CorruptFileError, ExtraNotInstalledError, StorageError
from .training.storage import (MAX_NPZ_BYTES, atomic_write_bytes, check_seal, folder_lock, read_bytes, read_json,
                               read_npz, remove_stale_temporaries, seal)

FORMAT = "minisgd-sweep"
POINT_VERSION = 2  # points with the NPZ's SHA-256 and a seal; version 1 had neither and is recomputed
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


def _watch_parent(parent):
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _die_with(parent):
    """Initializer of :func:`process_pool`'s workers: end this worker when ``parent`` (the sweep's process) ends,
    however it ends, instead of living on blocked on a result nobody reads. Linux: the kernel's parent-death signal
    (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); elsewhere a thread that watches the parent's PID every second."""
    try:
        import ctypes
        if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL) != 0:  # 1 = PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):  # no prctl: not Linux
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the parent ended before the signal was armed
        os._exit(1)


def _end_workers(pool):
    """Terminate a ``ProcessPoolExecutor``'s workers now, running points and all."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14
    if terminate is not None:
        terminate()
        return
    for process in list((pool._processes or {}).values()):  # before 3.14: the pool's own table of its workers
        process.terminate()


@contextmanager
def process_pool(jobs, threads=None):
    """A ``ProcessPoolExecutor`` of ``jobs`` fresh (spawned) workers, each with ``threads`` BLAS threads
    (default :func:`blas_threads`), shut down on exit. The variables in :data:`THREAD_VARS` are set while
    the pool lives (it spawns its workers when tasks arrive) and restored afterwards.

    The workers die with this process, however it ends (:func:`_die_with`), and a block left by an exception (a
    stopped sweep) ends them at once instead of waiting for the points they run.
    """
    with _thread_env(threads or blas_threads(jobs)):
        pool = cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_die_with,
                                      initargs=(os.getpid(),))
        try:
            yield pool
        except BaseException:
            _end_workers(pool)
            raise
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


def tls_security(ca=None, cert=None, key=None):
    """A ``distributed.Security`` for a ``tls://`` scheduler: the CA certificate ``ca`` that signed the cluster's
    certificates, this client's certificate ``cert`` and its private key ``key`` (PEM files; ``key`` may be inside
    ``cert``), each falling back to Dask's configuration (``distributed.comm.tls.ca-file``, ``.client.cert``,
    ``.client.key``). Raises :class:`~minisgd.errors.ClusterError` when no CA or no client certificate is found."""
    distributed = _import_distributed()
    security = distributed.Security(require_encryption=True, tls_ca_file=ca, tls_client_cert=cert,
                                    tls_client_key=key)
    missing = [what for what, value in (("the cluster's CA certificate (--tls-ca)", security.tls_ca_file),
                                        ("this client's certificate (--tls-cert)", security.tls_client_cert))
               if not value]
    if missing:
        raise ClusterError(f"a tls:// scheduler needs {' and '.join(missing)}: pass the PEM files, or set "
                           "distributed.comm.tls.ca-file, .client.cert and .client.key in Dask's configuration")
    return security


@contextmanager
def dask_client(address, timeout=5.0, threads=None, security=None):
    """A ``distributed.Client`` for a sweep, closed on exit (with the cluster it started).

    address: ``"tls://HOST:PORT"`` or ``"tcp://HOST:PORT"`` (any address Dask takes) of a running scheduler, or
    ``"local:N"`` for a ``LocalCluster`` of N worker processes on this machine, one task at a time each, with
    ``threads`` BLAS threads (default :func:`blas_threads`), every listener (scheduler, nannies, workers, dashboard)
    on 127.0.0.1. The workers of a running scheduler are as they were started (see the README). Whoever reaches a
    ``tcp://`` scheduler can run code on its workers: use one on a trusted network only, ``tls://`` elsewhere.
    security: a ``distributed.Security`` for ``tls://`` (default: :func:`tls_security` from Dask's configuration).

    Raises :class:`~minisgd.errors.ExtraNotInstalledError` without Dask, and :class:`~minisgd.errors.ClusterError`
    when no scheduler answers (or accepts this client's certificate) within ``timeout`` seconds, or the workers
    cannot import this version of minisgd.
    """
    distributed = _import_distributed()
    workers = _local_workers(address)
    tls = address.startswith("tls://")
    if security is not None and not tls:
        raise ClusterError(f"TLS certificates are for a tls:// scheduler, not {address!r}")
    if tls and security is None:
        security = tls_security()
    cluster = None
    try:
        if workers is not None:
            # Each nanny reads the BLAS variables from this environment when it is made (its "pre-spawn" variables,
            # set before a worker process starts, or Dask sets 1), and env sets NUMBA_NUM_THREADS in the worker
            # before Numba loads; both hold for the workers a nanny restarts. Dask's pre-spawn
            # MALLOC_TRIM_THRESHOLD_ is dropped: it turns off glibc's dynamic mmap threshold, so every large NumPy
            # temporary is mapped and zeroed afresh (batch-sweep's points ran 2.5x slower, most of it system time).
            # The dashboard's default address is every interface (":8787"): here it is loopback, as the rest.
            import dask  # installed with distributed
            threads = threads or blas_threads(workers)
            trim = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
            with _thread_env(threads), dask.config.set({trim: None}):
                cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                                   host="127.0.0.1", dashboard_address="127.0.0.1:8787",
                                                   env={k: str(threads) for k in THREAD_VARS})
        try:
            client = distributed.Client(cluster or address, timeout=timeout, security=security)
        except Exception as exc:  # noqa: BLE001 (OSError on a timeout; anything else when a non-Dask server answers)
            check = ("that the certificates (--tls-ca, --tls-cert, --tls-key) are signed by the cluster's CA, "
                     if tls else "that the address is its tcp://HOST:PORT (port 8786 by default), ")
            raise ClusterError(
                f"no Dask scheduler answered{' and accepted this client' if tls else ''} at {address} within "
                f"{timeout:g} s ({type(exc).__name__}: {exc}). Check that `dask scheduler` runs there, {check}"
                "and that this machine can reach it; or use --scheduler local:N for workers on this machine") from exc
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


# ---- the run folder ----------------------------------------------------------------------------------------

@dataclass
class SweepReport:
    """What a sweep did: the folder, the config (as stored), the points finished (``records``: dicts with
    ``key``, ``point``, ``result``, ``seconds``), those that failed (``failures``: ``key``, ``point``, ``error``,
    ``traceback``), those found damaged and moved aside to be recomputed (``damaged``: ``key``, ``reason``), how many
    were computed now and how many were found done, and the summary text."""

    out: Path
    scenario: str
    config: dict
    total: int
    records: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    damaged: list = field(default_factory=list)
    computed: int = 0
    skipped: int = 0
    summary: str = ""
    figures: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.failures and len(self.records) == self.total


class SweepStopped(KeyboardInterrupt):
    """A sweep stopped by SIGINT, SIGTERM or SIGHUP, after writing every point finished by then. ``signum`` is the
    signal; a ``KeyboardInterrupt``, so code that handles Ctrl-C handles it."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _StopSignals:
    """While the ``with`` block runs (in the main thread; elsewhere signals cannot be handled): SIGINT, SIGTERM and
    SIGHUP raise :class:`SweepStopped`, except inside :meth:`held`, where the signal waits for the block's end, so no
    point is ever half-written because of a stop. The handlers found are restored on exit."""

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP")

    def __enter__(self):
        self.signum, self.holding, self.saved = None, 0, {}
        if threading.current_thread() is threading.main_thread():
            for sig in (getattr(signal, n) for n in self.NAMES if hasattr(signal, n)):
                self.saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        self.signum = self.signum or signum
        if not self.holding:
            raise SweepStopped(self.signum)

    @contextmanager
    def held(self):
        self.holding += 1
        try:
            yield
        finally:
            self.holding -= 1
        if not self.holding and self.signum is not None:
            raise SweepStopped(self.signum)


def _points_dir(out):
    return Path(out) / "points"


def _point_files(key, point, result, seconds):
    """The bytes of a point's NPZ and of its sealed JSON (which holds the NPZ's SHA-256)."""
    tree, arrays = pack(result)
    npz = _npz_bytes(arrays)
    record = {"format": FORMAT, "version": POINT_VERSION, "key": key, "point": point, "result": tree,
              "seconds": seconds, "npz_sha256": hashlib.sha256(npz).hexdigest()}
    return npz, _json_bytes(seal(to_json(record)))


def _write_point_files(out, key, npz, record):
    folder = _points_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / f"{key}.npz", npz)
    atomic_write_bytes(folder / f"{key}.json", record)
    (folder / f"{key}.failed.json").unlink(missing_ok=True)


def write_point(out, key, point, result, seconds):
    """Store one finished point in ``out/points`` (NPZ, then the JSON that marks it complete); clears a failure."""
    _write_point_files(out, key, *_point_files(key, point, result, seconds))


def write_failure(out, key, point, error, trace, seconds=math.nan):
    folder = _points_dir(out)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"key": key, "point": to_json(point), "error": error, "traceback": trace, "seconds": seconds}
    atomic_write_bytes(folder / f"{key}.failed.json", _json_bytes(record))
    return record


def read_point(out, key):
    """The stored record of point ``key`` (``None`` when it is not finished), checked: its seal, its key, its NPZ's
    SHA-256 and its arrays. Raises :class:`~minisgd.errors.CorruptFileError` naming the file otherwise."""
    path = _points_dir(out) / f"{key}.json"
    if not path.exists() and not path.is_symlink():
        return None
    record = read_json(path, what="point file")
    check_seal(record, path)
    if record.get("format") != FORMAT or record.get("key") != key:
        raise CorruptFileError(f"{path}: holds point {record.get('key')!r}, not {key!r} (another point's file, "
                               "copied or renamed)")
    if not isinstance(record.get("point"), dict) or not isinstance(record.get("npz_sha256"), str):
        raise CorruptFileError(f"{path}: not a point record (no point or no npz_sha256)")
    npz = path.with_suffix(".npz")
    data = read_bytes(npz, MAX_NPZ_BYTES, "point's NPZ")
    if hashlib.sha256(data).hexdigest() != record["npz_sha256"]:
        raise CorruptFileError(f"{npz}: does not match the SHA-256 in {path.name} (truncated, modified, or "
                               "another point's arrays)")
    arrays = read_npz(data, npz)
    try:
        result = unpack(record["result"], arrays)
    except KeyError as exc:
        raise CorruptFileError(f"{path}: refers to array {exc}, which {npz.name} lacks") from None
    return {"format": FORMAT, "key": key, "point": record["point"], "result": result,
            "seconds": record.get("seconds")}


def _move_aside(out, key, reason):
    """Move point ``key``'s files to ``points/damaged/`` with a ``KEY.reason.json`` saying why; returns the note."""
    folder = _points_dir(out) / "damaged"
    folder.mkdir(exist_ok=True)
    for suffix in (".json", ".npz"):
        path = _points_dir(out) / f"{key}{suffix}"
        if path.exists() or path.is_symlink():
            os.replace(path, folder / path.name)
    note = {"key": key, "reason": reason, "moved": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_bytes(folder / f"{key}.reason.json", _json_bytes(note))
    return note


def _config_dict(config):
    return to_json(asdict(config) if is_dataclass(config) else dict(config))


def _defaults(config):
    """``{field: default}`` of a config dataclass (``{}`` for a plain dict)."""
    if not is_dataclass(config):
        return {}
    return to_json({f.name: f.default for f in fields(config) if f.default is not MISSING})


def _finished_files(out):
    return [p for p in sorted(_points_dir(out).glob("*.json")) if not p.name.endswith(".failed.json")]


def _read_config(out):
    path = Path(out) / "config.json"
    stored = read_json(path, what="run folder's config")
    if not isinstance(stored.get("config"), dict) or not isinstance(stored.get("scenario"), str):
        raise CorruptFileError(f"{path}: not a run folder's config (no scenario name or config object)")
    return stored


def prepare(out, scenario_name, config):
    """Create ``out`` with its ``config.json``, or check that the stored one is this sweep's.

    A key the stored config lacks is accepted when its new value is the field's default (a field added to the
    scenario since the run, whose default reproduces the old behaviour); the stored config is then completed. A
    folder where no point ever finished (every one failed, or none ran) is not bound to its config: a new one
    replaces it. Returns ``(config dict, added keys)``."""
    out = Path(out)
    now = {"format": FORMAT, "scenario": scenario_name, "config": _config_dict(config)}
    path = out / "config.json"
    if not path.exists() or not _finished_files(out):
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, _json_bytes(now))
        for stale in _points_dir(out).glob("*.failed.json"):  # failures of a config that may be another one
            stale.unlink()
        return now["config"], {}
    stored = _read_config(out)
    if stored["scenario"] != scenario_name:
        raise ConfigMismatchError(f"{out} holds a run of scenario {stored['scenario']!r}, not "
                                  f"{scenario_name!r}; choose another --out")
    old, new, defaults = stored["config"], now["config"], _defaults(config)
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


def _stored_points(out, keys, points, added, report):
    """Fill ``report`` with the points already stored in ``out``; move the damaged ones aside. Returns the
    ``(key, point)`` pairs still to compute."""
    todo = []
    for key, point in zip(keys, points):
        try:
            record = read_point(out, key)
        except CorruptFileError as exc:
            report.damaged.append(_move_aside(out, key, str(exc)))
            record = None
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
    return todo


def _cancel_waiting(pending):
    """Cancel and forget the points of ``pending`` not yet running; returns their ``(key, point)`` pairs, in the
    order they were submitted. A running ``concurrent.futures`` point cannot be cancelled and stays; other executors'
    futures (Dask's) do not tell, so every unfinished one is cancelled."""
    cancelled = []
    for future in [f for f in pending if not f.done()]:
        if future.cancel() or not isinstance(future, cf.Future):
            cancelled.append(pending.pop(future))
    return cancelled


def run_sweep(scenario, config, out, *, executor=None, window=None, progress=None, on_failure=None,
              figures=True):
    """Run every point of ``scenario.grid(config)`` not already finished in ``out``, then collect, summarize and
    draw. Returns a :class:`SweepReport`.

    executor: ``None`` runs the points here, one after another (:class:`SerialExecutor`); else anything with
    ``submit(fn, *args) -> future``. window: at most this many points in flight (default: 1 for the serial
    executor, all of them otherwise). progress: a tqdm bar of points done / total and failures (``None``: in a
    terminal only). on_failure: called with each failure record as it arrives (the CLI prints it).

    Holds ``out``'s lock throughout (:class:`~minisgd.errors.FolderInUseError` if another process holds it).
    Stopping the sweep (Ctrl-C, SIGTERM, SIGHUP: :class:`SweepStopped`) writes the points finished by then and
    cancels the rest; the same call resumes. A disk full or read-only folder ends it with
    :class:`~minisgd.errors.StorageError` once the points already running are done, each computed point written
    once more first.
    """
    out = Path(out)
    with folder_lock(out):
        remove_stale_temporaries(out, _points_dir(out), _points_dir(out) / "damaged", out / "figures")
        config_dict, added = prepare(out, scenario.name, config)
        points = scenario.grid(config)
        keys = point_keys(points)
        report = SweepReport(out, scenario.name, config_dict, len(points))
        todo = _stored_points(out, keys, points, added, report)
        executor = SerialExecutor() if executor is None else executor
        window = (1 if isinstance(executor, SerialExecutor) else len(todo)) if window is None else max(1, int(window))
        show = sys.stderr.isatty() if progress is None else bool(progress)
        bar = tqdm(total=len(points), initial=report.skipped, desc=scenario.name, unit="point", disable=not show,
                   dynamic_ncols=True)
        bar.set_postfix(failed=0)
        try:
            _compute(scenario, out, todo, executor, window, report, bar, on_failure)
        finally:
            bar.close()
        order = {k: i for i, k in enumerate(keys)}
        report.records.sort(key=lambda r: order[r["key"]])
        finish(scenario, config, out, report, figures=figures)
    return report


def _compute(scenario, out, todo, executor, window, report, bar, on_failure):
    """Run the ``todo`` points on ``executor`` and store each as it arrives (see :func:`run_sweep`)."""
    queue, pending, unstored = list(todo), {}, []  # unstored: (key, point files, error) the disk refused

    def store(future, key, point):
        try:
            outcome = future.result()
        except KeyboardInterrupt:  # Ctrl-C reached the point's worker too: neither a result nor a failure
            return
        except Exception as exc:  # the executor itself failed (a worker died, a pickling error, ...)
            outcome = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                       "seconds": math.nan}
        report.computed += 1
        bar.update(1)
        if outcome["ok"]:
            files = _point_files(key, point, outcome["result"], outcome["seconds"])
            try:
                _write_point_files(out, key, *files)
                report.records.append(read_point(out, key))
            except StorageError as exc:
                unstored.append((key, files, exc))
                queue[:0] = _cancel_waiting(pending)  # they start again if the disk has room once more
        else:
            failure = {"key": key, "point": to_json(point), "error": outcome["error"],
                       "traceback": outcome["traceback"], "seconds": outcome["seconds"]}
            try:
                failure = write_failure(out, key, point, outcome["error"], outcome["traceback"], outcome["seconds"])
            except StorageError:
                pass  # a failure is retried on the next run anyway; the report still lists it
            report.failures.append(failure)
            if on_failure is not None:
                on_failure(failure)
        bar.set_postfix(failed=len(report.failures))

    with _StopSignals() as stop:
        try:
            while queue or pending:
                while queue and not unstored and len(pending) < window:
                    key, point = queue.pop(0)
                    pending[executor.submit(execute, scenario.run_point, point)] = (key, point)
                for future in _first_done(list(pending)) if pending else ():
                    with stop.held():  # taken from pending and stored with no stop in between
                        store(future, *pending.pop(future))
                if unstored and not pending:  # the disk refused a point and the running ones are in
                    with stop.held():
                        _store_again(out, unstored, report, len(queue))  # raises unless there is room again
        except BaseException:
            stop.holding += 1  # from here on a further signal waits: the finished points are written first
            for future in pending:
                future.cancel()
            for future, (key, point) in list(pending.items()):
                if future.done() and not future.cancelled():
                    store(future, key, point)
            raise


def _store_again(out, unstored, report, not_started):
    """Write once more the points the disk refused (emptying ``unstored``); raise :class:`StorageError` for those
    it still refuses."""
    left = []
    for key, files, _ in unstored:
        try:
            _write_point_files(out, key, *files)
            report.records.append(read_point(out, key))
        except StorageError as again:
            left.append((key, files, again))
    unstored.clear()
    if left:
        needed = sum(len(npz) + len(record) for _, (npz, record), _ in left)
        keys = ", ".join(key for key, _, _ in left)
        first = left[0][2]
        raise StorageError(
            f"cannot store {len(left)} computed point(s) in {_points_dir(out)} ({keys}; {needed:,} bytes needed): "
            f"{os.strerror(first.errno)}. {len(report.records)} of {report.total} points are stored, {not_started} "
            "not started. Free space (or make the folder writable) and run the same command again: only the missing "
            "points run", errno=first.errno, path=_points_dir(out), needed=needed)


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
    notes = damaged_notes(report.out)
    if notes:
        lines += ["## Damaged points", "", "Found damaged, moved to `points/damaged/` and computed again:", ""]
        lines += [f"- `{n['key']}` ({n['moved']}): {n['reason']}" for n in notes] + [""]
    lines += ["## Config", "", "```"] + [f"{k} = {json.dumps(v)}" for k, v in report.config.items()] + ["```", ""]
    return "\n".join(lines)


def damaged_notes(out):
    """The notes of the points moved aside to ``out/points/damaged/``: dicts with ``key``, ``reason``, ``moved``."""
    notes = []
    for path in sorted((_points_dir(out) / "damaged").glob("*.reason.json")):
        try:
            note = read_json(path, what="note")
            notes.append({"key": str(note["key"]), "reason": str(note["reason"]), "moved": str(note["moved"])})
        except (CorruptFileError, KeyError) as exc:
            notes.append({"key": path.name[:-len(".reason.json")], "reason": f"(its note is unreadable: {exc})",
                          "moved": "?"})
    return notes


@dataclass
class RunContents:
    """A run folder as :func:`read_run` finds it: ``records`` and ``failures`` as in :class:`SweepReport`, and
    ``damaged``: the points that do not check out now (``key``, ``reason``; the next run moves them aside)."""

    scenario: str
    config: dict
    records: list
    failures: list
    damaged: list


def read_run(out):
    """Read every point of run folder ``out``, checking each, changing nothing. Raises ``FileNotFoundError`` when
    ``out`` is no run folder and :class:`~minisgd.errors.CorruptFileError` when its ``config.json`` is damaged."""
    out = Path(out)
    if not (out / "config.json").exists():
        raise FileNotFoundError(f"{out} is not a sweep folder (no config.json); run `minisgd run NAME --out {out}`")
    stored = _read_config(out)
    records, failures, damaged = [], [], []
    for path in sorted(_points_dir(out).glob("*.json")):
        failed = path.name.endswith(".failed.json")
        key = path.name[:-len(".failed.json")] if failed else path.stem
        try:
            (failures if failed else records).append(read_json(path, what="failure record") if failed
                                                     else read_point(out, key))
        except CorruptFileError as exc:
            damaged.append({"key": key, "reason": str(exc)})
    return RunContents(stored["scenario"], stored["config"], records, failures, damaged)


def load_sweep(out):
    """A finished (or partly finished) run folder, read back: ``(scenario name, config dict, records, failures)``
    with the records in file order. Raises :class:`~minisgd.errors.CorruptFileError` naming the first damaged
    point (running the sweep again moves it aside and recomputes it)."""
    run = read_run(out)
    if run.damaged:
        raise CorruptFileError(f"{run.damaged[0]['reason']}; run the same `minisgd run` command again to move the "
                               f"damaged point(s) aside and compute them again")
    return run.scenario, run.config, run.records, run.failures
