"""The ``minisgd`` command: list, run (options, --set, errors, resume, --jobs), show, demo, and the scripts in
scenarios/. The runs use the spectrum scenario shrunk with --set so that each takes seconds."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minisgd import experiments
from minisgd.cli import main
from support import DATA_ROOT, needs_mnist

REPO = Path(__file__).resolve().parents[1]
TINY = ["--seeds", "1", "--set", "classes=3", "n_train=600", "hidden=8", "epochs=5"]  # a spectrum run of seconds


@pytest.fixture
def offline_mnist(monkeypatch):
    monkeypatch.setenv("MINISGD_DATA", str(DATA_ROOT))
    monkeypatch.setenv("MINISGD_OFFLINE", "1")


def test_list(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == experiments.names()  # the order is pinned in experiments/test_registry.py
    assert "[10 points; --quick: 2]" in lines[0]


def test_run_rejects_unknown_keys_and_bad_values(capsys, tmp_path):
    assert main(["run", "keskar-mnist", "--out", str(tmp_path), "--set", "epoch=3"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'epoch'" in err and "valid keys: hidden, activation" in err and "epochs" in err
    assert main(["run", "keskar-mnist", "--out", str(tmp_path), "--set", "epochs=many"]) == 2
    assert "epochs takes an integer, got 'many'" in capsys.readouterr().err
    assert main(["run", "no-such-scenario"]) == 2
    assert "the scenarios are: keskar-mnist, batch-sweep, spectrum" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was started


def test_set_help_lists_the_keys(capsys):
    assert main(["run", "batch-sweep", "--set", "help"]) == 0
    out = capsys.readouterr().out
    assert "target_loss = 0.01  [float | None]" in out and "(quick: 2048)" in out


def test_gpu_without_cupy_is_a_clear_error(capsys, tmp_path):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed")
    except ImportError:
        pass
    assert main(["run", "spectrum", "--device", "gpu", "--out", str(tmp_path)]) == 2
    assert "CuPy" in capsys.readouterr().err


@needs_mnist
def test_run_show_and_resume(capsys, tmp_path, offline_mnist):
    out = tmp_path / "run"
    assert main(["run", "spectrum", "--quick", "--out", str(out), *TINY]) == 0
    captured = capsys.readouterr()
    assert "# spectrum" in captured.out and "| K | regime |" in captured.out
    assert "1/1 points finished (1 computed now, 0 found done)" in captured.err
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["classes"] == [3] and config["n_train"] == 600 and config["seeds"] == 1
    assert (out / "figures" / "spectrum_K3.png").is_file()
    # the same command again: nothing recomputed
    assert main(["run", "spectrum", "--quick", "--out", str(out), *TINY]) == 0
    assert "(0 computed now, 1 found done)" in capsys.readouterr().err
    # another config into the same folder: refused, naming the key
    assert main(["run", "spectrum", "--quick", "--out", str(out), *TINY, "epochs=6"]) == 2
    assert "epochs changed" in capsys.readouterr().err
    assert main(["show", str(out)]) == 0
    assert "| K | regime |" in capsys.readouterr().out
    assert main(["show", str(tmp_path / "nothing")]) == 2


@needs_mnist
def test_run_with_jobs_and_plots(capsys, tmp_path, offline_mnist):
    out, plots = tmp_path / "run", tmp_path / "plots"
    args = ["run", "spectrum", "--quick", "--out", str(out), "--jobs", "2", "--plots", str(plots), "--seeds", "2",
            *TINY[2:]]
    assert main(args) == 0
    assert "2/2 points finished" in capsys.readouterr().err
    assert sorted(p.name for p in plots.iterdir()) == ["run_gauss_newton_vs_residual_K3.png", "run_spectrum_K3.png"]


@needs_mnist
def test_scenario_script_is_the_run_command(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "MINISGD_DATA": str(DATA_ROOT), "MINISGD_OFFLINE": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "scenarios" / "spectrum.py"), "--quick", "--out", str(out),
                           *TINY], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "# spectrum" in proc.stdout and (out / "summary.md").is_file()


def test_demo_still_works(capsys):
    assert main(["demo", "--examples", "64", "--hidden", "4", "--inputs", "3", "--classes", "3"]) == 0
    assert "OK: the exact Hessian matches finite differences" in capsys.readouterr().out
