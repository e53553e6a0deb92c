"""What `import minisgd` costs, against NumPy alone and (when installed) the libraries a user would otherwise import.

    python benchmarks/bench_import.py [--repeat 7]

Each line runs ``python -c "import X"`` in a fresh process ``repeat`` times and reports the least CPU time (user +
system: unlike wall time it does not grow when other processes hold the cores) and the wall time of that run, then
the ratio to ``import numpy``. The last column lists what the import pulled in that the library does not need.
"""
import argparse
import importlib.util
import resource
import subprocess
import sys

HEAVY = ("matplotlib", "tqdm", "dask", "distributed", "scipy", "numba", "torch", "jax")
TARGETS = ["numpy", "minisgd", "minisgd.curvature", "minisgd.experiments", "torch", "jax"]


def cost(module, repeat):
    """``(cpu_seconds, wall_seconds, heavy modules loaded)`` of the cheapest of ``repeat`` fresh imports."""
    code = (f"import time, sys; t = time.perf_counter(); import {module}; w = time.perf_counter() - t; "
            f"print(w, ' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))")
    best = None
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if best is None or cpu < best[0]:
            best = (cpu, float(out[0]), out[1:])
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rows, numpy_cpu = [], None
    for module in TARGETS:
        if importlib.util.find_spec(module.split(".")[0]) is None:
            continue
        cpu, wall, heavy = cost(module, args.repeat)
        numpy_cpu = numpy_cpu or cpu
        rows.append((module, cpu, wall, cpu / numpy_cpu, ", ".join(h for h in heavy if h != module) or "-"))
    print(f"| import | CPU s (best of {args.repeat}) | wall s of that run | CPU / numpy's | heavy modules loaded |")
    print("|---|---|---|---|---|")
    for module, cpu, wall, ratio, heavy in rows:
        print(f"| {module} | {cpu:.3f} | {wall:.3f} | {ratio:.1f} | {heavy} |")


if __name__ == "__main__":
    main()
