"""Random image shifts (minisgd.data.augment) against np.roll plus zeroing on hand-made images, seeded
reproducibility, the offsets' uniformity (chi-square at the 0.1% level), and the RandomShifts transform."""
import numpy as np
import pytest
from scipy import stats

from minisgd.data import augment


def rolled_and_zeroed(image, dy, dx):
    """The definition: np.roll, then zero the rows and columns that wrapped around."""
    out = np.roll(image, (dy, dx), axis=(0, 1))
    if dy > 0:
        out[:dy, :] = 0
    elif dy < 0:
        out[dy:, :] = 0
    if dx > 0:
        out[:, :dx] = 0
    elif dx < 0:
        out[:, dx:] = 0
    return out


@pytest.mark.parametrize("shape", [(5, 7), (6, 6)])
def test_shift_equals_roll_and_zero_fill(shape):
    H, W = shape
    offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-3, 4)]
    images = np.arange(len(offsets) * H * W, dtype=float).reshape(len(offsets), H, W) + 1  # no zero pixels
    shifted = augment.shift_images(images.reshape(len(offsets), H * W), shape, offsets)
    assert shifted.shape == (len(offsets), H * W)
    for image, out, (dy, dx) in zip(images, shifted, offsets):
        np.testing.assert_array_equal(out.reshape(H, W), rolled_and_zeroed(image, dy, dx))
    one = np.zeros((H, W))
    one[2, 3] = 1.0  # a single pixel moves down by dy and right by dx
    moved = augment.shift_images(one.reshape(1, -1), shape, [(1, -2)]).reshape(H, W)
    assert moved[3, 1] == 1.0 and moved.sum() == 1.0


def test_random_shifts_are_seeded_and_uniform():
    rng = np.random.default_rng(0)
    X = rng.random((40, 9 * 8)).astype(np.float32)
    a = augment.random_shifts(X, (9, 8), 2, seed=[augment.STREAM, 3, 17])
    assert a.shape == X.shape and a.dtype == X.dtype
    np.testing.assert_array_equal(a, augment.random_shifts(X, (9, 8), 2, seed=[augment.STREAM, 3, 17]))
    assert not np.array_equal(a, augment.random_shifts(X, (9, 8), 2, seed=[augment.STREAM, 3, 18]))
    np.testing.assert_array_equal(  # the documented draw
        a, augment.shift_images(X, (9, 8), augment.random_shift_offsets(40, 2, [augment.STREAM, 3, 17])))
    np.testing.assert_array_equal(augment.random_shifts(X, (9, 8), 0, seed=1), X)
    k, M = 2, 50_000
    offsets = augment.random_shift_offsets(M, k, seed=11)
    assert offsets.min() == -k and offsets.max() == k
    cells = (offsets[:, 0] + k) * (2 * k + 1) + offsets[:, 1] + k  # the 25 joint cells, equally likely
    counts = np.bincount(cells, minlength=(2 * k + 1) ** 2)
    chi2 = stats.chisquare(counts)
    assert chi2.pvalue > 1e-3, (counts, chi2)


def test_shift_rejects_bad_input():
    with pytest.raises(ValueError, match="image_shape"):
        augment.random_shifts(np.zeros((3, 10)), (3, 4), 1, seed=0)
    with pytest.raises(ValueError, match="max_shift must lie in"):
        augment.random_shifts(np.zeros((3, 12)), (3, 4), 3, seed=0)


def test_random_shifts_transform_is_the_seeded_function_with_its_stream():
    X = np.random.default_rng(0).random((7, 12))
    transform = augment.RandomShifts(1, (3, 4))
    np.testing.assert_array_equal(transform(X, [5, 2]), augment.random_shifts(X, (3, 4), 1, [augment.STREAM, 5, 2]))
    assert transform.to_dict() == {"transform": "random_shifts", "max_shift": 1, "image_shape": [3, 4]}
    for bad in [dict(max_shift=3, image_shape=(3, 4)), dict(max_shift=1.5, image_shape=(3, 4)),
                dict(max_shift=1, image_shape=(12,))]:
        with pytest.raises(ValueError):
            augment.RandomShifts(**bad)
