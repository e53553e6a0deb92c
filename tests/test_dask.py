"""Sweeps on a real Dask cluster on 127.0.0.1: a `dask scheduler` and two `dask worker` processes, started as a user
starts them, and `minisgd run ... --scheduler`. The stored results equal a serial run's to the bit; a worker killed
mid-sweep loses and duplicates nothing; a client killed mid-sweep resumes with only the missing points; a scheduler
that does not answer is a clear error within seconds; `local:N` starts its own cluster; a failing point comes back with
its traceback.

The reference is the same sweep run serially in a fresh process with one BLAS thread, as the workers have: results are
bit-identical for the same BLAS thread count (OpenBLAS splits its sums differently with more threads, which moves the
eigenvalues by ~1e-15). Select these tests with ``pytest -m dask``; they need the ``dist`` extra."""
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

try:
    import distributed
except ImportError as exc:  # CI installs the extra: a missing Dask must fail loudly there, not skip
    raise ImportError("tests/test_dask.py needs Dask: pip install -e '.[dev,dist]' (the README's test command)") \
        from exc

from minisgd import sweep
from minisgd import experiments
from minisgd.cli import main
from test_sweep import TOY, ToyConfig

pytestmark = pytest.mark.dask

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("MINISGD_DATA") or REPO.parent / "shared" / "data")
needs_mnist = pytest.mark.skipif(not (DATA_ROOT / "mnist").is_dir(),
                                 reason=f"MNIST not found in {DATA_ROOT / 'mnist'} (set MINISGD_DATA)")
# a spectrum sweep of 6 points of ~0.4 s each once a worker is warm (the first point of a process takes ~3 s)
SWEEP = ["run", "spectrum", "--quick", "--seeds", "6", "--set", "classes=3", "n_train=600", "hidden=8", "epochs=20"]
POINTS = 6


@dataclass(frozen=True)
class ToyCliConfig(ToyConfig):
    """The toy scenario's config with the field the CLI expects of every scenario."""

    device: str = "cpu"  # the CLI's --device


def _env(threads):
    """The environment of every process these tests start: MNIST offline, ``threads`` BLAS threads, and tests/ on
    the path (the toy scenario's functions are imported by reference on the workers)."""
    return {**os.environ, "MINISGD_DATA": str(DATA_ROOT), "MINISGD_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(REPO / "tests"), os.environ.get("PYTHONPATH")) if p),
            **{k: str(threads) for k in sweep.THREAD_VARS}}


class Cluster:
    """A `dask scheduler` and `dask worker` processes on 127.0.0.1, one thread and one BLAS thread per worker, no
    nanny (a worker killed stays dead, as when its machine is lost)."""

    def __init__(self, folder, tls=None):
        """tls: ``{"ca": path, "cert": path, "key": path}`` for a cluster that speaks TLS only, with these files."""
        self.folder, self.workers = folder, []
        self.tls_args = [] if tls is None else ["--tls-ca-file", tls["ca"], "--tls-cert", tls["cert"],
                                                "--tls-key", tls["key"]]
        self.security = None if tls is None else distributed.Security(
            tls_ca_file=tls["ca"], tls_client_cert=tls["cert"], tls_client_key=tls["key"], require_encryption=True)
        address_file = folder / "scheduler.json"
        self.scheduler = self._spawn("scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
                                     "127.0.0.1:0", "--scheduler-file", str(address_file),
                                     *(["--protocol", "tls", *self.tls_args] if tls else []))
        deadline = time.monotonic() + 30
        while not address_file.is_file() or not address_file.read_text().strip():
            assert time.monotonic() < deadline and self.scheduler.poll() is None, self._logs()
            time.sleep(0.05)
        self.address = json.loads(address_file.read_text())["address"]

    def _spawn(self, *args):
        log = open(self.folder / f"{args[0]}-{len(self.workers)}.log", "wb")
        return subprocess.Popen([sys.executable, "-m", "dask", *args], stdout=log, stderr=subprocess.STDOUT,
                                env=_env(threads=1), cwd=self.folder)

    def _logs(self):
        return "\n".join(p.read_text(errors="replace")[-2000:] for p in sorted(self.folder.glob("*.log")))

    def ensure_workers(self, count):
        """Start workers until ``count`` are alive, and wait until the scheduler has them all."""
        self.workers = [w for w in self.workers if w.poll() is None]
        while len(self.workers) < count:
            self.workers.append(self._spawn("worker", self.address, "--nthreads", "1", "--no-nanny", "--host",
                                            "127.0.0.1", "--no-dashboard", *self.tls_args))
        with distributed.Client(self.address, timeout=10, security=self.security) as client:
            deadline = time.monotonic() + 60
            while len(client.scheduler_info()["workers"]) != count:
                assert time.monotonic() < deadline, self._logs()
                time.sleep(0.05)

    def close(self):
        for proc in [*self.workers, self.scheduler]:  # nothing to save: no graceful shutdown
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.ensure_workers(2)
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory):
    """``threads -> run folder`` of :data:`SWEEP` run serially (``--jobs 1``) in a fresh process with that many
    BLAS threads; each computed once."""
    runs = {}

    def get(threads):
        if threads not in runs:
            out = tmp_path_factory.mktemp(f"serial{threads}")
            proc = subprocess.run([sys.executable, "-m", "minisgd", *SWEEP, "--out", str(out)], capture_output=True,
                                  text=True, env=_env(threads), timeout=120)
            assert proc.returncode == 0, proc.stderr
            runs[threads] = out
        return runs[threads]

    return get


