r"""The experiments users run, by name: ``minisgd list``, ``minisgd run NAME``, ``python scenarios/NAME.py``.

A scenario is a :class:`Scenario`: a commented config dataclass whose defaults are the full-size run, a set of
``quick`` overrides (about a minute on a 2-core machine; what the tests run), the ranges of its keys (``checks``),
and four functions:

* ``grid(config) -> [point, ...]``: each point a plain dict of config values and a ``seed``;
* ``run_point(point) -> dict``: pure and top-level (it runs in a worker process): numbers and NumPy arrays out,
  no file written, nothing printed;
* ``summarize(config, records) -> (tables, markdown)``: ``records`` are the finished points, dicts with ``key``,
  ``point``, ``result``; ``tables`` maps a table name to a list of row dicts;
* ``figures(config, records) -> {name: matplotlib Figure}``, drawn with :mod:`minisgd.plotting`.

:mod:`minisgd.sweep` runs the grid and writes the run folder. To add a scenario, write ``minisgd/experiments/NAME.py``
ending in ``SCENARIO = Scenario(...)`` and add it to :data:`SCENARIOS` below (or call :func:`register`).

Every config is checked key by key before anything runs (:func:`check_config`): its type (from the field's
annotation: integers, finite numbers, strings, non-empty tuples of them, ``None`` only where the annotation allows it)
and its range. By default an integer key is ``>= 1`` (sizes, counts, epochs, seeds) and a float key ``> 0`` (rates,
scales, tolerances); keys shared by most scenarios have theirs in :data:`COMMON`, and a scenario declares the rest
beside its config dataclass as ``CHECKS = {key: check}`` (``at_least(0)``, ``between(0, 1, low_open=True)``,
``one_of("adam", "sgd")``, ``ANY``). Rules between keys stay in the dataclass's ``__post_init__``. Every failure is a
:class:`~minisgd.errors.ConfigError` whose message starts with the key.
"""
import math
import numbers
import types
import typing
from dataclasses import dataclass, field, fields, replace

from ..core.activations import NAMES as ACTIVATIONS
from ..core.mlp import INIT_SCHEMES
from ..errors import ConfigError


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
    checks: dict = field(default_factory=dict)  # key -> Check, where a key's range is not the default (see above)
    needs_mnist: bool = True  # reads MNIST: `minisgd run` checks (or downloads) it before the first point

    def config(self, quick=False, **overrides):
        """The config: the full-size defaults, then the quick overrides if asked, then ``overrides``; each key
        checked (:meth:`check`) before the dataclass's own ``__post_init__`` sees it."""
        values = dict(self.quick) if quick else {}
        values.update(overrides)
        unknown = sorted(set(values) - {f.name for f in fields(self.config_class)})
        if unknown:
            raise KeyError(f"unknown config key(s) {unknown} for scenario {self.name!r}; "
                           f"valid keys: {', '.join(config_keys(self.config_class))}")
        defaults = self.config_class()
        check_config(self.config_class, {**{f.name: getattr(defaults, f.name) for f in fields(defaults)}, **values},
                     self.checks)
        return replace(defaults, **values)

    def check(self, config):
        """Raise :class:`~minisgd.errors.ConfigError`, naming the key, unless every key of ``config`` has its type
        and range and the grid has a point."""
        check_config(self.config_class, {f.name: getattr(config, f.name) for f in fields(config)}, self.checks)
        if not self.grid(config):
            raise ConfigError(f"the config of {self.name} makes an empty grid: nothing to run")


def config_keys(config_class):
    return [f.name for f in fields(config_class)]


# ---- the type and range of every key ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """What a config value may be: ``test(value) -> bool``, and ``text`` saying it for the message ("> 0")."""

    test: typing.Callable
    text: str

    def __call__(self, value):
        return bool(self.test(value))


def at_least(low):
    return Check(lambda v: v >= low, f">= {low:g}")


def above(low):
    return Check(lambda v: v > low, f"> {low:g}")


