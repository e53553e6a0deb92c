"""The ``minisgd`` command: run the experiments of Keskar et al. (2017) on exact curvature, and look at the results.

The interface of the package (with :mod:`minisgd.sweep`): the only module besides the experiments' figures that
prints. A user's mistake (a config value, the run folder, the data) is found before any point runs and printed as
one line, exit code 2; ``--debug`` (or ``MINISGD_DEBUG=1``) shows the traceback instead.
"""
import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import MLP
from ._version import __version__
from .core import activations
from .errors import CorruptFileError, MinisgdError, RunFolderError
from .testing import finite_difference_jacobian

DESCRIPTION = ("Exact curvature of small neural networks, derived by hand, and the experiments of Keskar et al. "
               "(2017): why large batches find sharp minima that generalize worse.")
EPILOG = """examples:
  minisgd run keskar-mnist --quick      the main experiment, small version (about a minute; downloads MNIST once)
  minisgd list                          every experiment, one line each
  minisgd run spectrum --set help       the config keys of an experiment, with their defaults
  minisgd show runs                     the run folders in runs/, each finished, partial, failed or damaged
  minisgd demo                          an exact Hessian checked against finite differences (no data needed)

MNIST is read from $MINISGD_DATA/mnist/ (MINISGD_DATA names the folder that contains mnist/), else from the user
cache, where the first run downloads it. Set MINISGD_OFFLINE=1 to never download."""


def _demo_problem(args):
    rng = np.random.default_rng(args.seed)
    sizes = [args.inputs, *args.hidden, args.classes]
    net = MLP(sizes, activation=args.activation, loss="cross_entropy", l2=args.l2)
    theta = net.init(seed=args.seed)
    X = rng.normal(size=(args.examples, args.inputs))
    y = rng.integers(0, args.classes, size=args.examples)
    return net, theta, X, y


def demo(args):
    net, theta, X, y = _demo_problem(args)
    print(f"{net}\nN = {X.shape[0]} Gaussian inputs, uniform random labels, seed {args.seed}\n")

    net.hessian(theta, X[:2], y[:2])  # compiles the Numba kernel (cached on disk after the first run)
    start = time.perf_counter()
    H = net.hessian(theta, X, y)
    t_hessian = time.perf_counter() - start
    GN = net.gauss_newton(theta, X, y)
    start = time.perf_counter()
    eig = np.linalg.eigvalsh(H)  # ascending
    t_eigh = time.perf_counter() - start
    eig_gn = np.linalg.eigvalsh(GN)
    eig_res = np.linalg.eigvalsh(H - GN)

    P = net.num_params
    print(f"exact Hessian {P} x {P} in {t_hessian * 1e3:.1f} ms, full eigendecomposition in {t_eigh * 1e3:.1f} ms")
    print(f"  top 5 eigenvalues     {np.array2string(eig[::-1][:5], precision=5)}")
    print(f"  bottom 5 eigenvalues  {np.array2string(eig[:5], precision=5)}")
    print(f"  negative eigenvalues  {int(np.sum(eig < -1e-12 * abs(eig).max()))} of {P}")
    print(f"  trace {eig.sum():.6g}   Frobenius norm {np.sqrt((eig ** 2).sum()):.6g}")
    print(f"  Gauss-Newton: top {eig_gn[-1]:.6g}, min {eig_gn[0]:.3g} (PSD up to rounding)")
    print(f"  residual H - GN: eigenvalues in [{eig_res[0]:.4g}, {eig_res[-1]:.4g}]\n")

    start = time.perf_counter()
    H_fd = finite_difference_jacobian(lambda t: net.loss_and_grad(t, X, y)[1], theta, h=1e-5)
    t_fd = time.perf_counter() - start
    err = np.abs(H - H_fd).max() / np.abs(H).max()
    asym = np.abs(H - H.T).max() / np.abs(H).max()
    print(f"finite-difference check (central, h = 1e-5, {2 * P} gradient calls, {t_fd:.2f} s):")
    print(f"  max |H - H_fd| / max |H| = {err:.2e}   (tolerance 1e-6: FD truncation h^2 ~ 1e-10 plus rounding)")
    print(f"  max |H - H^T| / max |H|  = {asym:.2e}")
    ok = err < 1e-6 and asym < 1e-12
    print("OK: the exact Hessian matches finite differences" if ok else "FAILED: the Hessian does not match")
    return 0 if ok else 1


# ---- scenarios -----------------------------------------------------------------------------------------------

