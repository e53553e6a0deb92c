"""The reports of ``benchmarks/gpu_check.sh``: a scenario run on the GPU against the same run on the CPU, and the
summary of the whole check.

    python benchmarks/gpu_check_report.py compare RUN_CPU RUN_GPU --rtol 1e-5 --json out.json --md out.md
    python benchmarks/gpu_check_report.py summary WORK --json summary.json --md summary.md

``compare`` pairs the points of two run folders of one scenario (``results.json`` and ``results.npz``) by key and
takes, for every number they hold (scalars and arrays, wall times left out), the largest relative difference
``|gpu - cpu| / max(|cpu|, 1e-12)`` over the points; counts (steps, batch sizes, fallbacks) must be equal. It exits
1 when a number is off by more than ``--rtol``.

``summary`` reads what ``gpu_check.sh`` left in ``WORK`` (``steps.tsv``: one line per step, name, exit status,
seconds; ``tests.xml``: pytest's JUnit report; ``packages.txt``; ``nvidia-smi.txt``; the comparisons' and the
benchmark's JSON) and writes one page saying what ran, what passed and what was measured.
"""
import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

TIMES = ("seconds", "train_seconds", "wall_time")
COUNTS = ("steps", "batch_size", "num_params", "n_train", "sharpness_fallbacks", "iterations")


def leaves(value, arrays, path=""):
    """``{path: np.ndarray}`` of every number under ``value``; an array stored as ``{"__array__": ref}`` is
    ``arrays[ref]``."""
    if isinstance(value, dict) and set(value) == {"__array__"}:
        return {path: np.asarray(arrays[value["__array__"]], dtype=float)}
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(leaves(v, arrays, f"{path}/{k}" if path else str(k)))
        return out
    if isinstance(value, (bool, int, float)) and not isinstance(value, bool):
        return {path: np.asarray(float(value))}
    return {}


def load_points(folder):
    folder = Path(folder)
    results = json.loads((folder / "results.json").read_text())
    npz = np.load(folder / "results.npz", allow_pickle=False) if (folder / "results.npz").exists() else {}
    points = {}
    for p in results["points"]:  # results.npz names a point's arrays "KEY/ref"
        arrays = {name[len(p["key"]) + 1:]: npz[name] for name in npz.keys() if name.startswith(p["key"] + "/")}
        points[p["key"]] = {"seconds": p.get("seconds"), **leaves(p["result"], arrays)}
    return points, results


def compare(cpu_folder, gpu_folder, rtol):
    """``(rows, report)``: one row per number (largest relative difference over the points) and the verdict."""
    cpu, cpu_res = load_points(cpu_folder)
    gpu, gpu_res = load_points(gpu_folder)
    report = {"cpu": str(cpu_folder), "gpu": str(gpu_folder), "rtol": rtol,
              "cpu_device": cpu_res["config"].get("device"), "gpu_device": gpu_res["config"].get("device"),
              "points": sorted(set(cpu) & set(gpu)), "missing": sorted(set(cpu) ^ set(gpu)),
              "cpu_failures": len(cpu_res.get("failures", [])), "gpu_failures": len(gpu_res.get("failures", []))}
    rows = {}
    for key in report["points"]:
        for name, c in cpu[key].items():
            if name == "seconds" or name.split("/")[-1] in TIMES:
                continue
            g = gpu[key].get(name)
            row = rows.setdefault(name, {"number": name, "cpu": [], "gpu": [], "max_rel_diff": 0.0, "ok": True})
            if g is None or np.shape(g) != np.shape(c):
                row["ok"], row["max_rel_diff"] = False, float("inf")
                continue
            row["cpu"].append(float(np.mean(c)))
            row["gpu"].append(float(np.mean(g)))
            diff = float(np.max(np.abs(g - c) / np.maximum(np.abs(c), 1e-12))) if np.size(c) else 0.0
            row["max_rel_diff"] = max(row["max_rel_diff"], diff)
            exact = name.split("/")[-1] in COUNTS
            row["ok"] = row["ok"] and (diff == 0.0 if exact else diff <= rtol)
    rows = list(rows.values())
    for row in rows:
        row["cpu"], row["gpu"] = float(np.mean(row["cpu"] or [np.nan])), float(np.mean(row["gpu"] or [np.nan]))
    seconds = {side: sum(p["seconds"] or 0.0 for p in pts.values()) for side, pts in (("cpu", cpu), ("gpu", gpu))}
    report.update(seconds=seconds, numbers=len(rows), off=[r["number"] for r in rows if not r["ok"]],
                  worst=max((r["max_rel_diff"] for r in rows), default=0.0))
    report["ok"] = (not report["off"] and not report["missing"] and bool(report["points"])
                    and report["cpu_failures"] == 0 and report["gpu_failures"] == 0)
    return rows, report