@pytest.fixture
def offline_mnist(monkeypatch):
    monkeypatch.setenv("MINISGD_DATA", str(DATA_ROOT))
    monkeypatch.setenv("MINISGD_OFFLINE", "1")


def assert_same_results(run, reference):
    """Every point of ``run`` equals ``reference``'s to the bit: its config, the numbers of results.json (floats
    read back from their shortest repr, so == is bit equality) and the bytes of every array of results.npz."""
    a, b = (json.loads((Path(r) / "results.json").read_text()) for r in (run, reference))
    assert [p["key"] for p in a["points"]] == [p["key"] for p in b["points"]] and len(a["points"]) == POINTS
    for p, q in zip(a["points"], b["points"]):
        assert p["point"] == q["point"] and p["result"] == q["result"], p["key"]
    with np.load(Path(run) / "results.npz") as x, np.load(Path(reference) / "results.npz") as y:
        assert sorted(x.files) == sorted(y.files) and x.files
        for name in x.files:
            assert x[name].dtype == y[name].dtype and x[name].shape == y[name].shape, name
            assert x[name].tobytes() == y[name].tobytes(), name


def point_files(out):
    """The point files of a run folder, temporary files of an interrupted write left out."""
    return sorted(p.name for p in (Path(out) / "points").iterdir() if not p.name.startswith("."))


def expected_point_files(reference):
    keys = [p["key"] for p in json.loads((Path(reference) / "results.json").read_text())["points"]]
    return sorted([f"{k}.json" for k in keys] + [f"{k}.npz" for k in keys])


def finished_points(out):
    return [p for p in (Path(out) / "points").glob("*.json") if not p.name.endswith(".failed.json")]


# ---- results -------------------------------------------------------------------------------------------------------

@needs_mnist
def test_sweep_on_a_dask_cluster_equals_the_serial_run_to_the_bit(cluster, serial_run, tmp_path, capsys,
                                                                  offline_mnist):
    cluster.ensure_workers(2)
    out = tmp_path / "dask"
    assert main([*SWEEP, "--out", str(out), "--scheduler", cluster.address]) == 0
    err = capsys.readouterr().err
    assert f"Dask scheduler {cluster.address}: 2 worker(s); dashboard http://127.0.0.1:" in err
    assert f"{POINTS}/{POINTS} points finished ({POINTS} computed now, 0 found done), 0 failed" in err
    assert_same_results(out, serial_run(1))
    assert point_files(out) == expected_point_files(serial_run(1))


