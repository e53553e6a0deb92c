"""Schedules give the intended values at chosen times, compose, serialize, and drive the trainer as stated."""
import math

import numpy as np
import pytest

import minisgd as ms
from minisgd.training.schedules import (Constant, ConstantBatch, Cosine, GeometricBatch, StepDecay, WarmStartBatch, Warmup,
                               as_lr_schedule, describe)
from minisgd.training.train import TrainConfig, planned_steps, train


def test_constant_and_step_decay():
    assert Constant(0.3)(0) == Constant(0.3)(10 ** 6) == 0.3
    s = StepDecay(1.0, milestones=(3, 5), gamma=0.5)
    assert [s(t) for t in range(7)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    with pytest.raises(ValueError, match="increasing"):
        StepDecay(1.0, milestones=(5, 3))


def test_cosine_endpoints_and_midpoint():
    s = Cosine(0.1, total=100, lr_min=0.001)
    assert s(0) == pytest.approx(0.1, rel=1e-15)
    assert s(50) == pytest.approx(0.0505, rel=1e-12)  # (0.1 + 0.001) / 2
    assert s(25) == pytest.approx(0.001 + 0.0495 * (1 + math.cos(math.pi / 4)), rel=1e-12)
    assert s(100) == s(1000) == pytest.approx(0.001, rel=1e-12)


def test_warmup_then_cosine():
    s = Warmup(10, Cosine(0.2, total=40))
    assert s(0) == pytest.approx(0.02, rel=1e-14)  # the first step already moves: lr (t + 1) / w
    assert s(4) == pytest.approx(0.1, rel=1e-14)
    assert s(9) == pytest.approx(0.2, rel=1e-14)  # the last warm-up step reaches the peak
    assert s(10) == pytest.approx(0.2, rel=1e-14)  # the cosine starts at its own t = 0
    assert s(30) == pytest.approx(0.1, rel=1e-12)  # cosine midpoint
    assert s(50) == pytest.approx(0.0, abs=1e-15)
    assert Warmup(4, 0.5)(1) == 0.25 and Warmup(4, 0.5)(100) == 0.5
    with pytest.raises(ValueError, match="counts in"):
        Warmup(3, Cosine(0.1, total=5, unit="epoch"))


def test_batch_schedules():
    g = GeometricBatch(32, factor=2.0, every=2, max=200)
    assert [g(e) for e in range(8)] == [32, 32, 64, 64, 128, 128, 200, 200]
    assert [GeometricBatch(64, factor=1.5)(e) for e in range(4)] == [64, 96, 144, 216]
    w = WarmStartBatch(small=16, large=512, epochs=3)
    assert [w(e) for e in range(5)] == [16, 16, 16, 512, 512]
    assert ConstantBatch(7)(99) == 7


def test_descriptions_are_json_and_name_nested_schedules():
    d = describe(Warmup(5, Cosine(0.1, total=50)))
    assert d == {"type": "Warmup", "steps": 5, "unit": "step",
                 "after": {"type": "Cosine", "lr": 0.1, "total": 50, "lr_min": 0.0, "unit": "step"}}
    assert describe(lambda t: 0.1)["type"] == "callable"
    with pytest.raises(ValueError, match="learning rate"):
        as_lr_schedule(-1.0)


def tiny_problem(N=20):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, 3))
    y = rng.integers(0, 2, N)
    net = ms.MLP([3, 4, 2])
    return net, net.init(seed=0), (X, y)


def test_trainer_follows_an_epoch_unit_lr_schedule_and_a_growing_batch():
    net, theta, data = tiny_problem(N=20)
    cfg = TrainConfig(lr=StepDecay(0.1, milestones=(2,), gamma=0.1, unit="epoch"),
                      batch_size=GeometricBatch(4, factor=2.0), epochs=4, eval_every=None)
    h = train(net, theta, data, cfg, progress=False).history
    # epoch e has B = min(4 * 2^e, 20) and ceil(20 / B) steps: 5, 3 (8, 8, 4), 2 (16, 4), 1 (20)
    assert h["batch_size"] == [4] * 5 + [8, 8, 4] + [16, 4] + [20]
    assert h["epoch"] == [0] * 5 + [1] * 3 + [2] * 2 + [3]
    assert h["lr"] == [0.1] * 8 + [pytest.approx(0.01, rel=1e-14)] * 3
    assert planned_steps(cfg, 20) == 11


def test_trainer_step_unit_warmup():
    net, theta, data = tiny_problem()
    cfg = TrainConfig(lr=Warmup(4, 0.2), batch_size=5, max_steps=6, eval_every=None)
    h = train(net, theta, data, cfg, progress=False).history
    np.testing.assert_allclose(h["lr"], [0.05, 0.1, 0.15, 0.2, 0.2, 0.2], rtol=1e-14)
