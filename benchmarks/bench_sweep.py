r"""Scheduling overhead of the sweep runner: one scenario's sweep serially, on a process pool and on a local Dask cluster.

    MINISGD_DATA=../shared/data python benchmarks/bench_sweep.py                # batch-sweep --quick, 3 ways, 1 round
    MINISGD_DATA=../shared/data python benchmarks/bench_sweep.py --workers 4 --rounds 2 --scenario spectrum

Each way runs the whole sweep (``minisgd.sweep.run_sweep``, figures off) into a fresh run folder:

* ``serial``: the points one after another in this process, with all the cores' BLAS threads (``--jobs 1``);
* ``process pool``: ``sweep.process_pool(W)``, W spawned workers with cores // W BLAS threads (``--jobs W``);
* ``Dask local``: ``sweep.dask_client("local:W")``, a ``LocalCluster`` of W worker processes (``--scheduler local:W``).

The scenario's ``run_point`` is wrapped to return, besides its result, its process id and the wall-clock times it
started and ended, so the W x wall worker-seconds of a sweep split into

.. math::  W \, t_\text{wall} = \sum_i t_i + \underbrace{\sum_w s_w}_\text{start} +
           \underbrace{\sum_\text{gaps}}_\text{dispatch} + \underbrace{\sum_w r_w}_\text{tail} + W \, t_\text{finish}

with :math:`t_i` the points' compute, :math:`s_w` the time until worker w starts its first point (process start,
imports), the gaps between the end of one point and the start of the next on the same worker (the result going
back to the client, which writes it, and the next task coming in: **the scheduling overhead proper**), :math:`r_w`
the time worker w waits at the end for the others (points of unequal cost; no scheduler removes it), and the
client's collecting and summarizing after the last point. ``total overhead`` is the lead's
:math:`(W t_\text{wall} - \sum_i t_i) / n` (start-up of the pool or the cluster excluded), both per point and as a
share of the mean point's compute. The first point of each worker process also pays its imports, Numba's cache and
the MNIST load inside :math:`t_i`. ``other load`` is the CPU other processes used during the run, in cores
(``_common.ForeignLoad``); this machine is shared.
"""
import argparse
import dataclasses
import functools
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402  (sets thread counts before NumPy is imported)


def timed_run_point(run_point, point):
    """``run_point(point)`` with where and when it ran: ``result["_bench"] = {pid, start, end}`` (Unix seconds)."""
    start = time.time()
    result = run_point(point)
    return {**result, "_bench": {"pid": os.getpid(), "start": start, "end": time.time()}}


def one_sweep(way, workers, scenario, config, out):
    """One sweep run ``way``: its timings (seconds) and the other processes' load (cores)."""
    from minisgd import sweep

    timed = dataclasses.replace(scenario, run_point=functools.partial(timed_run_point, scenario.run_point))
    t0 = time.perf_counter()
    with C.ForeignLoad() as load:
        executor = {"serial": nullcontext, "process pool": lambda: sweep.process_pool(workers),
                    "Dask local": lambda: sweep.dask_client(f"local:{workers}")}[way]()
        with executor as ex:
            ready, begin = time.perf_counter(), time.time()
            report = sweep.run_sweep(timed, config, out, executor=ex, progress=False, figures=False)
            done, end = time.perf_counter(), time.time()
    assert report.ok, [f["error"] for f in report.failures]
    runs = [(r["result"]["_bench"], r["seconds"]) for r in report.records]
    by_worker = {}
    for b, _ in runs:
        by_worker.setdefault(b["pid"], []).append(b)
    start = gaps = tail = 0.0
    ngaps = 0
    last = max(b["end"] for b, _ in runs)
    for points in by_worker.values():
        points.sort(key=lambda b: b["start"])
        start += points[0]["start"] - begin
        gaps += sum(q["start"] - p["end"] for p, q in zip(points, points[1:]))
        ngaps += len(points) - 1
        tail += last - points[-1]["end"]
    compute = sum(s for _, s in runs)
    n = len(runs)
    return {"setup": ready - t0, "wall": done - ready, "compute": compute, "mean": compute / n,
            "longest": max(s for _, s in runs), "start": start / workers, "gap": gaps / max(ngaps, 1),
            "tail": tail, "finish": end - last, "overhead": (workers * (done - ready) - compute) / n,
            "workers_seen": len(by_worker), "load": load.cores}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="batch-sweep", help="scenario, run in its --quick mode")
    p.add_argument("--workers", type=int, default=2, help="workers of the pool and of the Dask cluster")
    p.add_argument("--rounds", type=int, default=1, help="alternating rounds of the three ways")
    args = p.parse_args(argv)
    threads = C.set_threads(os.cpu_count() or 1)
    import numpy as np

    from minisgd import experiments

    scenario = experiments.get(args.scenario)
    config = scenario.config(quick=True)
    n = len(scenario.grid(config))
    ways = {"serial": 1, "process pool": args.workers, "Dask local": args.workers}
    header = ["way", "round", "start-up", "sweep (wall)", "compute (sum)", "mean point", "longest point",
              "worker start", "gap between points", "gap as % of a point", "tail (worker-s)", "finish",
              "total overhead / point", "as % of a point", "other load (cores)"]
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for way, w in ways.items():
                x = one_sweep(way, w, scenario, config, Path(tmp) / f"{way}-{r}")
                table.append([way, r + 1, f"{x['setup']:.2f} s", f"{x['wall']:.2f} s", f"{x['compute']:.2f} s",
                              f"{x['mean']:.2f} s", f"{x['longest']:.2f} s", f"{x['start']:.2f} s",
                              f"{x['gap'] * 1e3:.1f} ms", f"{100 * x['gap'] / x['mean']:.2f}%",
                              f"{x['tail']:.2f} s", f"{x['finish']:.2f} s", f"{x['overhead'] * 1e3:.0f} ms",
                              f"{100 * x['overhead'] / x['mean']:.1f}%", f"{x['load']:.2f}"])
                print(" | ".join(str(c) for c in table[-1]), file=sys.stderr, flush=True)

    info = C.machine_info(np)
    print(f"{args.scenario} --quick: {n} points; {args.workers} workers; {info['cpu']}, {info['os.cpu_count']} cores; "
          f"numpy {info['numpy']}; this process: {threads}\n")
    print(C.markdown_table(header, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
