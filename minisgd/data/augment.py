r"""Data augmentation for flattened images: random shifts with zero fill (Keskar et al. 2017, section 5, list
data augmentation among the remedies for the large-batch gap; shifts by a few pixels are the classic MNIST
augmentation, e.g. Simard et al. 2003).

A shift by :math:`(s_y, s_x)` moves the content down by :math:`s_y` rows and right by :math:`s_x` columns; the
pixels that enter from the border are 0:

.. math::
    \operatorname{shift}(I)[i, j] = I[i - s_y, j - s_x] \text{ if } 0 \le i - s_y < H \text{ and }
    0 \le j - s_x < W, \text{ else } 0,

which is ``np.roll(I, (s_y, s_x), axis=(0, 1))`` with the wrapped-around rows and columns set to 0.

Everything here is a pure function of its arguments: the random shifts of a batch are drawn from
``numpy.random.default_rng(seed)`` (the trainer passes ``[STREAM, seed, step]``), so a resumed run sees the
same augmented batches. Inputs are ``X: (N, H * W)`` rows of row-major images, NumPy or CuPy.
"""
from dataclasses import dataclass

import numpy as np

from ..backend import device_of, namespace

STREAM = 0xA06  # "aug": keeps the shifts' random stream apart from other uses of the same seed


def _check(X, image_shape, max_shift):
    H, W = (int(s) for s in image_shape)
    if X.ndim != 2 or X.shape[1] != H * W:
        raise ValueError(f"X must have shape (N, H * W) = (N, {H * W}) for images of shape {(H, W)}, "
                         f"got {tuple(X.shape)}; pass the image_shape of the (pooled) images")
    if not 0 <= int(max_shift) < min(H, W):
        raise ValueError(f"max_shift must lie in [0, {min(H, W)}) for images of shape {(H, W)}, got {max_shift}")
    return H, W


def shift_images(X, image_shape, shifts):
    r"""``(N, H * W)``: image n of ``X`` shifted by ``shifts[n] = (s_y, s_x)`` (integers, ``|s| < min(H, W)``),
    zero fill, as the module docstring defines. One gather from the zero-padded images, no loop over N."""
    xp = namespace(X)
    shifts = np.asarray(shifts, dtype=np.int64)
    k = int(np.abs(shifts).max(initial=0))
    H, W = _check(X, image_shape, k)
    N = X.shape[0]
    if shifts.shape != (N, 2):
        raise ValueError(f"shifts must have shape (N, 2) = ({N}, 2), one (s_y, s_x) per image, got {shifts.shape}")
    dev = device_of(X)
    padded = xp.zeros((N, H + 2 * k, W + 2 * k), dtype=X.dtype, device=dev)
    padded[:, k:k + H, k:k + W] = xp.reshape(X, (N, H, W))  # padded[n, i + k, j + k] = I_n[i, j]
    rows = k - shifts[:, 0:1] + np.arange(H)  # (N, H): out[n, i] = I_n[i - s_y] = padded[n, i - s_y + k]
    cols = k - shifts[:, 1:2] + np.arange(W)  # (N, W)
    n, rows, cols = (xp.asarray(a, device=dev) for a in (np.arange(N)[:, None, None], rows[:, :, None],
                                                          cols[:, None, :]))
    out = padded[n, rows, cols]  # (N, H, W), broadcast from (N, 1, 1), (N, H, 1), (N, 1, W)
    return xp.reshape(out, (N, H * W))


def random_shift_offsets(num, max_shift, seed):
    """``(num, 2)`` int64 shifts ``(s_y, s_x)``, each uniform on ``{-max_shift, ..., max_shift}``, independent,
    drawn from ``numpy.random.default_rng(seed)`` (``seed``: an int or a sequence of ints)."""
    k = int(max_shift)
    return np.random.default_rng(seed).integers(-k, k + 1, size=(int(num), 2), dtype=np.int64)


def random_shifts(X, image_shape, max_shift, seed):
    """``(N, H * W)``: every image of ``X`` shifted by its own random offset, uniform on
    ``{-max_shift, ..., max_shift}^2`` (:func:`random_shift_offsets` with ``seed``), zero fill."""
    _check(X, image_shape, max_shift)
    return shift_images(X, image_shape, random_shift_offsets(X.shape[0], max_shift, seed))


@dataclass(frozen=True)
class RandomShifts:
    """A batch transform for :class:`minisgd.TrainConfig` (``augment=RandomShifts(1, (14, 14))``): every image of
    the batch shifted by its own random offset in ``{-max_shift..max_shift}^2``, zero fill.

    ``transform(X_B, seed)`` with the trainer's ``seed = [seed, t]`` draws the offsets from
    ``default_rng([STREAM, seed, t])``, so a resumed run sees the same batches; ``to_dict()`` is what the trainer
    stores with its config and compares on resume."""

    max_shift: int  # k: offsets uniform on {-k, ..., k} in each direction
    image_shape: tuple  # (H, W) of the flattened images (after any pooling)

    def __post_init__(self):
        shape = tuple(int(s) for s in self.image_shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"image_shape must be (H, W) with H, W >= 1, got {self.image_shape!r}")
        if int(self.max_shift) != self.max_shift or not 0 <= self.max_shift < min(shape):
            raise ValueError(f"max_shift must be an integer in [0, {min(shape)}) for images of shape {shape}, "
                             f"got {self.max_shift!r}")
        object.__setattr__(self, "image_shape", shape)
        object.__setattr__(self, "max_shift", int(self.max_shift))

    def __call__(self, X, seed):
        return random_shifts(X, self.image_shape, self.max_shift, [STREAM, *seed])

    def to_dict(self):
        return {"transform": "random_shifts", "max_shift": self.max_shift, "image_shape": list(self.image_shape)}