def test_local_cluster_runs_the_cli_with_one_blas_thread_share_per_worker(tmp_path, capsys, monkeypatch):
    """``--scheduler local:2`` through the CLI, on the toy scenario (registered for this test only): the serial
    results, and workers started with cores // 2 BLAS threads."""
    monkeypatch.setitem(experiments.SCENARIOS, "toy", replace(TOY, config_class=ToyCliConfig))
    monkeypatch.setenv("PYTHONPATH", _env(threads=1)["PYTHONPATH"])  # the workers import the toy from tests/
    assert main(["run", "toy", "--out", str(tmp_path / "serial")]) == 0
    assert main(["run", "toy", "--out", str(tmp_path / "local"), "--scheduler", "local:2"]) == 0
    err = capsys.readouterr().err
    assert "on Dask (local:2)" in err and "4/4 points finished" in err
    assert "2 worker(s); dashboard http://127.0.0.1:" in err  # every listener on loopback, the link too
    serial, local = (json.loads((tmp_path / run / "results.json").read_text())["points"] for run in ("serial", "local"))
    assert [p["result"]["value"] for p in local] == [p["result"]["value"] for p in serial] == [0.0, 2.0, 4.0, 6.0]
    assert {p["result"]["threads"] for p in local} == {str(sweep.blas_threads(2))}


def test_a_failing_point_on_dask_is_reported_and_the_others_finish(cluster, tmp_path):
    cluster.ensure_workers(2)
    with sweep.dask_client(cluster.address) as client:
        report = sweep.run_sweep(TOY, ToyConfig(fail_seed=1), tmp_path, executor=client)
    assert [r["point"]["seed"] for r in report.records] == [0, 2, 3]
    assert [r["result"]["value"] for r in report.records] == [0.0, 4.0, 6.0]
    (failure,) = report.failures
    assert failure["error"] == "ValueError: seed 1 is cursed" and failure["point"]["seed"] == 1
    assert "toy_run_point" in failure["traceback"]  # the worker's traceback, carried back
    assert "## Failed points" in report.summary and (tmp_path / "points" / "seed=1.failed.json").is_file()


# ---- security -------------------------------------------------------------------------------------------------------

