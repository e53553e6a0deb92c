r"""The experiments users run, by name: ``minisgd list``, ``minisgd run NAME``, ``python scenarios/NAME.py``.

A scenario is a :class:`Scenario`: a commented config dataclass whose defaults are the full-size run, a set of
``quick`` overrides (about a minute on a 2-core machine; what the tests run), and four functions:

* ``grid(config) -> [point, ...]``: each point a plain dict of config values and a ``seed``;
* ``run_point(point) -> dict``: pure and top-level (it runs in a worker process): numbers and NumPy arrays out,
  no file written, nothing printed;
* ``summarize(config, records) -> (tables, markdown)``: ``records`` are the finished points, dicts with ``key``,
  ``point``, ``result``; ``tables`` maps a table name to a list of row dicts;
* ``figures(config, records) -> {name: matplotlib Figure}``, drawn with :mod:`minisgd.plotting`.

:mod:`minisgd.sweep` runs the grid and writes the run folder. To add a scenario, write ``minisgd/experiments/NAME.py``
ending in ``SCENARIO = Scenario(...)`` and add it to :data:`SCENARIOS` below (or call :func:`register`).
"""
import types
import typing
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Scenario:
    """One experiment: its name, a one-line description, its config class and quick overrides, its functions."""

    name: str  # what `minisgd run` takes, e.g. "keskar-mnist"
    description: str  # one line, for `minisgd list` and the summary
    config_class: type  # a frozen dataclass; its defaults are the full-size run
    quick: dict  # field -> value for --quick
    grid: typing.Callable
    run_point: typing.Callable
    summarize: typing.Callable
    figures: typing.Callable

    def config(self, quick=False, **overrides):
        """The config: the full-size defaults, then the quick overrides if asked, then ``overrides``."""
        values = dict(self.quick) if quick else {}
        values.update(overrides)
        unknown = sorted(set(values) - {f.name for f in fields(self.config_class)})
        if unknown:
            raise KeyError(f"unknown config key(s) {unknown} for scenario {self.name!r}; "
                           f"valid keys: {', '.join(config_keys(self.config_class))}")
        return replace(self.config_class(), **values)


def config_keys(config_class):
    return [f.name for f in fields(config_class)]


# ---- --set key=value: parse by the field's type -------------------------------------------------------------

def _parse(text, hint, key):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if text.strip().lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _parse(text, arg, key)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    if origin in (tuple, list) or hint in (tuple, list):
        item = args[0] if args else str
        parts = [p for p in text.replace(" ", "").strip("()[]").split(",") if p != ""]
        return tuple(_parse(p, item, key) for p in parts)
    if hint is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key} takes true or false, got {text!r}")
    if hint is int:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{key} takes an integer, got {text!r}") from None
        if value != int(value):
            raise ValueError(f"{key} takes an integer, got {text!r}")
        return int(value)
    if hint is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{key} takes a number, got {text!r}") from None
    if hint is str:
        return text
    raise ValueError(f"{key}: cannot parse values of type {hint!r} from the command line")


def parse_overrides(config_class, assignments):
    """``["key=value", ...]`` -> ``{key: value}``, each value parsed with its field's type (``int``, ``float``,
    ``bool``, ``str``, ``X | None`` with ``none``, tuples as ``a,b,c``). Unknown keys raise ``KeyError`` listing
    the valid ones; unparsable values raise ``ValueError``."""
    hints = typing.get_type_hints(config_class)
    valid = config_keys(config_class)
    out = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ValueError(f"--set takes key=value, got {item!r}")
        if key not in valid:
            raise KeyError(f"unknown config key {key!r}; valid keys: {', '.join(valid)}")
        out[key] = _parse(text.strip(), hints[key], key)
    return out


# ---- the registry ---------------------------------------------------------------------------------------------

SCENARIOS = {}


def register(scenario):
    """Add ``scenario`` to the registry (a name already taken is an error)."""
    if scenario.name in SCENARIOS and SCENARIOS[scenario.name] is not scenario:
        raise ValueError(f"a scenario named {scenario.name!r} is already registered")
    SCENARIOS[scenario.name] = scenario
    return scenario


def get(name):
    """The scenario called ``name`` (``keskar_mnist`` and ``keskar-mnist`` both work)."""
    key = name.replace("_", "-")
    if key not in SCENARIOS:
        raise KeyError(f"no scenario {name!r}; the scenarios are: {', '.join(SCENARIOS)} (see `minisgd list`)")
    return SCENARIOS[key]


def names():
    return list(SCENARIOS)


# each module builds its SCENARIO with the above
from . import (approximations, batch_sweep, flatness_measures, keskar_mnist, noise_scaling, noise_temperature,  # noqa: E402
               remedies, reparametrization, spectrum, stability, true_gradient)

for _module in (keskar_mnist, batch_sweep, spectrum, noise_scaling, true_gradient, stability, noise_temperature,
                remedies, reparametrization, flatness_measures, approximations):
    register(_module.SCENARIO)
