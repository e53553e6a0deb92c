"""The BLAS thread policy: one thread for small work, the free cores for large work, the overrides, and the results
unchanged by it."""
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from cases import CASES
from minisgd import ConfigError, threads


def blas_thread_counts():
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


@pytest.fixture
def policy(monkeypatch):
    """The default setting, whatever the environment running the tests says."""
    monkeypatch.delenv(threads.ENV, raising=False)
    return threads


def test_small_work_gets_one_thread_large_work_the_free_cores(policy, monkeypatch):
    monkeypatch.setattr(threads, "free_cores", lambda: 7)
    assert policy.threads_for(policy.SERIAL_FLOPS / 2) == 1
    assert policy.threads_for(policy.SERIAL_FLOPS * 2) == 7


@pytest.mark.parametrize("value, expected", [("3", 3), ("1", 1), ("off", None), ("AUTO", 1)])
def test_the_environment_overrides_the_policy(monkeypatch, value, expected):
    monkeypatch.setenv(threads.ENV, value)
    assert threads.threads_for(1e3) == expected


def test_the_argument_overrides_the_environment(monkeypatch):
    monkeypatch.setenv(threads.ENV, "off")
    assert threads.threads_for(1e3, threads=2) == 2


@pytest.mark.parametrize("value", ["many", "0", "-2", "1.5"])
def test_a_bad_setting_says_what_to_write(monkeypatch, value):
    monkeypatch.setenv(threads.ENV, value)
    with pytest.raises(ConfigError, match="'auto'.*'off'.*positive number"):
        threads.threads_for(1e3)


def test_a_bad_argument_is_refused(policy):
    with pytest.raises(ConfigError, match="positive number of threads"):
        threads.threads_for(1e3, threads=0)


def test_blas_threads_sets_and_restores_the_count(policy):
    if not blas_thread_counts():
        pytest.skip("no BLAS library that threadpoolctl can control")
    before = blas_thread_counts()
    with policy.blas_threads(1e3, threads=1):
        assert blas_thread_counts() == [1] * len(before)
        with policy.blas_threads(1e3, threads=2):  # nested: the inner one wins inside it
            assert blas_thread_counts() == [2] * len(before)
        assert blas_thread_counts() == [1] * len(before)
    assert blas_thread_counts() == before


def test_blas_threads_restores_after_an_error(policy):
    if not blas_thread_counts():
        pytest.skip("no BLAS library that threadpoolctl can control")
    before = blas_thread_counts()
    with pytest.raises(RuntimeError):
        with policy.blas_threads(1e3, threads=1 if before[0] != 1 else 2):
            raise RuntimeError("inside")
    assert blas_thread_counts() == before


def test_free_cores_subtracts_other_processes(policy, monkeypatch):
    """A fake /proc/stat: 0.1 s in which all processes used 1.5 cores, this one 0.5, leaves one of 2 cores free."""
    samples = iter([(0.0, 10.0, 1.0), (0.1, 10.15, 1.05), (0.11, 10.3, 1.06), (0.3, 10.3, 1.25)])
    monkeypatch.setattr(threads, "_cpu_seconds", lambda: next(samples))
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    monkeypatch.setitem(threads._load, "sample", None)
    assert threads.free_cores() == 2  # the first call has nothing to compare with
    assert threads.free_cores() == 1  # others: (0.15 - 0.05) / 0.1 = 1 core
    assert threads.free_cores() == 1  # 10 ms is too short to measure: the previous answer stands
    assert threads.free_cores() == 2  # 0.19 s in which only this process ran


def test_free_cores_without_proc_stat_is_every_core(policy, monkeypatch):
    monkeypatch.setattr(threads, "_cpu_seconds", lambda: None)
    assert threads.free_cores() == threads.available_cores()


def test_the_real_free_cores_lie_in_range(policy):
    for _ in range(3):
        assert 1 <= threads.free_cores() <= threads.available_cores()


@pytest.mark.parametrize("case", CASES[:6], ids=[c.id for c in CASES[:6]])
def test_results_do_not_depend_on_the_thread_count(case, monkeypatch):
    """One thread and two give the same gradient and HVP to rounding (BLAS may split sums differently)."""
    p = case.problem()
    V = np.random.default_rng(0).standard_normal((p.net.num_params, 3))
    results = []
    for count in ("1", "2"):
        monkeypatch.setenv(threads.ENV, count)
        results.append((p.net.loss_and_grad(p.theta, p.X, p.y)[1], p.net.hvp(p.theta, p.X, p.y, V)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12, atol=1e-14)


def test_retain_freed_memory_on_glibc():
    import platform
    applied = threads.retain_freed_memory(64 << 20)
    assert applied == (platform.libc_ver()[0] == "glibc")


@pytest.mark.parametrize("setting, calls", [("", 1), ("off", 0)])
def test_the_first_call_tunes_the_allocator_once_unless_told_not_to(policy, monkeypatch, setting, calls):
    made = []
    monkeypatch.setattr(threads, "retain_freed_memory", lambda: made.append(1) or True)
    monkeypatch.setattr(threads, "_allocator", [])
    monkeypatch.setenv(threads.MALLOC_ENV, setting)
    for _ in range(3):
        with policy.blas_threads(1e3):
            pass
    assert len(made) == calls
