"""The ``minisgd`` command: list, run (options, --set, errors, resume, --jobs), show, demo, and the scripts in
scenarios/. The runs use the spectrum scenario shrunk with --set so that each takes seconds. Every first mistake
(a config value, the run folder, the data) is one line on stderr and exit code 2, before any point runs."""
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from minisgd import experiments, sweep
from minisgd._version import __version__
from minisgd.cli import main
from minisgd.errors import ConfigError
from support import DATA_ROOT, needs_mnist, plant_object_array

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
    assert "unknown config key 'epoch'" in err and "valid keys: network, batch_norm, hidden, activation" in err and "epochs" in err
    assert main(["run", "keskar-mnist", "--out", str(tmp_path), "--set", "epochs=many"]) == 2
    assert "epochs takes an integer, got 'many'" in capsys.readouterr().err
    assert main(["run", "no-such-scenario"]) == 2
    assert "the scenarios are: keskar-mnist, batch-sweep, spectrum" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was started


def test_set_help_lists_the_keys(capsys):
    assert main(["run", "batch-sweep", "--set", "help"]) == 0
    out = capsys.readouterr().out
    assert "target_loss = 0.01   (quick: 0.05)  [a finite number > 0 or none]" in out
    assert "n_train = 8192   (quick: 2048)  [an integer in [1, 60000]]" in out


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


# ---- first mistakes: one line, exit code 2, nothing started ------------------------------------------------------

def _assert_fails_clearly(capsys, args, *named):
    """``minisgd ARGS`` exits with 2 and one line on stderr that names each of ``named``; returns the line."""
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minisgd: error: "), captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    for word in named:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.mark.parametrize("args, key, says", [
    (["--set", "epochs=-5"], "epochs", "an integer >= 1, got -5"),
    (["--set", "adam_lr=0"], "adam_lr", "a finite number > 0"),
    (["--set", "adam_lr=nan"], "adam_lr", "got nan"),
    (["--set", "epochs=inf"], "epochs", "takes an integer, got 'inf'"),
    (["--set", "n_train=0"], "n_train", "in [1, 60000]"),
    (["--set", "hidden="], "hidden", "a non-empty list of integers >= 1"),
    (["--set", "hidden=128,0"], "hidden", "got (128, 0)"),
    (["--set", "large_fraction=0"], "large_fraction", "in (0, 1]"),
    (["--set", "optimizers=adam,rmsprop"], "optimizers", "one of 'adam', 'sgd'"),
    (["--set", "activation=relu6"], "activation", "one of 'identity', 'relu'"),
    (["--set", "target_loss=-1"], "target_loss", "> 0"),
    (["--seed", "-1"], "seed", ">= 0, got -1"),
    (["--seeds", "0"], "seeds", ">= 1, got 0"),
    (["--set", "epoch=3"], "epoch", "valid keys: network, batch_norm, hidden, activation"),
    (["--jobs", "0"], "--jobs", ">= 1"),
])
def test_a_bad_config_is_one_line_before_anything_runs(capsys, tmp_path, args, key, says):
    out = tmp_path / "run"
    line = _assert_fails_clearly(capsys, ["run", "keskar-mnist", "--quick", "--out", str(out), *args], key, says)
    assert line.split("minisgd: error: ")[1].startswith(key) or key == "epoch"  # the key first, but an unknown one
    assert not out.exists()  # no folder made, so none is locked to a bad config


def test_an_empty_list_of_classes_runs_nothing(capsys, tmp_path):
    _assert_fails_clearly(capsys, ["run", "spectrum", "--out", str(tmp_path / "run"), "--set", "classes="], "classes",
                   "non-empty")
    assert not (tmp_path / "run").exists()


def test_every_scenario_checks_its_keys():
    """The generic check covers every key of every scenario: the defaults (full and quick) pass, and for each key
    a value of the wrong type is refused, naming the key."""
    for name in experiments.names():
        sc = experiments.get(name)
        for config in (sc.config(), sc.config(quick=True)):
            sc.check(config)
        for key in experiments.config_keys(sc.config_class):
            with pytest.raises(ConfigError, match=f"^{key} must be"):
                sc.config(**{key: object()})


