"""The BLAS thread policy on a busy machine: gradient, HVP, exact Hessian and eigh with one core taken by a busy loop.

    PYTHONPATH=. /work/venvs/bench/bin/python benchmarks/bench_threads.py [--quick]

Each operation runs under three settings of ``MINISGD_BLAS_THREADS`` (``1``, every core = the BLAS default before
the policy, ``auto`` = the policy of ``minisgd.threads``), first on the quiet machine, then with a background
process spinning on one core. The slowdown is the busy time over the quiet one-thread time (goal: <= 1.2x for the
policy); "speed-up quiet" is the one-thread time over the policy's on the quiet machine (large work should still
use every core). Times are medians (a collapse shows in the median, not in the best). The last column is the CPU
the *other* processes used during the timing, in cores: about 1.0 in the busy runs is the busy loop itself.
"""
import argparse
import multiprocessing
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import _common as C  # noqa: E402


def spin():
    while True:
        pass


def cases(np, ms, quick):
    """``(label, flops, fn)`` for the operations the policy covers."""
    from minisgd.core import backprop, hessian, hvp
    from minisgd.curvature.eigen import exact_spectrum
    out = []
    small_N = 2048
    big_N = 1024 if quick else 4096
    for sizes, act, N, dtype, what in [([64, 32, 32, 10], "tanh", small_N, "float64", "grad"),
                                       ([64, 32, 32, 10], "tanh", small_N, "float64", "hvp"),
                                       ([784, 512, 512, 10], "relu", big_N, "float32", "grad"),
                                       ([784, 512, 512, 10], "tanh", big_N // 4, "float64", "hvp")]:
        net = ms.MLP(sizes, activation=act)
        theta = net.init(seed=0, dtype=dtype)
        rng = np.random.default_rng(1)
        X, y = rng.standard_normal((N, sizes[0])).astype(dtype), rng.integers(0, sizes[-1], N)
        v = rng.standard_normal(net.num_params).astype(dtype)
        label = f"{what} {'-'.join(map(str, sizes))} {act} N={N} {dtype}"
        if what == "grad":
            out.append((label, backprop.gradient_flops(net, N), lambda net=net, t=theta, X=X, y=y:
                        backprop.loss_and_grad(net, t, X, y)))
        else:
            out.append((label, hvp.hvp_flops(net, N, 1), lambda net=net, t=theta, X=X, y=y, v=v:
                        hvp.hessian_vector_product(net, t, X, y, v)))
    net = ms.MLP([20, 16, 10], activation="tanh")  # P = 506, close to the demo's 484
    theta = net.init(seed=0)
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((1000, 20)), rng.integers(0, 10, 1000)
    out.append(("exact Hessian 20-16-10 N=1000", hessian.hessian_flops(net, 1000),
                lambda net=net, theta=theta, X=X, y=y: hessian.hessian(net, theta, X, y)))
    H = hessian.hessian(net, theta, X, y)
    P = net.num_params
    # each lambda binds its own H (a default argument): the larger case below rebinds the name
    out.append((f"eigvalsh {P}x{P}", 4 * P ** 3 / 3, lambda H=H: exact_spectrum(H)))
    out.append((f"eigh {P}x{P} (vectors)", 10 * P ** 3, lambda H=H: exact_spectrum(H, return_vectors=True)))
    if not quick:  # P = 2,858: eigh with vectors ~ 2e11 flops, the size where two threads should pay
        net = ms.MLP([60, 40, 10], activation="tanh")
        theta = net.init(seed=0)
        X, y = rng.standard_normal((2000, 60)), rng.integers(0, 10, 2000)
        H = hessian.hessian(net, theta, X, y)
        P = net.num_params
        out.append((f"exact Hessian 60-40-10 N=2000 (P={P})", hessian.hessian_flops(net, 2000),
                    lambda net=net, theta=theta, X=X, y=y: hessian.hessian(net, theta, X, y)))
        out.append((f"eigh {P}x{P} (vectors)", 10 * P ** 3, lambda H=H: exact_spectrum(H, return_vectors=True)))
    return out


def median_time(np, fn, repeats):
    times = C.timeit(fn, repeats=repeats, warmup=1, retries=0)  # no retry: the busy runs are loaded on purpose
    return float(np.median(times)), C.TIMINGS[-1]["foreign"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller large-net cases")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    import numpy as np

    import minisgd as ms
    from minisgd import threads
    cores = threads.available_cores()
    info = C.machine_info(np)
    print(f"# bench_threads: {info['cpu']}, {cores} cores, NumPy {info['numpy']}, BLAS {info['blas']}")
    print(f"# policy: one BLAS thread below {threads.SERIAL_FLOPS:.0e} flops, else {cores}")
    load = os.getloadavg()[0]
    print(f"# 1-min load average at start: {load:.2f}\n")
    settings = {"1 thread": "1", f"{cores} threads": str(cores), "policy": "auto"}
    results = {}
    work = cases(np, ms, args.quick)
    for busy in (False, True):
        worker = None
        if busy:
            worker = multiprocessing.Process(target=spin, daemon=True)
            worker.start()
        try:
            for label, flops, fn in work:
                for name, value in settings.items():
                    os.environ[threads.ENV] = value
                    results[label, name, busy] = median_time(np, fn, args.repeats)
        finally:
            os.environ.pop(threads.ENV, None)
            if worker is not None:
                worker.terminate()
                worker.join()
    rows = []
    for label, flops, _ in work:
        base = results[label, "1 thread", False][0]
        row = [label, f"{flops:.1e}"]
        for busy in (False, True):
            row += [C.fmt_time(results[label, name, busy][0]) for name in settings]
        row += [f"{results[label, 'policy', False][0] and base / results[label, 'policy', False][0]:.2f}x",
                f"{results[label, f'{cores} threads', True][0] / base:.2f}x",
                f"**{results[label, 'policy', True][0] / base:.2f}x**"]
        row.append(" / ".join(f"{max(results[label, n, b][1] for n in settings):.2f}" for b in (False, True)))
        rows.append(row)
    header = ["operation", "flops (all GEMMs)"]
    header += [f"quiet: {n}" for n in settings] + [f"busy: {n}" for n in settings]
    header += ["speed-up quiet (1 thread / policy)", f"slowdown busy, {cores} threads", "slowdown busy, policy",
               "other CPU, cores (quiet / busy)"]
    print(C.markdown_table(header, rows))
    print(f"\n1-min load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