def compare_markdown(rows, report, title):
    lines = [f"## {title}", "",
             f"CPU run `{report['cpu']}` (device {report['cpu_device']}) against `{report['gpu']}` (device "
             f"{report['gpu_device']}): {len(report['points'])} points, {report['numbers']} numbers each; largest "
             f"relative difference {report['worst']:.2e} (tolerance {report['rtol']:g}; counts must be equal). "
             f"Points' compute seconds: CPU {report['seconds']['cpu']:.1f}, GPU {report['seconds']['gpu']:.1f}. "
             f"**{'AGREE' if report['ok'] else 'DISAGREE'}**"
             + (f"; off: {', '.join(report['off'][:12])}" if report["off"] else "")
             + (f"; missing points: {report['missing']}" if report["missing"] else "")
             + (f"; failed points: CPU {report['cpu_failures']}, GPU {report['gpu_failures']}"
                if report["cpu_failures"] or report["gpu_failures"] else ""), "",
             "| number | CPU (mean over points) | GPU | max relative difference |", "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -r["max_rel_diff"]):
        lines.append(f"| {r['number']} | {r['cpu']:.6g} | {r['gpu']:.6g} | {r['max_rel_diff']:.2e}"
                     f"{'' if r['ok'] else ' (off)'} |")
    return "\n".join(lines) + "\n"


def test_counts(xml_path):
    """``{"tests", "passed", "failed", "errors", "skipped", "skip_reasons"}`` from pytest's JUnit XML."""
    if not Path(xml_path).exists():
        return None
    root = ET.parse(xml_path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    c = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    reasons = sorted({sk.get("message", "") for s in suites for case in s for sk in case.findall("skipped")})
    return {"tests": c["tests"], "passed": c["tests"] - c["failures"] - c["errors"] - c["skipped"],
            "failed": c["failures"], "errors": c["errors"], "skipped": c["skipped"], "skip_reasons": reasons}


def summary(work, dry_run):
    work = Path(work)
    steps = []
    if (work / "steps.tsv").exists():
        for line in (work / "steps.tsv").read_text().splitlines():
            name, rc, seconds = line.split("\t")
            steps.append({"step": name, "rc": int(rc), "seconds": int(seconds)})
    read = lambda name: (work / name).read_text().strip() if (work / name).exists() else None  # noqa: E731
    out = {"dry_run": dry_run, "steps": steps, "gpu": read("nvidia-smi.txt"), "packages": read("packages.txt"),
           "tests": test_counts(work / "tests.xml")}
    for name in ("keskar_f64", "keskar_quick"):
        path = work / f"{name}.json"
        out[name] = json.loads(path.read_text())["report"] if path.exists() else None
    bench = work / "bench_gpu.json"
    out["bench"] = json.loads(bench.read_text()) if bench.exists() else None
    t = out["tests"]
    # On the GPU every GPU test must run and pass; in a dry run (no CuPy) they are collected and skip.
    tests_ok = t is not None and t["failed"] == 0 and t["errors"] == 0 and t["tests"] > 0 and (
        dry_run or t["skipped"] == 0)
    out["verdict"] = {"steps": all(s["rc"] == 0 for s in steps), "tests": tests_ok,
                      "keskar_f64": bool(out["keskar_f64"] and out["keskar_f64"]["ok"]),
                      "bench": out["bench"] is not None}
    out["ok"] = all(out["verdict"].values())
    return out


def summary_markdown(s, work):
    lines = [f"# GPU check{' (DRY RUN: NumPy in place of CuPy, tiny sizes)' if s['dry_run'] else ''}: "
             f"**{'PASSED' if s['ok'] else 'FAILED'}**", "",
             "| part | result |", "|---|---|"]
    for k, v in s["verdict"].items():
        lines.append(f"| {k} | {'ok' if v else 'FAILED'} |")
    lines += ["", "GPU: " + (s["gpu"] or "n/a (no nvidia-smi)"), "", "## Steps", "", "| step | exit | seconds |",
              "|---|---|---|"]
    lines += [f"| {st['step']} | {st['rc']} | {st['seconds']} |" for st in s["steps"]]
    t = s["tests"]
    lines += ["", "## GPU tests (`pytest -m gpu`)", "",
              "no report" if t is None else f"{t['tests']} tests: {t['passed']} passed, {t['failed']} failed, "
              f"{t['errors']} errors, {t['skipped']} skipped" + (f" ({'; '.join(t['skip_reasons'])})"
                                                                  if t["skip_reasons"] else ""), ""]
    for name in ("keskar_f64", "keskar_quick"):
        md = Path(work) / f"{name}.md"
        lines += [md.read_text() if md.exists() else f"## {name}\n\nnot run{' (dry run)' if s['dry_run'] else ''}\n"]
    bench = Path(work) / "bench_gpu.md"
    lines += [bench.read_text() if bench.exists() else "## Benchmark\n\nnot run\n", "",
              "## Packages", "", "```", s["packages"] or "n/a", "```", ""]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="a run on the GPU against the same run on the CPU")
    c.add_argument("cpu")
    c.add_argument("gpu")
    c.add_argument("--rtol", type=float, required=True, help="largest relative difference allowed")
    c.add_argument("--title", default="GPU against CPU")
    s = sub.add_parser("summary", help="the one page of a gpu_check.sh run")
    s.add_argument("work")
    s.add_argument("--dry-run", action="store_true")
    for q in (c, s):
        q.add_argument("--json", required=True)
        q.add_argument("--md", required=True)
    args = p.parse_args(argv)
    if args.command == "compare":
        rows, report = compare(args.cpu, args.gpu, args.rtol)
        Path(args.json).write_text(json.dumps({"report": report, "rows": rows}, indent=1))
        Path(args.md).write_text(compare_markdown(rows, report, args.title))
        print(compare_markdown(rows, report, args.title))
        return 0 if report["ok"] else 1
    out = summary(args.work, args.dry_run)
    Path(args.json).write_text(json.dumps(out, indent=1, default=float))
    Path(args.md).write_text(summary_markdown(out, args.work))
    print(summary_markdown(out, args.work)[:3000])
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
