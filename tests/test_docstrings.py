"""Every example in the library's docstrings runs and prints what it shows (doctest), module by module.

Run here rather than with ``--doctest-modules`` so that only the package is collected for doctests (that option
would also import each test folder's conftest.py as a module named ``conftest``, and two of them clash).
"""
import doctest
import importlib

import pytest

from test_architecture import modules

LIBRARY = [name for name, path in modules() if name != "minisgd.__main__"]


@pytest.mark.parametrize("name", LIBRARY)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False,
                             report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples in {name} failed (above)"


def test_the_examples_are_there():
    """The modules that teach by example keep their examples (a docstring rewrite must not drop them)."""
    attempted = {name: doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE,
                                       report=False).attempted
                 for name in ("minisgd.core.mlp", "minisgd.curvature.sharpness", "minisgd.curvature.landscape",
                              "minisgd.theory.temperature")}
    assert all(n > 0 for n in attempted.values()), attempted
