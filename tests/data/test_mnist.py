"""MNIST as it really is, and what the loader does with missing, truncated, corrupted and foreign files."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import struct

import numpy as np
import pytest

from minisgd.data import (MNIST_SHA256, ChecksumError, DataError, data_home, dataset_folder, load_mnist,
                          read_mnist)

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_shipped_sums_match_the_shared_listing(mnist_dir):
    listing = {}
    for line in (mnist_dir / "SHA256SUMS.uncompressed").read_text().split("\n"):
        if line.strip():
            digest, name = line.split()
            listing[name] = digest
    assert listing == MNIST_SHA256


def test_mnist_shapes_counts_labels_pixels(mnist):
    ds = mnist
    assert (ds.num_train, ds.num_test, ds.input_dim, ds.num_classes) == (60000, 10000, 784, 10)
    assert ds.X_train.dtype == np.float64 and ds.y_train.dtype == np.int64 and ds.image_shape == (28, 28)
    assert np.bincount(ds.y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(ds.y_test).tolist() == TEST_COUNTS
    assert ds.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert ds.y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    # Pixel means of the scaled images: sums of integers / 255 / count, so exact to rounding; the widely
    # quoted 0.1307 (train) comes from the same files.
    assert ds.X_train.mean() == pytest.approx(0.1306604762738429, rel=1e-12)
    assert ds.X_test.mean() == pytest.approx(0.13251460584233699, rel=1e-12)
    assert ds.X_train.min() == 0.0 and ds.X_train.max() == 1.0


def test_load_record_says_what_was_checked(mnist):
    load, scale = mnist.preprocessing
    assert load["op"] == "load" and load["verified"] is True
    assert load["sha256"] == MNIST_SHA256
    assert scale == {"op": "scale", "divisor": 255.0}
    json.dumps(mnist.metadata())  # results store it as JSON


def test_raw_arrays_match_the_header(mnist_root):
    arrays, record = read_mnist(mnist_root, download=False)
    assert arrays["train_images"].shape == (60000, 28, 28) and arrays["train_images"].dtype == np.uint8
    assert arrays["test_labels"].shape == (10000,)
    # The first training image is a 5 whose ink sum is known from the file (independent hand decode below).
    raw = gzip.decompress((mnist_root / "mnist" / "train-images-idx3-ubyte.gz").read_bytes())
    assert struct.unpack(">4I", raw[:16]) == (2051, 60000, 28, 28)
    first = np.frombuffer(raw, dtype=np.uint8, count=784, offset=16).reshape(28, 28)
    np.testing.assert_array_equal(arrays["train_images"][0], first)


def test_full_pipeline_records_every_step(mnist_root):
    ds = load_mnist(mnist_root, download=False, classes=(0, 1), n_val=500, n_train=1000, pool=2,
                    standardize=True, pca=20, seed=3)
    assert [r["op"] for r in ds.preprocessing] == [
        "load", "scale", "select_classes", "validation_split", "subset", "avg_pool", "standardize", "pca"]
    assert (ds.num_train, ds.num_val, ds.num_test, ds.input_dim, ds.num_classes) == (1000, 500, 2115, 20, 2)
    # 0 and 1 are 5923 : 6742 of the training set; stratification keeps that ratio to within one example.
    frac0 = 5923 / (5923 + 6742)
    assert abs(np.bincount(ds.y_val)[0] - 500 * frac0) <= 1
    assert abs(np.bincount(ds.y_train)[0] - 1000 * frac0) <= 1
    assert np.bincount(ds.y_test).tolist() == [980, 1135]
    again = load_mnist(mnist_root, download=False, classes=(0, 1), n_val=500, n_train=1000, pool=2,
                       standardize=True, pca=20, seed=3)
    np.testing.assert_array_equal(ds.X_train, again.X_train)  # deterministic
    assert ds.preprocessing == again.preprocessing
    assert "pca(dim=20" in ds.describe() and "avg_pool(factor=2" in ds.describe()


def _copy_mnist(src, dst):
    dst.mkdir(parents=True)
    for f in src.glob("*-ubyte.gz"):
        shutil.copy(f, dst / f.name)
    return dst


def test_corrupted_file_rejected_with_fix(mnist_dir, tmp_path):
    folder = _copy_mnist(mnist_dir, tmp_path / "mnist")
    path = folder / "train-labels-idx1-ubyte.gz"
    payload = bytearray(gzip.decompress(path.read_bytes()))
    payload[100] = (payload[100] + 1) % 10  # one wrong label: structurally valid, only the checksum can tell
    path.write_bytes(gzip.compress(bytes(payload)))
    with pytest.raises(ChecksumError) as err:
        load_mnist(tmp_path, download=False)
    message = str(err.value)
    assert "train-labels-idx1-ubyte.gz" in message
    assert hashlib.sha256(bytes(payload)).hexdigest() in message and MNIST_SHA256["train-labels-idx1-ubyte"] in message
    assert "Delete it and run again" in message and "MINISGD_DATA" in message


def test_truncated_file_rejected(mnist_dir, tmp_path):
    folder = _copy_mnist(mnist_dir, tmp_path / "mnist")
    raw = gzip.decompress((folder / "t10k-images-idx3-ubyte.gz").read_bytes())
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    (folder / "t10k-images-idx3-ubyte").write_bytes(raw[:-784])  # raw files work too; this one lacks an image
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: truncated: the header says shape \(10000, 28, 28\)"):
        load_mnist(tmp_path, download=False)


def test_missing_file_says_what_to_do(mnist_dir, tmp_path):
    folder = _copy_mnist(mnist_dir, tmp_path / "mnist")
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        load_mnist(tmp_path, download=False)
    message = str(err.value)
    assert "t10k-labels-idx1-ubyte" in message and str(folder) in message
    assert "download=True" in message and "MINISGD_DATA" in message
    # With MINISGD_OFFLINE set (the fixture does) the default does not download, and says how to.
    with pytest.raises(DataError, match="unset MINISGD_OFFLINE"):
        load_mnist(tmp_path)


def test_wrong_file_in_place_of_another(mnist_dir, tmp_path):
    folder = _copy_mnist(mnist_dir, tmp_path / "mnist")
    shutil.copy(folder / "t10k-labels-idx1-ubyte.gz", folder / "train-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: shape \(10000,\), expected \(60000,\)"):
        load_mnist(tmp_path, download=False)


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_other_idx_dataset_in_same_layout(tmp_path):
    """A Fashion-MNIST-like folder (made-up 8x8 images here) loads through the same reader."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (50, 8, 8)),
              "train-labels-idx1-ubyte": np.arange(50) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (20, 8, 8)),
              "t10k-labels-idx1-ubyte": np.arange(20) % 10}
    for stem, a in arrays.items():
        _write_idx(folder / f"{stem}.gz", a)
    ds = load_mnist(tmp_path, name="fashion-mnist", download=False, pool=2)
    assert (ds.name, ds.num_train, ds.num_test, ds.image_shape, ds.num_classes) == ("fashion-mnist", 50, 20, (4, 4), 10)
    assert ds.preprocessing[0]["verified"] is False  # no sums known for it
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    # With a SHA256SUMS.uncompressed beside the files, they are verified, and a mismatch is caught.
    sums = {s: hashlib.sha256(gzip.decompress((folder / f"{s}.gz").read_bytes())).hexdigest() for s in arrays}
    (folder / "SHA256SUMS.uncompressed").write_text("".join(f"{h}  {s}\n" for s, h in sums.items()))
    assert load_mnist(tmp_path, name="fashion-mnist", download=False).preprocessing[0]["verified"] is True
    (folder / "SHA256SUMS.uncompressed").write_text(f"{'0' * 64}  t10k-labels-idx1-ubyte\n")
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte.gz"):
        load_mnist(tmp_path, name="fashion-mnist", download=False)


