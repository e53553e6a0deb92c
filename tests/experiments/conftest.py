"""The quick run each scenario's test module checks: ``quick_run`` is ``(config, report)`` of the --quick sweep of
the scenario the module is named after (tests/experiments/test_spectrum.py -> ``spectrum``), run once per module."""
import pytest

from support import quick_sweep


@pytest.fixture(scope="module")
def quick_run(request, tmp_path_factory):
    name = request.module.__name__.rpartition(".")[2].removeprefix("test_").replace("_", "-")
    with quick_sweep(name, tmp_path_factory.mktemp(name)) as run:
        yield run
