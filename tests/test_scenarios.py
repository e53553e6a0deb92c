"""The scenarios: the registry and configs, and every scenario's --quick run, checked on its results (accuracies
above chance, curvature finite and ordered where quick mode is reliable, the outliers of the spectrum), its summary
and its figures. MNIST comes from $MINISGD_DATA (see tests/data/conftest.py for the fallback)."""
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from minisgd import scenarios, sweep
from minisgd.scenarios import batch_sweep, keskar_mnist, parse_overrides, spectrum

# where MNIST is: $MINISGD_DATA, else ../shared/data beside the checkout (as tests/data/conftest.py)
DATA_ROOT = Path(os.environ.get("MINISGD_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
needs_mnist = pytest.mark.skipif(not (DATA_ROOT / "mnist").is_dir(),
                                 reason=f"MNIST not found in {DATA_ROOT / 'mnist'} (set MINISGD_DATA)")


# ---- registry and configs ---------------------------------------------------------------------------------------

def test_registry():
    assert scenarios.names() == ["keskar-mnist", "batch-sweep", "spectrum", "noise-scaling", "true-gradient",
                                 "stability", "noise-temperature", "remedies", "reparametrization",
                                 "flatness-measures"]
    assert scenarios.get("keskar_mnist") is keskar_mnist.SCENARIO
    with pytest.raises(KeyError, match="keskar-mnist, batch-sweep, spectrum, noise-scaling"):
        scenarios.get("nope")
    with pytest.raises(ValueError, match="already registered"):
        scenarios.register(scenarios.Scenario(**{**spectrum.SCENARIO.__dict__, "description": "another"}))


@pytest.mark.parametrize("name", scenarios.names())
def test_configs_and_grids(name):
    sc = scenarios.get(name)
    full, quick = sc.config(), sc.config(quick=True)
    for key, value in sc.quick.items():
        assert getattr(quick, key) == value
    for config in (full, quick):
        points = sc.grid(config)
        keys = sweep.point_keys(points)
        assert len(set(keys)) == len(points) > 0
        assert {p["seed"] for p in points} == set(range(config.seed, config.seed + config.seeds))
        assert all(isinstance(p, dict) and "device" in p for p in points)
    assert sc.config(seeds=2, seed=7).seed == 7
    with pytest.raises(KeyError, match="valid keys: .*seeds"):
        sc.config(not_a_key=1)


def test_full_mode_sizes():
    """What the full runs are (the README's numbers depend on them)."""
    k = keskar_mnist.Config()
    assert (k.hidden, k.small_batch, k.large_fraction, k.epochs, k.seeds, k.eps, k.subspace_dim) == \
        ((512, 512), 256, 0.1, 20, 5, (1e-3, 5e-4), 100)
    b = batch_sweep.Config()
    assert batch_sweep.batch_sizes(b) == [32, 64, 128, 256, 512, 1024, 2048, 4096, 8192]
    assert batch_sweep.batch_sizes(batch_sweep.Config(n_train=1000, min_batch=100)) == [100, 200, 400, 800, 1000]
    assert spectrum.Config().classes == (2, 5, 10)


def test_parse_overrides_uses_the_field_types():
    parsed = parse_overrides(keskar_mnist.Config, ["epochs=30", "adam_lr=3e-4", "hidden=256,128", "n_train=none",
                                                   "eps=0.001", "optimizers=adam", "activation=tanh"])
    assert parsed == {"epochs": 30, "adam_lr": 3e-4, "hidden": (256, 128), "n_train": None, "eps": (1e-3,),
                      "optimizers": ("adam",), "activation": "tanh"}
    assert parse_overrides(batch_sweep.Config, ["target_loss=none", "target-loss=0.1"]) == {"target_loss": 0.1}
    with pytest.raises(KeyError, match="unknown config key 'epoch'; valid keys: hidden, activation"):
        parse_overrides(keskar_mnist.Config, ["epoch=3"])
    with pytest.raises(ValueError, match="epochs takes an integer"):
        parse_overrides(keskar_mnist.Config, ["epochs=2.5"])
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(keskar_mnist.Config, ["epochs"])
    with pytest.raises(ValueError, match="optimizers must be among"):
        keskar_mnist.SCENARIO.config(optimizers=("adamw",))
    with pytest.raises(ValueError, match="classes must lie in 2 .. 10"):
        spectrum.SCENARIO.config(classes=(1, 10))


def test_outlier_count():
    values = np.concatenate([[9.0, 8.0, 7.5], np.linspace(1.0, 0.5, 40), -np.ones(3)])
    assert spectrum.count_outliers(values, num_classes=3) == (3, pytest.approx(7.5))
    stats = spectrum.spectrum_stats(values, 3)
    assert stats["outliers"] == 3 and stats["negative_count"] == 3 and stats["bulk_edge"] == 1.0
    assert stats["negative_mass"] == pytest.approx(3 / np.abs(values).sum())


# ---- the quick runs ------------------------------------------------------------------------------------------------

@contextmanager
def quick_sweep(name, folder):
    """Scenario ``name``'s --quick sweep into ``folder``, MNIST read offline from DATA_ROOT, on a pool of 2 worker
    processes with one BLAS thread each (as `minisgd run --jobs 2`: robust to a busy machine, where a 2-thread BLAS
    slows down many times): yields ``(config, report)``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINISGD_DATA", str(DATA_ROOT))
        mp.setenv("MINISGD_OFFLINE", "1")
        with sweep.process_pool(2, threads=1) as pool:
            sc = scenarios.get(name)
            config = sc.config(quick=True)
            yield config, sweep.run_sweep(sc, config, folder, executor=pool)


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """Each scenario's --quick sweep, run once for this module on a pool of 2 worker processes with one BLAS thread
    each (as `minisgd run --jobs 2` does: robust to a busy machine, where a 2-thread BLAS slows down many times)."""
    cache = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINISGD_DATA", str(DATA_ROOT))
        mp.setenv("MINISGD_OFFLINE", "1")
        with sweep.process_pool(2, threads=1) as pool:
            def get(name):
                if name not in cache:
                    sc = scenarios.get(name)
                    out = tmp_path_factory.mktemp(name)
                    cache[name] = sc.config(quick=True), sweep.run_sweep(sc, sc.config(quick=True), out,
                                                                         executor=pool)
                return cache[name]
            yield get


def _check_run_folder(report):
    assert report.ok, [f["error"] for f in report.failures]
    out = Path(report.out)
    assert (out / "results.json").is_file() and (out / "results.npz").is_file()
    assert report.figures and all(p.read_bytes()[:4] == b"\x89PNG" for p in report.figures)
    assert "The summary failed" not in report.summary and "Drawing the figures failed" not in report.summary


@needs_mnist
def test_keskar_mnist_quick(quick_runs):
    config, report = quick_runs("keskar-mnist")
    _check_run_folder(report)
    assert len(report.records) == len(config.optimizers) * config.seeds
    eps_keys = [f"{space}_{eps:g}" for space in ("full", "subspace") for eps in config.eps]
    for rec in report.records:
        r = rec["result"]
        assert r["lb"]["batch_size"] == round(0.1 * config.n_train) and r["sb"]["batch_size"] == 256
        for regime in ("sb", "lb"):
            m = r[regime]
            assert m["steps"] == config.epochs * -(-config.n_train // m["batch_size"])
            assert 0.5 < m["test_acc"] <= 1 and 0.5 < m["train_acc"] <= 1  # chance is 0.1
            assert np.isfinite(m["train_loss"]) and m["train_loss"] < np.log(10)
            assert m["top_eigenvalue"] > 0 and m["trace"] > m["top_eigenvalue"]
            for key in eps_keys:
                assert np.isfinite(m[key]) and m[key] >= 0
            assert m[f"full_{config.eps[0]:g}"] >= m[f"full_{config.eps[1]:g}"]  # a larger box rises higher
        par = r["parametric"]
        assert par["alphas"].shape == par["train_loss"].shape == par["test_accuracy"].shape == (config.alphas,)
        assert np.all((par["test_accuracy"] >= 0) & (par["test_accuracy"] <= 1))
        i0 = int(np.argmin(np.abs(par["alphas"])))
        assert par["test_accuracy"][i0] == pytest.approx(r["sb"]["test_acc"], abs=2e-3)  # alpha = 0 is SB (float32)
    # robust even in quick mode: with Adam the LB minimizer is sharper, and the line rises faster beyond it
    adam = [rec["result"] for rec in report.records if rec["point"]["optimizer"] == "adam"]
    assert all(r["lb"]["top_eigenvalue"] > r["sb"]["top_eigenvalue"] for r in adam)
    for r in adam:
        a, loss = r["parametric"]["alphas"], r["parametric"]["train_loss"]
        beyond_lb = loss[np.argmin(np.abs(a - 1.5))] - loss[np.argmin(np.abs(a - 1))]
        beyond_sb = loss[np.argmin(np.abs(a + 0.5))] - loss[np.argmin(np.abs(a))]
        assert beyond_lb > beyond_sb
    for table in ("Accuracy (layout of the paper's Table 2)", "Epsilon-sharpness", "Top Hessian eigenvalue"):
        assert table in report.summary
    assert {p.name for p in report.figures} == {"parametric.png", "sb_vs_lb.png"}


@needs_mnist
def test_batch_sweep_quick(quick_runs):
    config, report = quick_runs("batch-sweep")
    _check_run_folder(report)
    sizes = batch_sweep.batch_sizes(config)
    assert sizes[0] == 32 and sizes[-1] == config.n_train
    assert len(report.records) == len(sizes) * config.seeds
    for rec in report.records:
        r = rec["result"]
        assert r["reached_target"] and r["train_loss"] <= config.target_loss * 1.001
        assert 0.5 < r["test_acc"] <= 1
        assert r["top_eigenvalue"] > 0 and np.isfinite(r["sharpness"]) and r["sharpness"] >= 0
        assert r["trace"] > r["top_eigenvalue"]
    _, lam = batch_sweep._by_batch(config, report.records, "top_eigenvalue")
    _, steps = batch_sweep._by_batch(config, report.records, "steps")
    assert np.all(lam[:, -1] > lam[:, 0])  # full batch sharper than B = 32, every seed, at the same loss
    assert np.all(np.diff(steps.mean(0)) < 0)  # larger batches need fewer updates to the same loss
    assert "| B | seeds | updates" in report.summary


@needs_mnist
def test_spectrum_quick(quick_runs):
    config, report = quick_runs("spectrum")
    _check_run_folder(report)
    assert len(report.records) == len(config.classes) * config.seeds
    for rec in report.records:
        K, r = rec["point"]["num_classes"], rec["result"]
        P = r["num_params"]
        assert P == (49 + 1) * config.hidden[0] + (config.hidden[0] + 1) * K
        for regime in ("sb", "lb"):
            m = r[regime]
            eig = m["eigenvalues"]
            assert all(eig[part].shape == (P,) for part in spectrum.PARTS)
            # Gauss-Newton is PSD; H = G + R, so the traces add up
            assert eig["gauss_newton"].min() > -1e-10 * eig["gauss_newton"].max()
            assert eig["full"].sum() == pytest.approx(eig["gauss_newton"].sum() + eig["residual"].sum(), rel=1e-8)
            assert m["full"]["outliers"] == K - 1  # the class structure: K - 1 outliers
            assert m["full"]["outlier_gap"] > 1.5
            assert 0 <= m["full"]["negative_mass"] < 0.5 and m["full"]["negative_count"] > 0
            assert m["gauss_newton"]["negative_count"] == 0
            assert 0.5 < m["test_acc"] <= 1
    names = {p.name for p in report.figures}
    assert {"spectrum_K10.png", "gauss_newton_vs_residual_K10.png", "outliers_vs_classes.png"} == names
