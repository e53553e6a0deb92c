"""Preprocessing: exact pooling, PCA identities, training-only statistics, stratification, records."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from minisgd.data import (DataError, Dataset, avg_pool, avg_pool_images, fit_pca, load_mnist, pca, scale,
                          select_classes, standardize, stratified_indices, stratified_subset, validation_split)


def toy(n_train=40, n_test=10, d=16, K=4, seed=0, image_shape=(4, 4)):
    rng = np.random.default_rng(seed)
    return Dataset(
        name="toy", X_train=rng.random((n_train, d)) * 255, y_train=np.arange(n_train) % K,
        X_test=rng.random((n_test, d)) * 255, y_test=np.arange(n_test) % K, num_classes=K,
        image_shape=image_shape,
    )


def test_pooling_exact_on_hand_made_image():
    image = np.array([[0, 2, 4, 8],
                      [2, 4, 8, 0],
                      [1, 1, 3, 5],
                      [1, 1, 7, 9]], dtype=np.float64)[None]  # (1, 4, 4)
    np.testing.assert_array_equal(avg_pool_images(image, 2)[0], [[2.0, 5.0], [1.0, 6.0]])
    np.testing.assert_array_equal(avg_pool_images(image, 4)[0], [[56 / 16]])
    np.testing.assert_array_equal(avg_pool_images(image, 1), image)
    with pytest.raises(DataError, match="divide the image size 4x4"):
        avg_pool_images(image, 3)


def test_pooling_twice_equals_pooling_by_four():
    """28 -> 14 -> 7 is the same as 28 -> 7: means of means over equal-sized blocks."""
    images = np.random.default_rng(1).random((3, 28, 28))
    np.testing.assert_allclose(avg_pool_images(avg_pool_images(images, 2), 2), avg_pool_images(images, 4),
                               rtol=0, atol=1e-15)


def test_avg_pool_on_dataset_keeps_pixel_layout():
    ds = toy()
    pooled = avg_pool(ds, 2)
    assert pooled.image_shape == (2, 2) and pooled.input_dim == 4
    # Row-major flattening: pooled pixel (0, 1) is the mean of pixels (0,2),(0,3),(1,2),(1,3) = 2, 3, 6, 7.
    np.testing.assert_allclose(pooled.X_train[:, 1], ds.X_train[:, [2, 3, 6, 7]].mean(axis=1), rtol=1e-15)
    assert pooled.preprocessing[-1] == {"op": "avg_pool", "factor": 2, "from": [4, 4], "to": [2, 2]}
    with pytest.raises(DataError, match="no image_shape"):
        avg_pool(pca(ds, 3), 2)


def test_pca_orthonormal_and_reconstruction_error_is_discarded_variance():
    rng = np.random.default_rng(2)
    # Correlated data with a non-zero mean and a spread of variances.
    X = rng.standard_normal((3000, 30)) @ rng.standard_normal((30, 30)) * np.geomspace(3, 0.01, 30) + 5.0
    p = fit_pca(X, 8)
    V = p.components
    np.testing.assert_allclose(V.T @ V, np.eye(8), rtol=0, atol=1e-12)
    err = np.mean(np.sum((X - p.inverse_transform(p.transform(X))) ** 2, axis=1))
    # Both sides are O(total variance); 1e-10 relative covers rounding in the covariance and the eigensolver.
    assert err == pytest.approx(p.discarded_variance, rel=1e-10)
    # Independent route: the eigenvalues of the 1/N covariance from NumPy's own routine.
    lam = np.sort(np.linalg.eigvalsh(np.cov(X.T, bias=True)))[::-1]
    np.testing.assert_allclose(p.explained_variance, lam[:8], rtol=1e-10)
    assert p.discarded_variance == pytest.approx(lam[8:].sum(), rel=1e-9)
    # Variance of each projected coordinate is its eigenvalue, and coordinates are uncorrelated.
    Z = p.transform(X)
    np.testing.assert_allclose(np.cov(Z.T, bias=True), np.diag(lam[:8]), rtol=0, atol=1e-9 * lam[0])


def test_pca_signs_deterministic():
    X = np.random.default_rng(3).standard_normal((200, 6))
    p, q = fit_pca(X, 3), fit_pca(X[::-1].copy(), 3)  # same data, other row order
    np.testing.assert_allclose(p.components, q.components, rtol=0, atol=1e-12)
    assert np.all(p.components[np.argmax(np.abs(p.components), axis=0), range(3)] > 0)


def test_pca_on_mnist(mnist):
    small = stratified_subset(mnist, 2000, seed=0)  # 784 pixels kept, constant border ones included
    p = fit_pca(small.X_train, 50)
    np.testing.assert_allclose(p.components.T @ p.components, np.eye(50), rtol=0, atol=1e-12)
    err = np.mean(np.sum((small.X_train - p.inverse_transform(p.transform(small.X_train))) ** 2, axis=1))
    assert err == pytest.approx(p.discarded_variance, rel=1e-9)
    reduced = pca(small, 50)
    assert reduced.input_dim == 50 and reduced.image_shape is None
    assert reduced.preprocessing[-1]["explained_variance_ratio"] == pytest.approx(p.explained_variance_ratio)
    # Fitted on the training split only, applied to the test split with the same map.
    np.testing.assert_allclose(reduced.X_test, p.transform(small.X_test), rtol=0, atol=1e-12)


def test_scale_in_loader_is_bitwise_preprocess_scale(tmp_path):
    """load_mnist scales while converting to float64; that must equal the separate step exactly."""
    rng = np.random.default_rng(4)
    folder = tmp_path / "tiny"
    folder.mkdir()
    for stem, shape in [("train-images-idx3-ubyte", (30, 4, 4)), ("train-labels-idx1-ubyte", (30,)),
                        ("t10k-images-idx3-ubyte", (10, 4, 4)), ("t10k-labels-idx1-ubyte", (10,))]:
        values = rng.integers(0, 256 if len(shape) == 3 else 3, shape).astype(np.uint8)
        header = bytes([0, 0, 0x08, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)
        (folder / stem).write_bytes(header + values.tobytes())
    raw = load_mnist(tmp_path, name="tiny", download=False, scale=False)
    fused = load_mnist(tmp_path, name="tiny", download=False, scale=True)
    separate = scale(raw, 255.0)
    np.testing.assert_array_equal(fused.X_train, separate.X_train)
    np.testing.assert_array_equal(fused.X_test, separate.X_test)
    assert fused.preprocessing[1] == separate.preprocessing[-1] == {"op": "scale", "divisor": 255.0}
    assert raw.X_train.max() > 1.0 and fused.X_train.max() <= 1.0
    with pytest.raises(DataError, match="already scaled"):
        scale(fused)


def test_standardize_uses_training_statistics():
    ds = toy()
    ds = ds.replace(X_train=np.hstack([ds.X_train[:, :15], np.full((40, 1), 7.0)]),
                    X_test=np.hstack([ds.X_test[:, :15], np.full((10, 1), 9.0)]))
    st = standardize(ds)
    np.testing.assert_allclose(st.X_train[:, :15].mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(st.X_train[:, :15].std(axis=0), 1, rtol=1e-12)
    # The test split uses the training mean and std, not its own.
    mu, sd = ds.X_train.mean(axis=0), ds.X_train.std(axis=0)
    np.testing.assert_allclose(st.X_test, (ds.X_test - mu) / np.where(sd > 0, sd, 1), rtol=1e-12, atol=1e-12)
    assert st.X_test[0, 15] == 2.0  # constant feature: only centered (9 - 7), not divided by ~0
    assert st.preprocessing[-1]["constant_features"] == 1


def test_stratified_indices_largest_remainder():
    y = np.repeat([0, 1, 2], [50, 30, 20])  # proportions 0.5, 0.3, 0.2
    idx = stratified_indices(y, 7, rng=0)  # quotas 3.5, 2.1, 1.4 -> floors 3, 2, 1, the extra one to class 0
    assert np.bincount(y[idx]).tolist() == [4, 2, 1]
    assert np.all(np.diff(idx) > 0)  # sorted, no repeats
    np.testing.assert_array_equal(idx, stratified_indices(y, 7, rng=0))  # seeded
    assert not np.array_equal(idx, stratified_indices(y, 7, rng=1))
    with pytest.raises(DataError, match=r"n must be in \[0, 100\]"):
        stratified_indices(y, 101, rng=0)


def test_validation_split_is_disjoint_and_stratified():
    ds = toy(n_train=40)
    X_all = ds.X_train.copy()
    split = validation_split(ds, 8, seed=5)
    assert (split.num_train, split.num_val) == (32, 8)
    assert np.bincount(split.y_val).tolist() == [2, 2, 2, 2]
    rows = {tuple(r) for r in split.X_train} | {tuple(r) for r in split.X_val}
    assert rows == {tuple(r) for r in X_all}  # a partition of the original training rows
    assert split.preprocessing[-1] == {"op": "validation_split", "n_val": 8, "seed": 5, "stratified": True}
    with pytest.raises(DataError, match="already has a validation split"):
        validation_split(split, 4)


def test_select_classes_relabels_in_given_order():
    ds = toy(K=4)
    sub = select_classes(ds, (3, 1))
    assert sub.num_classes == 2 and set(np.unique(sub.y_train)) == {0, 1}
    np.testing.assert_array_equal(sub.X_train[sub.y_train == 0], ds.X_train[ds.y_train == 3])
    np.testing.assert_array_equal(sub.X_test[sub.y_test == 1], ds.X_test[ds.y_test == 1])
    with pytest.raises(DataError, match=r"\[7\] not among the 4 classes"):
        select_classes(ds, (0, 7))


def test_inputs_are_not_modified():
    ds = toy()
    before = ds.X_train.copy()
    for step in (lambda d: scale(d), lambda d: standardize(d), lambda d: avg_pool(d, 2), lambda d: pca(d, 2)):
        step(ds)
    np.testing.assert_array_equal(ds.X_train, before)