def test_mismatched_image_and_label_counts(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    _write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((5, 4, 4)))
    _write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(6))
    _write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((2, 4, 4)))
    _write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(2))
    with pytest.raises(DataError, match="train has 5 images but 6 labels"):
        load_mnist(tmp_path, name="odd", download=False)


def test_where_the_data_lives(monkeypatch, tmp_path):
    monkeypatch.delenv("MINISGD_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("sys.platform", "linux")
    assert data_home() == tmp_path / "cache" / "minisgd"
    monkeypatch.setenv("MINISGD_DATA", str(tmp_path / "env"))
    assert dataset_folder() == tmp_path / "env" / "mnist"
    assert dataset_folder("fashion-mnist", tmp_path / "arg") == tmp_path / "arg" / "fashion-mnist"


def test_the_dataset_folder_itself_is_refused_with_the_fix(monkeypatch, tmp_path):
    """MINISGD_DATA names the folder that contains mnist/: the mnist/ folder itself is the common mistake, refused
    (instead of looking in, and downloading into, mnist/mnist/) with the value to give."""
    monkeypatch.setenv("MINISGD_DATA", str(tmp_path / "data" / "mnist"))
    with pytest.raises(DataError, match=f"the mnist folder itself; .* instead: MINISGD_DATA={tmp_path / 'data'}$"):
        dataset_folder()
    with pytest.raises(DataError, match="the root argument is .* instead: root="):
        read_mnist(tmp_path / "data" / "mnist", download=False)
    assert not (tmp_path / "data").exists()  # nothing made
    (tmp_path / "data" / "mnist" / "mnist").mkdir(parents=True)  # a folder called mnist that does hold mnist/
    assert dataset_folder() == tmp_path / "data" / "mnist" / "mnist"
    assert dataset_folder("fashion-mnist") == tmp_path / "data" / "mnist" / "fashion-mnist"
