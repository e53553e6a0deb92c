"""benchmarks/gpu_check.sh, rehearsed: ``DRY_RUN=1`` runs every step of the GPU machine's one command with NumPy in
place of CuPy and tiny sizes (wheels installed into a fresh target, MNIST read from the carried folder, the GPU
tests collected, keskar-mnist on both "devices" compared, the benchmark, the summary), so that the script cannot
rot between the visits of a GPU machine."""
import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile

import pytest

from support import DATA_ROOT, REPO, needs_mnist

MNIST_GZ = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz")


def probe_wheel(folder):
    """A minimal pure-Python wheel (``minisgd_wheel_probe``), for a checkout where benchmarks/gpu_prepare.sh (which
    downloads the real ones) has not run: it proves the install into a fresh target, not the packages."""
    folder.mkdir(parents=True)
    files = {"minisgd_wheel_probe/__init__.py": b"",
             "minisgd_wheel_probe-0.0.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: minisgd-wheel-probe\n"
                                                               b"Version: 0.0.0\n",
             "minisgd_wheel_probe-0.0.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: "
                                                            b"true\nTag: py3-none-any\n"}
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
              f"{len(data)}" for name, data in files.items()]
    files["minisgd_wheel_probe-0.0.0.dist-info/RECORD"] = "\n".join(
        record + ["minisgd_wheel_probe-0.0.0.dist-info/RECORD,,"]).encode()
    with zipfile.ZipFile(folder / "minisgd_wheel_probe-0.0.0-py3-none-any.whl", "w") as whl:
        for name, data in files.items():
            whl.writestr(name, data)
    return "minisgd_wheel_probe"


@needs_mnist
def test_the_dry_run_passes_every_step(tmp_path):
    if not all((DATA_ROOT / "mnist" / name).is_file() for name in MNIST_GZ):
        pytest.skip(f"the script carries MNIST's .gz files; {DATA_ROOT / 'mnist'} has them uncompressed")
    wheels, package = REPO / ".whl", "array_api_compat"
    if not list(wheels.glob("*.whl")):
        wheels = tmp_path / "wheels"
        package = probe_wheel(wheels)
    data = tmp_path / "carried"  # as the checkout's .mnist/: a folder holding mnist/
    (data / "mnist").mkdir(parents=True)
    for name in MNIST_GZ:
        os.symlink(DATA_ROOT / "mnist" / name, data / "mnist" / name)
    out = tmp_path / "out"
    env = {**os.environ, "DRY_RUN": "1", "OUT": str(out), "PYTHON": sys.executable, "WHEELS": str(wheels),
           "DATA": str(data), "BUDGET_S": "300"}
    env.pop("MINISGD_DATA", None)  # the script must point minisgd at the carried copy itself
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], env=env, capture_output=True,
                          text=True, timeout=480)
    log = (out / "log").read_text()
    assert proc.returncode == 0, log[-5000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] and summary["dry_run"], summary["verdict"]
    assert [s["step"] for s in summary["steps"]] == ["install", "tests", "keskar_f64_cpu", "keskar_f64_gpu",
                                                     "keskar_f64_compare", "bench"]
    installed = next(line for line in log.splitlines() if line.startswith("installed: "))
    assert package in installed.split()
    assert f"MINISGD_DATA {data}" in log
    assert summary["tests"]["tests"] >= 60 and summary["tests"]["failed"] == 0  # the GPU tests are collected
    assert summary["keskar_f64"]["ok"] and summary["keskar_f64"]["numbers"] >= 30
    bench = json.loads((out / "bench_gpu.json").read_text())
    assert bench["dry_run"] and {"hessian", "lanczos", "step"} <= set(bench)
    assert all(row["status"] == "ok" for key in ("hessian", "lanczos", "step") for row in bench[key]
               if row["device"] != "JAX"), bench
    assert (out / "summary.md").read_text().startswith("# GPU check (DRY RUN")
