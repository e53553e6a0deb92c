"""Shared fixtures: deterministic seeding, float64 by default, and the parametrized test cases."""
from __future__ import annotations

import os
import random
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # make ``import cases`` work from every test module

from cases import CASE_IDS, CASES, DTYPE  # noqa: E402

SEED = 20240611


@pytest.fixture(autouse=True)
def _seeded():
    """Seed every global RNG before each test, so no test depends on the order tests run in."""
    random.seed(SEED)
    np.random.seed(SEED % 2**32)
    yield


@pytest.fixture
def rng():
    """A fresh, seeded NumPy Generator per test."""
    return np.random.default_rng(SEED)


@pytest.fixture
def dtype():
    """The default floating dtype of the suite: float64 (finite-difference checks need it)."""
    return DTYPE


@pytest.fixture(params=CASES, ids=CASE_IDS)
def case(request):
    return request.param


@pytest.fixture
def problem(case):
    """``Problem`` (net, theta, X, y) for ``case``, NumPy float64."""
    return case.problem()


# Small networks with an L2 term and their dense Hessians: the reference for diagonals, traces and estimators.
DENSE_NETS = [
    ([5, 7, 6, 3], "tanh", "cross_entropy", 0.0),
    ([4, 9, 2], "softplus", "mse", 1e-2),
    ([6, 5, 5, 5, 4], "relu", "cross_entropy", 1e-3),
]


@pytest.fixture(params=DENSE_NETS, ids=lambda p: f"{p[1]}-{p[2]}-{len(p[0]) - 1}layers-l2={p[3]}")
def dense_problem(request):
    """``(net, theta, X, y, H)``: a perturbed initialization on 60 Gaussian examples and its exact Hessian."""
    from minisgd import MLP
    sizes, act, loss, l2 = request.param
    rng = np.random.default_rng(11)
    net = MLP(sizes, activation=act, loss=loss, l2=l2)
    theta = net.init(seed=5) + 0.2 * rng.standard_normal(net.num_params)
    X = rng.standard_normal((60, sizes[0]))
    y = rng.integers(0, sizes[-1], 60) if loss == "cross_entropy" else rng.standard_normal((60, sizes[-1]))
    return net, theta, X, y, net.hessian(theta, X, y)


@pytest.fixture(scope="module")
def quick_run(request, tmp_path_factory):
    """``(config, report)`` of the --quick sweep of the scenario the test module is named after
    (tests/experiments/test_spectrum.py -> ``spectrum``), run once per module (see support.quick_sweep)."""
    from support import quick_sweep
    name = request.module.__name__.rpartition(".")[2].removeprefix("test_").replace("_", "-")
    with quick_sweep(name, tmp_path_factory.mktemp(name)) as run:
        yield run
