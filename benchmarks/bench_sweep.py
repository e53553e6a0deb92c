"""Scheduling overhead of the sweep runner: one scenario's sweep serially, on a process pool and on a local Dask cluster.

    MINISGD_DATA=../shared/data python benchmarks/bench_sweep.py                # batch-sweep --quick, 3 ways, 2 rounds
    MINISGD_DATA=../shared/data python benchmarks/bench_sweep.py --workers 4 --rounds 1 --scenario spectrum

Each way runs the whole sweep (``minisgd.sweep.run_sweep``, figures off) into a fresh run folder:

* ``serial``: the points one after another in this process, with all the cores' BLAS threads (``--jobs 1``);
* ``process pool``: ``sweep.process_pool(W)``, W spawned workers with cores // W BLAS threads (``--jobs W``);
* ``Dask local``: ``sweep.dask_client("local:W")``, a ``LocalCluster`` of W worker processes (``--scheduler local:W``).

Columns: start-up (creating the pool or the cluster and connecting), sweep (``run_sweep``: submitting, computing,
writing each point, collecting and summarizing), compute (the sum of the points' own times, measured around
``run_point`` on the worker), and the overhead per point

.. math::  o = \\frac{W \\, t_\\text{wall} - \\sum_i t_i}{n},

the worker-seconds spent on anything but the points' compute (idle workers at the end of the sweep included), as a
share of the mean point's compute; once with the sweep's wall time alone and once with the start-up added. Points of
unequal cost leave workers idle at the end however well they are scheduled, so the last column measures the wall
time beyond the lower bound :math:`\max(\sum_i t_i / W, \max_i t_i)`, the same way (W times it, per point). The first
point of every worker process pays its imports, Numba's cache load and the MNIST load; that counts as compute (a
serial run pays it once, W workers W times). Rounds alternate the three ways, so a machine shared with other jobs
shows as spread; ``other load`` is the CPU other processes used during the run, in cores (``_common.ForeignLoad``).
"""
import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common as C  # noqa: E402  (sets thread counts before NumPy is imported)


def one_sweep(way, workers, scenario, config, out):
    """``(start-up s, sweep s, report, other load in cores)`` of one sweep run ``way``."""
    from minisgd import sweep

    start = time.perf_counter()
    with C.ForeignLoad() as load:
        executor = {"serial": nullcontext, "process pool": lambda: sweep.process_pool(workers),
                    "Dask local": lambda: sweep.dask_client(f"local:{workers}")}[way]()
        with executor as ex:
            ready = time.perf_counter()
            report = sweep.run_sweep(scenario, config, out, executor=ex, progress=False, figures=False)
            done = time.perf_counter()
    return ready - start, done - ready, report, load.cores


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", default="batch-sweep", help="scenario, run in its --quick mode")
    p.add_argument("--workers", type=int, default=2, help="workers of the pool and of the Dask cluster")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of the three ways")
    args = p.parse_args(argv)
    threads = C.set_threads(os.cpu_count() or 1)
    import numpy as np

    from minisgd import scenarios

    scenario = scenarios.get(args.scenario)
    config = scenario.config(quick=True)
    n = len(scenario.grid(config))
    ways = {"serial": 1, "process pool": args.workers, "Dask local": args.workers}
    rows = {way: [] for way in ways}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for way, w in ways.items():
                setup, wall, report, load = one_sweep(way, w, scenario, config, Path(tmp) / f"{way}-{r}")
                assert report.ok, [f["error"] for f in report.failures]
                compute = np.array([rec["seconds"] for rec in report.records])
                rows[way].append({"setup": setup, "wall": wall, "compute": compute, "load": load,
                                  "overhead": (w * wall - compute.sum()) / n,
                                  "overhead_all": (w * (wall + setup) - compute.sum()) / n,
                                  "beyond_bound": w * (wall - max(compute.sum() / w, compute.max())) / n})
                x = rows[way][-1]
                print(f"round {r + 1}, {way}: start-up {setup:.1f} s, sweep {wall:.1f} s, compute "
                      f"{compute.sum():.1f} s, overhead per point {x['overhead'] * 1e3:.0f} ms = "
                      f"{100 * x['overhead'] / compute.mean():.1f}% of a point, other load {load:.2f} cores",
                      file=sys.stderr, flush=True)

    info = C.machine_info(np)
    print(f"{args.scenario} --quick: {n} points; {args.workers} workers; {info['cpu']}, {info['os.cpu_count']} cores; "
          f"numpy {info['numpy']}; this process: {threads}\n")
    header = ["way", "round", "start-up", "sweep (wall)", "compute (sum)", "mean point", "longest point",
              "overhead / point", "as % of a point", "with start-up", "beyond the bound", "other load (cores)"]
    table = []
    for way, runs in rows.items():
        for r, x in enumerate(runs):
            mean = x["compute"].mean()
            table.append([way, r + 1, f"{x['setup']:.2f} s", f"{x['wall']:.2f} s", f"{x['compute'].sum():.2f} s",
                          f"{mean:.2f} s", f"{x['compute'].max():.2f} s", f"{x['overhead'] * 1e3:.0f} ms",
                          f"{100 * x['overhead'] / mean:.1f}%", f"{100 * x['overhead_all'] / mean:.1f}%",
                          f"{100 * x['beyond_bound'] / mean:.1f}%", f"{x['load']:.2f}"])
    print(C.markdown_table(header, table))
    best = {way: min(100 * x["overhead"] / x["compute"].mean() for x in runs) for way, runs in rows.items()}
    median = {way: statistics.median(x["wall"] + x["setup"] for x in runs) for way, runs in rows.items()}
    print("\nmedian wall time with start-up: " + ", ".join(f"{way} {t:.1f} s" for way, t in median.items()))
    print("best overhead per point (sweep only): " + ", ".join(f"{way} {v:.1f}%" for way, v in best.items())
          + f"; goal < 5%: {'met' if max(best.values()) < 5 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