def between(low, high, low_open=False, high_open=False):
    """``low <= v <= high``, each end excluded when open: ``between(0, 1, low_open=True)`` is (0, 1]."""
    return Check(lambda v: (v > low if low_open else v >= low) and (v < high if high_open else v <= high),
                 f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}")


def one_of(*choices):
    return Check(lambda v: v in choices, "one of " + ", ".join(map(repr, choices)))


ANY = Check(lambda v: True, "")
DEFAULT_CHECKS = {int: at_least(1), float: above(0), str: ANY, bool: ANY}
# keys most scenarios share, with their ranges (MNIST: 60,000 training images, 28 x 28 pixels)
COMMON = {
    "seed": at_least(0),
    "device": one_of("cpu", "gpu"),
    "dtype": one_of("float32", "float64"),
    "activation": one_of(*ACTIVATIONS),
    "init": one_of(*INIT_SCHEMES),
    "n_train": between(1, 60000),
    "pool": one_of(1, 2, 4, 7, 14, 28),
}
_KINDS = {int: ("an integer", "integers"), float: ("a finite number", "finite numbers"), str: ("a string", "strings"),
          bool: ("true or false", "true or false values")}


def _is(value, kind):
    """``value`` is of the scalar ``kind``: an int is a valid float, a bool is neither."""
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is int:
        return isinstance(value, numbers.Integral)
    if kind is float:
        return isinstance(value, numbers.Real) and math.isfinite(value)
    return isinstance(value, kind)


def _expectation(key, hint, check=None):
    """``(kind, many, check, text)`` of a key annotated ``hint``: the scalar type, whether a tuple of them, the check
    (default: :data:`DEFAULT_CHECKS` of the type) and what the value must be, in words; ``None`` for annotations
    other than ``int``, ``float``, ``str``, ``bool``, tuples of them and ``X | None``."""
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    many = typing.get_origin(hint) in (tuple, list)
    kind = args[0] if many and args else hint
    if kind not in _KINDS:
        return None
    check = check or DEFAULT_CHECKS[kind]
    one, several = _KINDS[kind]
    if check.text.startswith("one of"):  # the choices say the type
        one, several = "", "values, each"
    if many:
        text = f"a non-empty list of {several} {check.text}".rstrip() + f" (on the command line: {key}=a,b,c)"
    else:
        text = f"{one} {check.text}".strip()
    return kind, many, check, text + (" or none" if optional else "")


def check_value(key, value, hint, check=None):
    """Raise :class:`~minisgd.errors.ConfigError` unless ``value`` has the type ``hint`` (``int``, ``float``,
    ``str``, ``bool``, ``tuple[X, ...]``, ``X | None``) and passes ``check`` (each item, for a tuple; default:
    :data:`DEFAULT_CHECKS` of its type). Other annotations are not checked."""
    expected = _expectation(key, hint, check)
    optional = type(None) in typing.get_args(hint)
    if expected is None or (value is None and optional):
        return
    kind, many, check, what = expected
    if many:
        ok = isinstance(value, (tuple, list)) and len(value) > 0 and all(_is(v, kind) and check(v) for v in value)
    else:
        ok = _is(value, kind) and check(value)
    if not ok:
        shown = "nothing" if value in ((), []) else repr(value)
        raise ConfigError(f"{key} must be {what}, got {shown}")


def describe_key(config_class, key, checks=None):
    """What ``key`` of ``config_class`` must be, in the words of the error for a bad value ("" if unchecked)."""
    hint = typing.get_type_hints(config_class)[key]
    expected = _expectation(key, hint, {**COMMON, **(checks or {})}.get(key))
    return "" if expected is None else expected[3]


def check_config(config_class, values, checks=None):
    """Check each ``key: value`` of ``values`` against ``config_class``'s annotation of the key and its check
    (``checks``, else :data:`COMMON`, else the default of its type); the first failure raises
    :class:`~minisgd.errors.ConfigError` naming the key."""
    hints = typing.get_type_hints(config_class)
    rules = {**COMMON, **(checks or {})}
    for key, value in values.items():
        check_value(key, value, hints[key], rules.get(key))


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
        if not math.isfinite(value) or value != int(value):
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
