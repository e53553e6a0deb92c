"""The package's shape, checked: imports point one way, `import minisgd` loads the library alone, and the tests
mirror the modules.

The layers, top to bottom (a module may import from its own layer and the layers below, never above):

    interface     cli, sweep, __main__
    experiments   the scenarios
    plotting      figures from numbers (the experiments draw with it; it imports nothing of minisgd)
    api           minisgd/__init__.py: the public names, re-exported from below
    training      optimizers, sampling, schedules, train, checkpoints, callbacks, injection
    theory        closed forms (noise, linear stability, temperature, rescalings, teacher-student)
    curvature     spectra, sharpness, landscapes
    core, data    the hand-derived math; the data (which knows no model)
    base          backend, errors, testing, _version

Imports are read from the source (every ``import`` and ``from ... import``, at module level or inside functions),
so a lazy import that points up is caught too.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

import minisgd

PACKAGE = Path(minisgd.__file__).parent

LAYERS = {"interface": 8, "experiments": 7, "plotting": 6, "api": 5, "training": 4, "theory": 3, "curvature": 2,
          "core": 1, "data": 1, "base": 0}
TOP_LEVEL = {"cli": "interface", "sweep": "interface", "__main__": "interface", "plotting": "plotting",
             "backend": "base", "threads": "base", "errors": "base", "testing": "base", "_version": "base"}
# core and data sit side by side and must not know each other; nothing in one imports the other.
SEPARATE = {("core", "data"), ("data", "core")}


def part_of(module):
    """'minisgd.core.mlp' -> 'core'; 'minisgd.cli' -> 'interface'."""
    parts = module.split(".")
    if len(parts) == 1:
        return "api"
    return TOP_LEVEL.get(parts[1], parts[1])


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts)
        yield (name[: -len(".__init__")] if name.endswith(".__init__") else name), path


def imported_modules(name, path):
    """Every minisgd module ``name`` imports (resolving relative imports; ``from pkg import mod`` counts as mod)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "minisgd")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").split(".")[0] == "minisgd":
                target = node.module
            else:
                continue
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                known = {m for m, _ in modules()}
                yield candidate if candidate in known else target


@pytest.mark.parametrize("name, path", list(modules()), ids=[m for m, _ in modules()])
def test_imports_point_down(name, path):
    here = part_of(name)
    upward = []
    for target in imported_modules(name, path):
        there = part_of(target)
        if (here, there) in SEPARATE or LAYERS[there] > LAYERS[here]:
            upward.append(f"{target} ({there})")
    assert not upward, f"{name} ({here}) imports from above or beside it: {upward}"


def test_import_minisgd_loads_the_library_alone():
    code = ("import sys, minisgd; print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('minisgd', 'matplotlib', 'tqdm', 'dask', 'distributed', 'scipy', 'numba'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert not [m for m in loaded if m.split(".")[0] in ("matplotlib", "tqdm", "dask", "distributed")], loaded
    above = {"minisgd.cli", "minisgd.sweep", "minisgd.plotting", "minisgd.experiments"}
    assert not [m for m in loaded if any(m == a or m.startswith(a + ".") for a in above)], loaded


def test_subpackages_load_on_first_use():
    assert minisgd.curvature.top_eigenvalues is minisgd.curvature.eigen.top_eigenvalues
    with pytest.raises(AttributeError, match="no attribute 'spectrum'"):
        minisgd.spectrum  # noqa: B018 (the old flat name is gone: minisgd.curvature.eigen)


def test_tests_mirror_the_package():
    """One test module per library module (tests/<part>/test_<module>.py), so a module's tests are where you look."""
    tests = Path(__file__).parent
    missing = []
    for name, path in modules():
        parts = name.split(".")[1:]
        if not parts or parts[-1].startswith("_") or path.name == "__init__.py":
            continue
        expected = tests.joinpath(*parts[:-1], f"test_{parts[-1]}.py")
        if not expected.is_file():
            missing.append(str(expected.relative_to(tests)))
    assert not missing, f"modules without their test module: {missing}"