def write_certificates(folder):
    """A CA-signed certificate and key made by Dask (``Security.temporary()``, self-signed: it is its own CA), as
    the PEM files ``ca.pem``, ``cert.pem``, ``key.pem`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    made = distributed.Security.temporary()
    files = {"ca": folder / "ca.pem", "cert": folder / "cert.pem", "key": folder / "key.pem"}
    for name, text in (("ca", made.tls_ca_file), ("cert", made.tls_client_cert), ("key", made.tls_client_key)):
        files[name].write_text(text)
    return {k: str(v) for k, v in files.items()}


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    c = Cluster(folder, tls=write_certificates(folder / "certs"))
    try:
        c.ensure_workers(2)
        yield c
    finally:
        c.close()


def tls_options(files):
    return ["--tls-ca", files["ca"], "--tls-cert", files["cert"], "--tls-key", files["key"]]


@needs_mnist
def test_sweep_on_a_tls_cluster_equals_the_serial_run_to_the_bit(tls_cluster, serial_run, tmp_path, capsys,
                                                                 offline_mnist):
    tls_cluster.ensure_workers(2)
    assert tls_cluster.address.startswith("tls://127.0.0.1:")
    out = tmp_path / "tls"
    files = {"ca": tls_cluster.security.tls_ca_file, "cert": tls_cluster.security.tls_client_cert,
             "key": tls_cluster.security.tls_client_key}
    assert main([*SWEEP, "--out", str(out), "--scheduler", tls_cluster.address, *tls_options(files)]) == 0
    err = capsys.readouterr().err
    assert f"Dask scheduler {tls_cluster.address}: 2 worker(s)" in err and f"{POINTS}/{POINTS} points finished" in err
    assert_same_results(out, serial_run(1))


def _first_bytes(address, ca, cert=None):
    """Connect to the TLS scheduler at ``address`` trusting ``ca``, presenting ``cert`` (``(cert, key)`` files) or no
    certificate, and return what it sends first: its bytes, or the ``ssl.SSLError`` it answers with."""
    host, port = address[len("tls://"):].rsplit(":", 1)
    context = ssl.create_default_context(cafile=ca)
    context.check_hostname = False  # Dask's certificates name no host
    if cert is not None:
        context.load_cert_chain(*cert)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        try:
            with context.wrap_socket(raw) as tls:
                return tls.recv(16)
        except ssl.SSLError as exc:  # at the handshake (TLS 1.2) or at the first read (TLS 1.3)
            return exc


def test_a_tls_cluster_refuses_clients_without_its_certificates(tls_cluster, tmp_path, capsys):
    """The scheduler itself refuses a TLS client that presents no certificate (Dask's client will not even try), a
    certificate of another CA, or plain TCP; such a client runs nothing on the workers. minisgd refuses a tls://
    address without certificates before connecting. (The refused Dask clients run in child processes: a
    ``distributed.Client`` that fails to connect leaves its event loop thread behind, and enough of those keep the
    next ``LocalCluster`` in this process from starting its own.)"""
    tls_cluster.ensure_workers(2)
    address, out = tls_cluster.address, str(tmp_path / "run")
    security = tls_cluster.security
    assert isinstance(_first_bytes(address, security.tls_ca_file), ssl.SSLError)
    welcome = _first_bytes(address, security.tls_ca_file, (security.tls_client_cert, security.tls_client_key))
    assert isinstance(welcome, bytes) and welcome  # the same connection with the certificate: Dask's handshake

    def refused(*options):
        proc = subprocess.run([sys.executable, "-m", "minisgd", *SWEEP, "--out", out, *options], capture_output=True,
                              text=True, env=_env(threads=1), timeout=120)
        assert proc.returncode == 2, proc.stderr
        return proc.stderr

    err = refused("--scheduler", address, *tls_options(write_certificates(tmp_path / "stranger")))
    assert f"no Dask scheduler answered and accepted this client at {address} within 5 s" in err
    assert "signed by the cluster's CA" in err
    assert "no Dask scheduler answered at tcp://127.0.0.1:" in refused("--scheduler", address.replace("tls", "tcp"))
    assert main([*SWEEP, "--out", out, "--scheduler", address]) == 2
    assert "a tls:// scheduler needs the cluster's CA certificate (--tls-ca) and this client's certificate " \
        "(--tls-cert)" in capsys.readouterr().err
    assert main([*SWEEP, "--out", out, "--scheduler", "local:1", *tls_options(write_certificates(tmp_path / "x"))]) == 2
    assert "TLS certificates are for a tls:// scheduler, not 'local:1'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_local_cluster_listens_on_loopback_only(tmp_path):
    """Every listening socket of ``local:N`` (scheduler, nannies and dashboard in this process; the workers in
    theirs) is bound to 127.0.0.1, and the dashboard link says so."""
    import psutil

    def listening(pid):
        process = psutil.Process(pid)
        connections = getattr(process, "net_connections", process.connections)("inet")
        return [c.laddr for c in connections if c.status == psutil.CONN_LISTEN]

    with sweep.dask_client("local:2") as client:
        pids = {os.getpid(), *client.run(os.getpid).values()}
        sockets = [address for pid in pids for address in listening(pid)]
        link = client.dashboard_link
    assert len(pids) == 3 and len(sockets) >= 4  # scheduler, dashboard, and at least one listener a worker
    assert {a.ip for a in sockets} == {"127.0.0.1"}, sockets
    assert link.startswith("http://127.0.0.1:")


# ---- faults --------------------------------------------------------------------------------------------------------

@needs_mnist
def test_client_killed_mid_sweep_resumes_with_only_the_missing_points(cluster, serial_run, tmp_path, capsys,
                                                                      offline_mnist):
    cluster.ensure_workers(2)
    out = tmp_path / "resumed"
    command = [*SWEEP, "--out", str(out), "--scheduler", cluster.address]
    client = subprocess.Popen([sys.executable, "-m", "minisgd", *command], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=_env(threads=1))
    deadline = time.monotonic() + 60
    while not (out / "points").is_dir() or not finished_points(out):
        assert time.monotonic() < deadline and client.poll() is None, "the sweep did not start"
        time.sleep(0.01)
    client.send_signal(signal.SIGKILL)
    client.wait()
    before = {p.name: p.stat().st_mtime_ns for p in (out / "points").iterdir() if not p.name.startswith(".")}
    done = len(finished_points(out))
    assert 0 < done < POINTS, "the client was not stopped mid-sweep"

    assert main(command) == 0
    assert f"({POINTS - done} computed now, {done} found done)" in capsys.readouterr().err
    assert {name: (out / "points" / name).stat().st_mtime_ns for name in before} == before  # not rewritten
    assert point_files(out) == expected_point_files(serial_run(1))
    assert_same_results(out, serial_run(1))


@needs_mnist
def test_worker_killed_mid_sweep_loses_and_duplicates_nothing(cluster, serial_run, tmp_path, capsys, offline_mnist):
    cluster.ensure_workers(2)
    out, victim, killed = tmp_path / "fault", cluster.workers[0], {}

    def kill_a_worker_when_the_first_point_lands():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if (out / "points").is_dir() and (done := finished_points(out)):
                victim.send_signal(signal.SIGKILL)
                killed["points done"] = len(done)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_worker_when_the_first_point_lands, daemon=True)
    killer.start()
    assert main([*SWEEP, "--out", str(out), "--scheduler", cluster.address]) == 0
    killer.join()
    assert victim.wait(timeout=10) == -signal.SIGKILL and 0 < killed["points done"] < POINTS
    err = capsys.readouterr().err
    assert f"{POINTS}/{POINTS} points finished ({POINTS} computed now, 0 found done), 0 failed" in err
    assert point_files(out) == expected_point_files(serial_run(1))  # each point once, no failure, no temporary file
    assert not [p for p in (out / "points").iterdir() if p.name.startswith(".")]
    assert_same_results(out, serial_run(1))


# ---- bad input -----------------------------------------------------------------------------------------------------

def test_unreachable_scheduler_is_a_clear_error_within_seconds(tmp_path, capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    assert main([*SWEEP, "--out", str(tmp_path / "run"), "--scheduler", f"tcp://127.0.0.1:{port}"]) == 2
    assert time.monotonic() - start < 10
    err = capsys.readouterr().err
    assert f"no Dask scheduler answered at tcp://127.0.0.1:{port} within 5 s" in err
    assert "Check that `dask scheduler` runs there" in err and "local:N" in err
    assert not (tmp_path / "run").exists()  # nothing was started


def test_bad_scheduler_options_and_missing_dask_are_clear_errors(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "run")
    assert main([*SWEEP, "--out", out, "--scheduler", "local:0"]) == 2
    assert "local:N takes a number of workers N >= 1, got 'local:0'" in capsys.readouterr().err
    assert main([*SWEEP, "--out", out, "--scheduler", "local:2", "--jobs", "2"]) == 2
    assert "--jobs and --scheduler exclude each other" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if Dask were not installed
    assert main([*SWEEP, "--out", out, "--scheduler", "local:2"]) == 2
    assert "pip install 'minisgd[dist]'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_workers_without_this_minisgd_are_refused_before_any_point_runs():
    from importlib.metadata import PackageNotFoundError

    import minisgd

    class Client:  # what distributed.Client.run returns: worker address -> value, or the exception it raised
        def run(self, fn, *args, on_error):
            assert on_error == "return" and args == ("minisgd",)
            return {"tcp://10.0.0.7:4001": minisgd.__version__, "tcp://10.0.0.8:4001": "0.0.1",
                    "tcp://10.0.0.9:4001": PackageNotFoundError("minisgd")}

    with pytest.raises(sweep.ClusterError) as error:
        sweep._check_workers(Client())
    assert f"must run minisgd {minisgd.__version__}, as this client does; found tcp://10.0.0.8:4001: 0.0.1; " \
        "tcp://10.0.0.9:4001: PackageNotFoundError: No package metadata was found for minisgd" in str(error.value)