def list_scenarios(args):
    from . import experiments
    width = max(len(n) for n in experiments.names())
    for name in experiments.names():
        sc = experiments.get(name)
        full, quick = len(sc.grid(sc.config())), len(sc.grid(sc.config(quick=True)))
        print(f"{name:<{width}}  {sc.description} [{full} points; --quick: {quick}]")
    return 0


def _error(message):
    print(f"minisgd: error: {message}", file=sys.stderr)
    return 2


def debugging(args=None):
    """``--debug`` or ``MINISGD_DEBUG=1``: tracebacks instead of one-line errors."""
    env = os.environ.get("MINISGD_DEBUG", "").strip().lower() not in ("", "0", "false", "no")
    return env or bool(getattr(args, "debug", False))


def _failure_printer(out, debug):
    """Print a failed point as one line (with ``debug``: its point and traceback too)."""
    def show(failure):
        where = f"traceback in {Path(out) / 'points' / (failure['key'] + '.failed.json')}"
        print(f"point {failure['key']} failed: {failure['error']} ({where})", file=sys.stderr)
        if debug:
            print(f"  point: {json.dumps(failure['point'])}\n  " + failure["traceback"].rstrip().replace("\n", "\n  "),
                  file=sys.stderr)
    return show


def _config_help(scenario):
    import dataclasses
    from .experiments import describe_key
    full, quick = scenario.config(), scenario.config(quick=True)
    print(f"config keys of {scenario.name}: full default, the --quick value where it differs, what a value must be")
    for f in dataclasses.fields(full):
        q = getattr(quick, f.name)
        differs = f"   (quick: {q!r})" if q != getattr(full, f.name) else ""
        must = describe_key(scenario.config_class, f.name, scenario.checks)
        print(f"  {f.name} = {getattr(full, f.name)!r}{differs}  [{must}]")
    return 0


@contextlib.contextmanager
def _executor(args):
    """Where the points run: here (``None``), a process pool (``--jobs J``), or Dask (``--scheduler``, whose
    workers and dashboard are announced here)."""
    from . import sweep
    if args.scheduler:
        tls = (args.tls_ca, args.tls_cert, args.tls_key)
        security = sweep.tls_security(*tls) if any(tls) else None
        with sweep.dask_client(args.scheduler, security=security) as client:
            info = client.scheduler_info()
            workers = len(info.get("workers", {}))
            wait = "" if workers else "; the points wait until a worker connects"
            dashboard = f"dashboard {client.dashboard_link}" if "dashboard" in info.get("services", {}) else \
                "no dashboard"
            print(f"Dask scheduler {info.get('address', args.scheduler)}: {workers} worker(s){wait}; {dashboard}",
                  file=sys.stderr)
            yield client
    elif args.jobs > 1:
        with sweep.process_pool(args.jobs) as pool:
            yield pool
    else:
        yield None