def test_the_run_folder_is_checked_first(capsys, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    _assert_fails_clearly(capsys, ["run", "spectrum", "--quick", "--out", str(a_file)], "--out", "is a file")
    _assert_fails_clearly(capsys, ["run", "spectrum", "--quick", "--out", str(a_file / "run")], "--out", "lies under",
                   str(a_file))


def test_a_read_only_run_folder(capsys, tmp_path):
    try:  # a folder this process cannot write in: /sys is read-only even for root
        with open("/sys/minisgd-probe", "w"):
            pass
        pytest.skip("/sys is writable here")
    except OSError:
        pass
    _assert_fails_clearly(capsys, ["run", "spectrum", "--quick", "--out", "/sys/minisgd-run"], "--out", "cannot write in /sys")


def test_missing_data_offline_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MINISGD_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MINISGD_OFFLINE", "1")
    _assert_fails_clearly(capsys, ["run", "spectrum", "--quick", "--out", str(tmp_path / "run")], str(tmp_path / "data"),
                   "not found", "unset MINISGD_OFFLINE", "the folder that contains 'mnist/'")
    assert not (tmp_path / "run").exists()


def test_a_failed_download_is_one_line_once(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MINISGD_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("MINISGD_OFFLINE", raising=False)
    monkeypatch.setenv("MINISGD_MNIST_MIRRORS", "http://127.0.0.1:9/")  # nothing listens on port 9
    _assert_fails_clearly(capsys, ["run", "spectrum", "--quick", "--out", str(tmp_path / "run")], "download failed",
                   "http://127.0.0.1:9/", "(3 attempts)", "a folder that contains a mnist/ folder")


def test_the_mnist_folder_itself_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MINISGD_DATA", str(tmp_path / "data" / "mnist"))
    _assert_fails_clearly(capsys, ["run", "spectrum", "--quick", "--out", str(tmp_path / "run")], "MINISGD_DATA",
                   f"MINISGD_DATA={tmp_path / 'data'}")
    assert not (tmp_path / "data").exists()  # no empty mnist/mnist/ left behind


def test_data_is_not_needed_by_true_gradient(tmp_path, monkeypatch):
    from minisgd import cli
    monkeypatch.setenv("MINISGD_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("MINISGD_OFFLINE", "1")
    args = type("Args", (), {"scheduler": None})()
    cli.check_data(experiments.get("true-gradient"), args)  # no error: it reads no MNIST
    with pytest.raises(ValueError, match="not found"):
        cli.check_data(experiments.get("spectrum"), args)


def test_debug_shows_the_traceback(capsys, tmp_path, monkeypatch):
    args = ["run", "keskar-mnist", "--out", str(tmp_path / "run"), "--set", "epochs=-5"]
    with pytest.raises(ConfigError, match="epochs must be"):
        main([*args, "--debug"])
    with pytest.raises(ConfigError, match="epochs must be"):
        main(["--debug", *args])
    monkeypatch.setenv("MINISGD_DEBUG", "1")
    with pytest.raises(ConfigError, match="epochs must be"):
        main(args)


def test_a_real_process_prints_one_line(tmp_path):
    env = {**os.environ, "MINISGD_DEBUG": ""}
    proc = subprocess.run([sys.executable, "-m", "minisgd.cli", "run", "keskar-mnist", "--quick", "--out",
                           str(tmp_path / "run"), "--set", "n_train=0"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == ["minisgd: error: n_train must be an integer in [1, 60000] or none, got 0"]


# ---- manners: --version, help for users, show on a folder of runs -------------------------------------------------

def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"minisgd {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "Keskar et al." in out and "minisgd run keskar-mnist --quick" in out and "MINISGD_DATA" in out
    assert "Library code" not in out and "this module" not in out


def _stored_run(folder, done, failed=0):
    """A spectrum run folder, made without running: ``done`` points stored, ``failed`` failures, of 2 points."""
    sc = experiments.get("spectrum")
    config = sc.config(quick=True, classes=(3,), seeds=2)
    points = sc.grid(config)
    keys = sweep.point_keys(points)
    sweep.prepare(folder, sc.name, config)
    for key, point in list(zip(keys, points))[:done]:
        sweep.write_point(folder, key, point, {"value": 1.0}, 0.1)
    for key, point in list(zip(keys, points))[done:done + failed]:
        sweep.write_failure(folder, key, point, "RuntimeError: boom", "Traceback ...")


def test_show_lists_the_runs_in_a_folder(capsys, tmp_path):
    _stored_run(tmp_path / "a-finished", done=2)
    _stored_run(tmp_path / "b-partial", done=1)
    _stored_run(tmp_path / "c-failed", done=1, failed=1)
    (tmp_path / "not-a-run").mkdir()
    assert main(["show", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [ln.split() for ln in lines[:3]]
    assert rows == [["a-finished", "spectrum", "finished", "2/2", "points"],
                    ["b-partial", "spectrum", "partial", "1/2", "points"],
                    ["c-failed", "spectrum", "failed", "1/2", "points"]]
    assert "resumes a partial one" in lines[-1]
    _assert_fails_clearly(capsys, ["show", str(tmp_path / "not-a-run")], "holds no run folders")
    _assert_fails_clearly(capsys, ["show", str(tmp_path / "nothing")], "is not a folder")


def test_a_failed_point_is_one_line_without_debug(capsys, tmp_path):
    from minisgd import cli
    failure = {"key": "seed=0", "point": {"seed": 0}, "error": "RuntimeError: boom", "traceback": "Traceback\n  x"}
    cli._failure_printer(tmp_path, debug=False)(failure)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"point seed=0 failed: RuntimeError: boom (traceback in {tmp_path / 'points' / 'seed=0.failed.json'})"]
    cli._failure_printer(tmp_path, debug=True)(failure)
    assert "Traceback" in capsys.readouterr().err


# ---- untrusted files: each refused in one line that names it -----------------------------------------------------

def test_crafted_files_are_refused_in_one_line_naming_the_file(capsys, tmp_path, monkeypatch):
    """Files crafted against their reader, read as a user reads them: a point's NPZ holding a pickled object (its
    checksums made to match), a config.json of a gigabyte (sparse: never read), MNIST files whose IDX header claims
    10^12 pixels. Each is one line naming the file; nothing is unpickled, read or allocated. (A crafted checkpoint
    manifest: tests/training/test_checkpoint.py.)"""
    runs = tmp_path / "runs"
    _stored_run(runs / "objects", done=2)
    npz = plant_object_array(runs / "objects" / "points" / "seed=0.json")
    assert main(["show", str(runs / "objects")]) == 1
    damaged = [line for line in capsys.readouterr().out.splitlines() if "damaged" in line]
    assert len(damaged) == 1 and damaged[0].startswith(f"damaged point seed=0: {npz}: not a readable NPZ")
    assert "holds Python objects" in damaged[0]

    _stored_run(runs / "huge", done=1)
    with open(runs / "huge" / "config.json", "wb") as fh:
        fh.truncate(1 << 30)
    _assert_fails_clearly(capsys, ["show", str(runs / "huge")], str(runs / "huge" / "config.json"),
                   "1,073,741,824 bytes, more than a run folder's config may hold")
    assert main(["show", str(runs)]) == 0  # the folder of runs lists each, the damaged ones as such
    rows = [line.split() for line in capsys.readouterr().out.strip().splitlines()[:2]]
    assert rows == [["huge", "?", "damaged", "0/?", "points"], ["objects", "spectrum", "damaged", "1/2", "points"]]

    data = tmp_path / "data" / "mnist"
    data.mkdir(parents=True)
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (data / stem).write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 10 ** 6, 1000, 1000))
    monkeypatch.setenv("MINISGD_DATA", str(data.parent))
    monkeypatch.setenv("MINISGD_OFFLINE", "1")
    _assert_fails_clearly(capsys, ["run", "spectrum", "--quick", "--out", str(tmp_path / "run")],
                   f"{data / 'train-images-idx3-ubyte'}: truncated: the header says shape (1000000, 1000, 1000) "
                   "(1000000000000 bytes of data) but only 0 bytes follow")
