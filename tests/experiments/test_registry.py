"""The experiments' registry, their configs and grids, and parsing --set values by the config's field types."""

import numpy as np
import pytest

from minisgd.errors import ConfigError
from minisgd import sweep
from minisgd import experiments
from minisgd.experiments import batch_sweep, keskar_mnist, parse_overrides, spectrum


# ---- registry and configs ---------------------------------------------------------------------------------------

def test_registry():
    assert experiments.names() == ["keskar-mnist", "batch-sweep", "spectrum", "noise-scaling", "true-gradient",
                                 "stability", "noise-temperature", "remedies", "reparametrization",
                                 "flatness-measures", "approximations"]
    assert experiments.get("keskar_mnist") is keskar_mnist.SCENARIO
    with pytest.raises(KeyError, match="keskar-mnist, batch-sweep, spectrum, noise-scaling"):
        experiments.get("nope")
    with pytest.raises(ValueError, match="already registered"):
        experiments.register(experiments.Scenario(**{**spectrum.SCENARIO.__dict__, "description": "another"}))


@pytest.mark.parametrize("name", experiments.names())
def test_configs_and_grids(name):
    sc = experiments.get(name)
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
    with pytest.raises(KeyError, match="unknown config key 'epoch'; valid keys: network, batch_norm, hidden, activation"):
        parse_overrides(keskar_mnist.Config, ["epoch=3"])
    with pytest.raises(ValueError, match="epochs takes an integer"):
        parse_overrides(keskar_mnist.Config, ["epochs=2.5"])
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(keskar_mnist.Config, ["epochs"])
    with pytest.raises(ConfigError, match="optimizers must be a non-empty list of values, each one of 'adam', 'sgd'"):
        keskar_mnist.SCENARIO.config(optimizers=("adamw",))
    with pytest.raises(ConfigError, match=r"classes must be a non-empty list of integers in \[2, 10\]"):
        spectrum.SCENARIO.config(classes=(1, 10))


def test_outlier_count():
    values = np.concatenate([[9.0, 8.0, 7.5], np.linspace(1.0, 0.5, 40), -np.ones(3)])
    assert spectrum.count_outliers(values, num_classes=3) == (3, pytest.approx(7.5))
    stats = spectrum.spectrum_stats(values, 3)
    assert stats["outliers"] == 3 and stats["negative_count"] == 3 and stats["bulk_edge"] == 1.0
    assert stats["negative_mass"] == pytest.approx(3 / np.abs(values).sum())




# ---- the type and range of every key ------------------------------------------------------------------------------

def test_check_value_by_type_and_range():
    from minisgd.experiments import at_least, between, check_value, one_of
    check_value("n", 3, int)
    check_value("n", np.int64(3), int)  # NumPy integers are integers
    check_value("lr", 1, float)  # an integer is a number
    check_value("n", None, int | None)
    check_value("xs", (0.5, 1.0), tuple[float, ...], between(0, 1, low_open=True))
    check_value("anything", object(), object)  # annotations other than int, float, str, bool, tuples: not checked
    for key, value, hint, check, message in [
        ("n", True, int, None, "n must be an integer >= 1, got True"),  # a bool is not a count
        ("n", 2.5, int, None, "n must be an integer >= 1, got 2.5"),
        ("n", None, int, None, "n must be an integer >= 1, got None"),
        ("lr", float("inf"), float, None, "lr must be a finite number > 0, got inf"),
        ("lr", "0.1", float, None, "lr must be a finite number > 0, got '0.1'"),
        ("k", 0, int, at_least(2), "k must be an integer >= 2, got 0"),
        ("f", 0.0, float | None, between(0, 1, low_open=True), r"f must be a finite number in \(0, 1\] or none, got 0.0"),
        ("xs", (), tuple[int, ...], None, "xs must be a non-empty list of integers >= 1 .*xs=a,b,c.*got nothing"),
        ("xs", [1, -1], tuple[int, ...], None, r"xs must be .* got \[1, -1\]"),
        ("opt", "rmsprop", str, one_of("adam", "sgd"), "opt must be one of 'adam', 'sgd', got 'rmsprop'"),
        ("flag", 1, bool, None, "flag must be true or false, got 1"),
    ]:
        with pytest.raises(ConfigError, match=f"^{message}$"):
            check_value(key, value, hint, check)


def test_the_declared_checks_name_real_keys():
    """A check declared for a key the config does not have would check nothing: every CHECKS key is a field."""
    for name in experiments.names():
        sc = experiments.get(name)
        assert set(sc.checks) <= set(experiments.config_keys(sc.config_class)), name
