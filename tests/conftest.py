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
