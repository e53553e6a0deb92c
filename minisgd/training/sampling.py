r"""Which examples each step sees: seeded, reproducible and inspectable minibatch index sequences.

Three regimes (``mode``):

* ``"shuffle"``: epoch-wise sampling without replacement. Epoch ``e`` draws one permutation of the N examples
  and cuts it into consecutive batches of B; the last, partial batch (``N mod B`` examples) is kept
  (``drop_last=False``, :math:`\lceil N/B \rceil` steps) or dropped (``drop_last=True``, :math:`\lfloor N/B
  \rfloor` steps; the dropped examples change from epoch to epoch).
* ``"replacement"``: i.i.d. uniform sampling with replacement, B indices per step; an "epoch" is the same
  number of steps as in ``"shuffle"`` (about N examples), so budgets in epochs mean the same compute.
* ``"full"``: every step is the whole training set in order (gradient descent); one step per epoch.

The indices of epoch ``e`` are a pure function of ``(seed, e, B)``: the generator is
``numpy.random.default_rng([STREAM, seed, e])``, ``STREAM`` a constant that keeps these draws apart from any
other use of the same seed (initialization, data subsets). Nothing is carried from one epoch to the next, so a
resumed run needs only the counters (epoch, step in epoch) to continue with exactly the same batches, and any
epoch can be listed on its own with :meth:`Sampler.epoch_batches`.

Indices are NumPy ``int64`` arrays on the host; the trainer gathers the batch from the (possibly device) arrays.
"""
import math
from dataclasses import dataclass

import numpy as np

SAMPLING = ("shuffle", "replacement", "full")
STREAM = 0x5A3B1E  # "sample": separates the sampler's random stream from other uses of ``seed``


def epoch_rng(seed, epoch):
    """The generator of epoch ``epoch``: ``numpy.random.default_rng([STREAM, seed, epoch])``."""
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be >= 0, got seed={seed}, epoch={epoch}")
    return np.random.default_rng([STREAM, int(seed), int(epoch)])


@dataclass(frozen=True)
class Sampler:
    """Minibatch indices for a training set of ``num_examples`` examples.

    Example::

        s = Sampler(num_examples=10, mode="shuffle", drop_last=False, seed=0)
        s.epoch_batches(epoch=0, batch_size=4)   # [array of 4], [array of 4], [array of 2]: a permutation of 0..9
    """

    num_examples: int  # N, the size of the training set
    mode: str = "shuffle"  # "shuffle" (without replacement), "replacement" (i.i.d.) or "full" (whole set)
    drop_last: bool = False  # "shuffle": drop the last partial batch of each epoch ("replacement": floor(N/B) steps)
    seed: int = 0  # the epoch permutations / draws come from default_rng([STREAM, seed, epoch])

    def __post_init__(self):
        if self.mode not in SAMPLING:
            raise ValueError(f"unknown sampling mode {self.mode!r}; choose one of {', '.join(SAMPLING)}")
        if int(self.num_examples) < 1:
            raise ValueError(f"the training set is empty (num_examples={self.num_examples})")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")

    def batch_size(self, batch_size):
        """The batch size actually used: ``N`` for ``"full"``, else ``min(batch_size, N)``."""
        if self.mode == "full":
            return int(self.num_examples)
        if int(batch_size) < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        return min(int(batch_size), int(self.num_examples))

    def steps_per_epoch(self, batch_size):
        """Steps in one epoch at this batch size: ``ceil(N/B)``, ``floor(N/B)`` with ``drop_last``, 1 for full."""
        N, B = int(self.num_examples), self.batch_size(batch_size)
        if self.mode == "full":
            return 1
        return N // B if self.drop_last else math.ceil(N / B)

    def epoch_batches(self, epoch, batch_size):
        """The list of index arrays (each ``(B_t,)`` int64) that epoch ``epoch`` visits, in order."""
        N, B = int(self.num_examples), self.batch_size(batch_size)
        steps = self.steps_per_epoch(B)
        if self.mode == "full":
            return [np.arange(N, dtype=np.int64)]
        rng = epoch_rng(self.seed, epoch)
        if self.mode == "shuffle":
            order = rng.permutation(N).astype(np.int64, copy=False)
            return [order[i * B:(i + 1) * B] for i in range(steps)]
        draws = rng.integers(0, N, size=(steps, B), dtype=np.int64)  # (steps, B), i.i.d. uniform
        return list(draws)

    def batch(self, epoch, step_in_epoch, batch_size):
        """The indices of step ``step_in_epoch`` of epoch ``epoch`` (recomputes the epoch; cache it when looping)."""
        batches = self.epoch_batches(epoch, batch_size)
        if not 0 <= step_in_epoch < len(batches):
            raise IndexError(f"epoch {epoch} has {len(batches)} steps at batch size {batch_size}; "
                             f"step {step_in_epoch} does not exist")
        return batches[step_in_epoch]
