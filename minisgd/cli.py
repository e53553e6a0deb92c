"""The ``minisgd`` command line. Library code never prints; this module does.

``minisgd list``: the scenarios, one line each.
``minisgd run NAME [--quick] [--seed S] [--seeds K] [--device cpu|gpu] [--jobs J | --scheduler ADDRESS] [--out DIR]
[--set key=value ...] [--plots DIR]``: run a scenario's sweep into a run folder (default ``runs/NAME`` or
``runs/NAME-quick``), here, on a process pool or on Dask; running it again resumes (finished points are skipped) and
redraws the summary and figures.
``minisgd show RUN_DIR``: the summary of a run.
``minisgd demo``: the exact Hessian spectrum of a small random network, checked against finite differences
of the hand-derived gradient.
"""
import argparse
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from . import MLP
from .core import activations
from .testing import finite_difference_jacobian


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


def _print_failure(failure):
    print(f"\npoint {failure['key']} failed: {failure['error']}\n  point: {json.dumps(failure['point'])}\n"
          + "  " + failure["traceback"].rstrip().replace("\n", "\n  "), file=sys.stderr)


def _config_help(scenario):
    import dataclasses
    import typing
    full, quick = scenario.config(), scenario.config(quick=True)
    hints = typing.get_type_hints(scenario.config_class)
    print(f"config keys of {scenario.name} (full default; --quick value where it differs):")
    for f in dataclasses.fields(full):
        q = getattr(quick, f.name)
        differs = f"   (quick: {q!r})" if q != getattr(full, f.name) else ""
        hint = hints[f.name]
        kind = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
        print(f"  {f.name} = {getattr(full, f.name)!r}  [{kind}]{differs}")
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


def run_scenario(args):
    from . import experiments, sweep
    from .errors import (ClusterError, ConfigMismatchError, CorruptFileError, ExtraNotInstalledError, FolderInUseError,
                         StorageError)
    try:
        scenario = experiments.get(args.name)
        if args.set == ["help"]:
            return _config_help(scenario)
        overrides = {k: v for k, v in (("seed", args.seed), ("seeds", args.seeds), ("device", args.device))
                     if v is not None}
        overrides.update(experiments.parse_overrides(scenario.config_class, args.set or []))
        config = scenario.config(quick=args.quick, **overrides)
    except (KeyError, ValueError, TypeError) as exc:
        return _error(exc.args[0] if exc.args else exc)
    if config.device == "gpu":
        from .backend import device_namespace
        from .errors import BackendUnavailableError
        try:
            device_namespace("gpu")
        except BackendUnavailableError as exc:
            return _error(exc)
    out = Path(args.out or f"runs/{scenario.name}{'-quick' if args.quick else ''}")
    if args.jobs < 1:
        return _error(f"--jobs must be >= 1, got {args.jobs}")
    if args.scheduler and args.jobs != 1:
        return _error("--jobs and --scheduler exclude each other: on Dask, the cluster's workers run the points")
    total = len(scenario.grid(config))
    where = f"on Dask ({args.scheduler})" if args.scheduler else f"{args.jobs} job(s)"
    print(f"{scenario.name}: {total} points, {'quick' if args.quick else 'full'} mode, {where}, run folder {out}",
          file=sys.stderr)
    start = time.perf_counter()
    try:
        with _executor(args) as executor:
            report = sweep.run_sweep(scenario, config, out, executor=executor, progress=args.progress,
                                     on_failure=_print_failure)
    except (ConfigMismatchError, ExtraNotInstalledError, ClusterError, CorruptFileError, FolderInUseError,
            StorageError) as exc:
        return _error(exc)
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


def show_run(args):
    from . import sweep
    from .errors import CorruptFileError
    from .training.storage import read_bytes
    out = Path(args.run_dir)
    summary = out / "summary.md"
    try:
        run = sweep.read_run(out)
        text = read_bytes(summary, 64 << 20, "summary").decode(errors="replace") if summary.exists() else None
    except (FileNotFoundError, CorruptFileError) as exc:
        return _error(exc)
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
    parser = argparse.ArgumentParser(prog="minisgd", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="the scenarios, one line each")
    p.set_defaults(func=list_scenarios)

    p = sub.add_parser("run", help="run a scenario (resumes an unfinished run folder)",
                       description="Run a scenario's sweep. Config keys: see `--set help` or the scenario's module.")
    p.add_argument("name", metavar="NAME", help="scenario name (see `minisgd list`)")
    p.add_argument("--quick", action="store_true", help="the small version (about a minute; what the tests run)")
    p.add_argument("--seed", type=int, help="first seed")
    p.add_argument("--seeds", type=int, help="number of seeds")
    p.add_argument("--device", choices=("cpu", "gpu"), help="where to compute (default cpu)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1: in this process)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run the points on Dask: tls://HOST:PORT (or tcp:// on a "
                   "trusted network) of a running scheduler, or local:N for a local cluster of N worker processes "
                   "(needs pip install 'minisgd[dist]')")
    for name, what in (("ca", "the CA certificate that signed the cluster's"), ("cert", "this client's certificate"),
                       ("key", "this client's private key")):
        p.add_argument(f"--tls-{name}", metavar="PEM", help=f"for a tls:// scheduler: {what} (default: Dask's "
                       "distributed.comm.tls configuration)")
    p.add_argument("--out", help="run folder (default runs/NAME, or runs/NAME-quick)")
    p.add_argument("--set", nargs="+", metavar="KEY=VALUE", action="extend",
                   help="override config values, parsed with the field types (tuples as a,b,c; None as none)")
    p.add_argument("--plots", metavar="DIR", help="also copy the figures to DIR as RUN_FIGURE.png, RUN the name of "
                   "the run folder (by default the scenario's name)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: in a terminal only)")
    p.set_defaults(func=run_scenario)

    p = sub.add_parser("show", help="print the summary of a run folder")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(func=show_run)

    p = sub.add_parser("demo", help="exact Hessian spectrum of a small random net, checked by finite differences")
    p.add_argument("--inputs", type=int, default=8, help="input dimension d")
    p.add_argument("--hidden", type=int, nargs="*", default=[16, 16], help="hidden widths")
    p.add_argument("--classes", type=int, default=4, help="number of classes K")
    p.add_argument("--examples", type=int, default=512, help="number of examples N")
    p.add_argument("--activation", default="tanh", choices=activations.NAMES)
    p.add_argument("--l2", type=float, default=0.0, help="L2 coefficient")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