def check_run_folder(out):
    """Raise :class:`~minisgd.errors.RunFolderError` unless ``out`` is, or can be made, a folder this process can
    write in: not a file, not under a file, not on a read-only file system. Creates nothing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} is a file, not a folder; choose another --out")
    existing = out
    while not existing.exists():  # the nearest existing ancestor: where the first folder would be made
        existing = existing.parent
    if not existing.is_dir():
        raise RunFolderError(f"--out {out} lies under {existing}, which is a file; choose another --out")
    try:
        with tempfile.TemporaryFile(dir=existing):  # the real test: permissions, read-only mounts, quotas
            pass
    except OSError as exc:
        raise RunFolderError(f"--out {out}: cannot write in {existing} ({exc.strerror or exc}); choose a folder "
                             "you can write to") from None


def check_data(scenario, args):
    """MNIST present and verified (SHA-256 of every file), or downloaded now, once for the whole sweep; skipped for
    scenarios without MNIST and for workers elsewhere (``--scheduler tcp://...``: they read their own copy)."""
    if not scenario.needs_mnist or (args.scheduler and not args.scheduler.startswith("local:")):
        return
    from .data import read_mnist
    read_mnist()


def run_scenario(args):
    """``minisgd run NAME``: everything that can be checked is checked before the first point (the config, the
    run folder, the data), then the sweep runs."""
    from . import experiments, sweep
    try:
        scenario = experiments.get(args.name)
        if args.set == ["help"]:
            return _config_help(scenario)
        overrides = {k: v for k, v in (("seed", args.seed), ("seeds", args.seeds), ("device", args.device))
                     if v is not None}
        overrides.update(experiments.parse_overrides(scenario.config_class, args.set or []))
        config = scenario.config(quick=args.quick, **overrides)
        scenario.check(config)
    except (KeyError, ValueError) as exc:  # unknown names and keys, unparsable values, ConfigError
        if debugging(args):
            raise
        return _error(exc.args[0] if exc.args else exc)
    if args.jobs < 1:
        return _error(f"--jobs must be >= 1, got {args.jobs}")
    if args.scheduler and args.jobs != 1:
        return _error("--jobs and --scheduler exclude each other: on Dask, the cluster's workers run the points")
    if config.device == "gpu":
        from .backend import device_namespace
        device_namespace("gpu")
    out = Path(args.out or f"runs/{scenario.name}{'-quick' if args.quick else ''}")
    check_run_folder(out)
    check_data(scenario, args)
    total = len(scenario.grid(config))
    where = f"on Dask ({args.scheduler})" if args.scheduler else f"{args.jobs} job(s)"
    print(f"{scenario.name}: {total} points, {'quick' if args.quick else 'full'} mode, {where}, run folder {out}",
          file=sys.stderr)
    start = time.perf_counter()
    try:
        with _executor(args) as executor:
            report = sweep.run_sweep(scenario, config, out, executor=executor, progress=args.progress,
                                     on_failure=_failure_printer(out, debugging(args)))
    except KeyboardInterrupt as exc:
        print(f"\nstopped; the finished points are in {out}/points: run the same command to resume",
              file=sys.stderr)
        return 128 + getattr(exc, "signum", 2)  # 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP
    print(report.summary)
    if args.plots and report.figures:
        Path(args.plots).mkdir(parents=True, exist_ok=True)
        for path in report.figures:
            shutil.copyfile(path, Path(args.plots) / f"{out.name}_{path.name}")
    done = f"{report.computed} computed now, {report.skipped} found done"
    print(f"{scenario.name}: {len(report.records)}/{report.total} points finished ({done}), "
          f"{len(report.failures)} failed, in {time.perf_counter() - start:.0f} s. Run folder: {out} "
          f"(summary.md, results.json/.npz, figures/)" + (f"; figures copied to {args.plots}" if args.plots else ""),
          file=sys.stderr)
    return 0 if report.ok else 1


def _run_state(folder):
    """``(scenario, state, finished, total)`` of a run folder; state is "finished", "partial", "failed" (some
    point failed) or "damaged" (some point's files do not check out), total ``None`` when the stored config no longer
    makes a grid."""
    from . import experiments, sweep
    try:
        run = sweep.read_run(folder)
    except CorruptFileError:  # its config.json: `minisgd show FOLDER` names it and says what is wrong
        return "?", "damaged", 0, None
    name, stored, records, failures = run.scenario, run.config, run.records, run.failures
    total = None
    try:
        sc = experiments.get(name)
        hints = {f: v for f, v in stored.items() if f in experiments.config_keys(sc.config_class)}
        total = len(sc.grid(sc.config(**{k: tuple(v) if isinstance(v, list) else v for k, v in hints.items()})))
    except (KeyError, ValueError, TypeError):
        pass
    state = "damaged" if run.damaged else "failed" if failures else \
        "finished" if total is not None and len(records) >= total else "partial"
    return name, state, len(records), total


def show_run(args):
    """``minisgd show DIR``: the summary of a run folder, or the run folders inside DIR with their state."""
    from . import sweep
    from .training.storage import read_bytes
    out = Path(args.run_dir)
    if not out.is_dir():
        return _error(f"{out} is not a folder; give a run folder (--out of `minisgd run`) or a folder of them, "
                      "e.g. runs")
    if not (out / "config.json").is_file():
        runs = sorted(p for p in out.iterdir() if (p / "config.json").is_file())
        if not runs:
            return _error(f"{out} holds no run folders (folders with a config.json); `minisgd run NAME --out "
                          f"{out}/NAME` makes one")
        width = max(len(p.name) for p in runs)
        for p in runs:
            name, state, done, total = _run_state(p)
            print(f"{p.name:<{width}}  {name:<18} {state:<8}  {done}/{total if total is not None else '?'} points")
        print(f"\n`minisgd show {out}/NAME` prints the summary of one; `minisgd run SCENARIO --out {out}/NAME` "
              "resumes a partial one or retries failed points")
        return 0
    summary = out / "summary.md"
    run = sweep.read_run(out)
    text = read_bytes(summary, 64 << 20, "summary").decode(errors="replace") if summary.exists() else None
    if text is not None:
        print(text)
    else:
        print(f"{out}: scenario {run.scenario}, {len(run.records)} points finished, {len(run.failures)} failed, no "
              "summary yet (run the same `minisgd run` command again to finish it)")
        for f in run.failures:
            print(f"  failed: {f.get('key')}: {f.get('error')}")
    for d in run.damaged:
        print(f"damaged point {d['key']}: {d['reason']}; the next `minisgd run` into {out} moves it to "
              "points/damaged/ and computes it again")
    return 1 if run.damaged else 0


def run_script(path, argv=None):
    """What ``scenarios/NAME.py`` runs: ``minisgd run NAME`` with the script's arguments, NAME from the file name."""
    name = Path(path).stem.replace("_", "-")
    return main(["run", name, *(sys.argv[1:] if argv is None else argv)])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="minisgd", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"minisgd {__version__}")
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback of an error (also: MINISGD_DEBUG=1)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error (also: "
                        "MINISGD_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", parents=[debug], help="the experiments, one line each",
                       description="The experiments you can run, with their number of points (full and --quick).")
    p.set_defaults(func=list_scenarios)

    p = sub.add_parser("run", parents=[debug], help="run an experiment (runs again resume where it stopped)",
                       description="Run an experiment: its points (one per setting and seed) are computed and written "
                       "to a run folder, then its summary and figures. Stopped, it resumes: the same command skips "
                       "the points already done.",
                       epilog="The config keys of an experiment, with their defaults: minisgd run NAME --set help")
    p.add_argument("name", metavar="NAME", help="the experiment (see `minisgd list`)")
    p.add_argument("--quick", action="store_true", help="the small version: about a minute")
    p.add_argument("--seed", type=int, help="the first seed (default 0)")
    p.add_argument("--seeds", type=int, help="how many seeds: seed, seed + 1, ...")
    p.add_argument("--device", choices=("cpu", "gpu"), help="where to compute (default cpu; gpu needs CuPy)")
    p.add_argument("--jobs", type=int, default=1, help="points computed at once, each in its own process "
                   "(default 1; on a 2-core machine, 2)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="compute the points on Dask: tls://HOST:PORT (or tcp:// on "
                   "a trusted network) of a running scheduler, or local:N for N worker processes here (needs pip "
                   "install 'minisgd[dist]')")
    for name, what in (("ca", "the CA certificate that signed the cluster's"), ("cert", "this client's certificate"),
                       ("key", "this client's private key")):
        p.add_argument(f"--tls-{name}", metavar="PEM", help=f"for a tls:// scheduler: {what} (default: Dask's "
                       "distributed.comm.tls configuration)")
    p.add_argument("--out", metavar="DIR", help="the run folder (default runs/NAME, or runs/NAME-quick)")
    p.add_argument("--set", nargs="+", metavar="KEY=VALUE", action="extend",
                   help="change config values, e.g. --set epochs=40 hidden=256,256 n_train=none; "
                   "--set help lists the keys")
    p.add_argument("--plots", metavar="DIR", help="also copy the figures to DIR, as RUN_FIGURE.png")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="a progress bar (default: when the output is a terminal)")
    p.set_defaults(func=run_scenario)

    p = sub.add_parser("show", parents=[debug], help="the summary of a run folder, or the runs in a folder",
                       description="The summary of a run folder; for a folder of run folders (e.g. runs), each run "
                       "with its state: finished, partial (stopped; the same `minisgd run` resumes it), failed, or "
                       "damaged (a file does not check out: `minisgd show` on that run names it).")
    p.add_argument("run_dir", metavar="DIR", help="a run folder, or a folder of them")
    p.set_defaults(func=show_run)

    p = sub.add_parser("demo", parents=[debug], help="an exact Hessian checked against finite differences",
                       description="The exact Hessian of a small random network, its spectrum, and a check against "
                       "finite differences of the hand-derived gradient. Needs no data.")
    p.add_argument("--inputs", type=int, default=8, help="input dimension d")
    p.add_argument("--hidden", type=int, nargs="*", default=[16, 16], help="hidden widths")
    p.add_argument("--classes", type=int, default=4, help="number of classes K")
    p.add_argument("--examples", type=int, default=512, help="number of examples N")
    p.add_argument("--activation", default="tanh", choices=activations.NAMES)
    p.add_argument("--l2", type=float, default=0.0, help="L2 coefficient")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=demo)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except MinisgdError as exc:  # a user's mistake or a missing piece, said in one line
        if debugging(args):
            raise
        return _error(exc)


if __name__ == "__main__":
    sys.exit(main())
