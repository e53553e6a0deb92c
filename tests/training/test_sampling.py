"""Minibatch sampling: every example once per epoch without replacement, the right count distribution with
replacement, full batch, and reproducibility as a pure function of (seed, epoch)."""
import numpy as np
import pytest

from minisgd.training.sampling import Sampler


@pytest.mark.parametrize("N, B", [(103, 10), (100, 10), (7, 3), (5, 9)])
def test_shuffle_keep_last_visits_every_example_once(N, B):
    s = Sampler(N, "shuffle", drop_last=False, seed=3)
    for epoch in range(4):
        batches = s.epoch_batches(epoch, B)
        b = min(B, N)
        assert [len(i) for i in batches] == [b] * (N // b) + ([N % b] if N % b else [])
        assert len(batches) == s.steps_per_epoch(B) == -(-N // b)
        np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(N))
        assert all(i.dtype == np.int64 for i in batches)


@pytest.mark.parametrize("N, B", [(103, 10), (100, 10), (7, 3)])
def test_shuffle_drop_last_visits_each_kept_example_once(N, B):
    s = Sampler(N, "shuffle", drop_last=True, seed=3)
    dropped = []
    for epoch in range(4):
        batches = s.epoch_batches(epoch, B)
        assert [len(i) for i in batches] == [B] * (N // B) == [B] * s.steps_per_epoch(B)
        seen = np.concatenate(batches)
        assert len(np.unique(seen)) == len(seen) == (N // B) * B  # no example twice
        dropped.append(tuple(np.setdiff1d(np.arange(N), seen)))
    if N % B:
        assert len(set(dropped)) > 1  # a different remainder is dropped in different epochs


def test_epochs_are_reproducible_and_independent_of_history():
    a, b = Sampler(50, "shuffle", seed=1), Sampler(50, "shuffle", seed=1)
    later = b.epoch_batches(5, 8)  # epoch 5 computed alone
    for epoch in range(5):
        a.epoch_batches(epoch, 8)
    assert all(np.array_equal(x, y) for x, y in zip(a.epoch_batches(5, 8), later))
    assert not np.array_equal(np.concatenate(a.epoch_batches(0, 8)), np.concatenate(a.epoch_batches(1, 8)))
    other = Sampler(50, "shuffle", seed=2).epoch_batches(5, 8)
    assert not np.array_equal(np.concatenate(later), np.concatenate(other))
    np.testing.assert_array_equal(a.batch(5, 2, 8), later[2])


def test_with_replacement_counts_are_multinomial():
    # N = 40 examples, B = 16, ceil(40/16) = 3 steps per epoch, 400 epochs: n = 19200 draws.
    # Counts ~ Multinomial(n, 1/N): Pearson's statistic is chi-square with N - 1 = 39 dof; we accept below its
    # 0.999 quantile, 72.05 (tables; scipy.stats.chi2.ppf(0.999, 39)), i.e. p > 1e-3 (seeded, so fixed).
    N, B, epochs = 40, 16, 400
    s = Sampler(N, "replacement", seed=0)
    draws = np.concatenate([np.concatenate(s.epoch_batches(e, B)) for e in range(epochs)])
    assert len(draws) == epochs * 3 * B
    counts = np.bincount(draws, minlength=N)
    expected = len(draws) / N
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 72.05
    # the variance of a count is n p (1 - p): the sample variance over the N counts is within 35% (the sampling
    # standard deviation of a variance estimate from 40 values is about sqrt(2/39) = 23%)
    assert counts.var(ddof=1) == pytest.approx(len(draws) * (1 / N) * (1 - 1 / N), rel=0.35)
    # with replacement, a batch can repeat an example: P(no repeat in 16 of 40) ~ 3%, so most batches do
    batches = [b for e in range(20) for b in s.epoch_batches(e, B)]
    assert sum(len(np.unique(b)) < B for b in batches) > len(batches) // 2


def test_full_batch_and_caps():
    s = Sampler(9, "full", seed=0)
    assert s.steps_per_epoch(4) == 1 and s.batch_size(4) == 9
    np.testing.assert_array_equal(s.epoch_batches(3, 4)[0], np.arange(9))
    assert Sampler(9, "shuffle").batch_size(100) == 9
    with pytest.raises(ValueError, match="sampling mode"):
        Sampler(9, "bootstrap")
    with pytest.raises(IndexError):
        Sampler(9, "shuffle").batch(0, 5, 4)
