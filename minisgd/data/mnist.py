"""MNIST (and any dataset in its IDX layout, e.g. Fashion-MNIST): locate, download, verify, load, preprocess.

Where the files live, first match wins:

1. the ``root`` argument;
2. the environment variable ``MINISGD_DATA``;
3. a per-user cache folder: ``$XDG_CACHE_HOME/minisgd`` (default ``~/.cache/minisgd``) on Linux,
   ``~/Library/Caches/minisgd`` on macOS, ``%LOCALAPPDATA%\\minisgd\\Cache`` on Windows.

A dataset called ``name`` is the folder ``<root>/<name>/`` holding the four standard files, each raw or
gzipped (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``,
``t10k-labels-idx1-ubyte[.gz]``). Fashion-MNIST, KMNIST etc. dropped into ``<root>/fashion-mnist/`` in this
layout load with ``load_mnist(name="fashion-mnist")``.

Checks on every load: the IDX structure (:mod:`minisgd.data.idx`), the shapes (exactly MNIST's for
``name="mnist"``; consistent images and labels otherwise), and the SHA-256 of each decompressed file against
the sums shipped here (MNIST) and those listed in a ``SHA256SUMS.uncompressed`` or ``SHA256SUMS`` file in the
same folder. A dataset with no known sums loads with ``"verified": False`` in its load record.

Missing MNIST files are downloaded (unless ``download=False`` or ``MINISGD_OFFLINE=1``) from the mirrors in
``MINISGD_MNIST_MIRRORS`` (comma- or space-separated base URLs) or else :data:`MNIST_MIRRORS`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import preprocess
from .dataset import Dataset
from .download import download_file
from ..errors import DataError
from .idx import expected_sums, read_idx

__all__ = [
    "MNIST_FILES",
    "MNIST_SHA256",
    "MNIST_MIRRORS",
    "KNOWN_SHA256",
    "data_home",
    "dataset_folder",
    "mnist_mirrors",
    "download_mnist",
    "read_mnist",
    "load_mnist",
]

# Split/role -> raw file name (no .gz).
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# SHA-256 of the decompressed MNIST files (the same sums as ../shared/data/mnist/SHA256SUMS.uncompressed).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# Dataset name -> shipped payload sums. Other names rely on a SHA256SUMS file next to the data.
KNOWN_SHA256 = {"mnist": MNIST_SHA256}

# Primary first (the one torchvision uses), then the original site as fallback.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

_MNIST_SHAPES = {
    "train_images": (60000, 28, 28),
    "train_labels": (60000,),
    "test_images": (10000, 28, 28),
    "test_labels": (10000,),
}


def _user_cache_dir() -> Path:
    home = Path.home()
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local") / "minisgd" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "minisgd"
    return Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "minisgd"


def data_home(root: str | os.PathLike | None = None) -> Path:
    """The folder that holds dataset folders: ``root``, else ``$MINISGD_DATA``, else the user cache."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("MINISGD_DATA")
    if env:
        return Path(env).expanduser()
    return _user_cache_dir()


def dataset_folder(name: str = "mnist", root: str | os.PathLike | None = None) -> Path:
    """``data_home(root) / name``: where the dataset's IDX files are looked for and downloaded to.

    A home that is itself called ``name`` and holds no ``name/`` folder (``MINISGD_DATA=/data/mnist``, the
    dataset's own folder instead of the one that contains it) raises :class:`~minisgd.errors.DataError` saying
    which folder to give, rather than looking in, and downloading into, ``/data/mnist/mnist/``."""
    home = data_home(root)
    if home.name == name and not (home / name).is_dir():
        given, fix = ("the root argument", f"root={str(home.parent)!r}") if root is not None else \
            ("MINISGD_DATA", f"MINISGD_DATA={home.parent}")
        raise DataError(f"{given} is {home}, the {name} folder itself; give the folder that contains {name}/ "
                        f"instead: {fix}")
    return home / name


def mnist_mirrors(mirrors: Sequence[str] | None = None) -> list[str]:
    """Base URLs to download from: ``mirrors``, else ``$MINISGD_MNIST_MIRRORS``, else :data:`MNIST_MIRRORS`."""
    if mirrors is None:
        env = os.environ.get("MINISGD_MNIST_MIRRORS", "")
        mirrors = env.replace(",", " ").split() or list(MNIST_MIRRORS)
    if isinstance(mirrors, str):
        mirrors = [mirrors]
    return [m if m.endswith("/") else m + "/" for m in mirrors]


def _locate(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _where(root) -> str:
    if root is not None:
        return "from the root argument"
    if os.environ.get("MINISGD_DATA"):
        return "from MINISGD_DATA"
    return "the user cache; set MINISGD_DATA to use another folder"


def download_mnist(
    root: str | os.PathLike | None = None,
    *,
    name: str = "mnist",
    mirrors: Sequence[str] | None = None,
    force: bool = False,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
    progress: bool | None = None,
) -> Path:
    """Download the four ``<stem>.gz`` files that are missing from ``dataset_folder(name, root)``.

    Each is fetched with :func:`~minisgd.data.download.download_file` (mirrors in order, retries with backoff,
    progress bar, SHA-256 of the decompressed payload, atomic write). ``force`` re-downloads present files.
    For a ``name`` other than ``"mnist"`` pass ``mirrors``; its sums come from a ``SHA256SUMS*`` file in the
    folder, if any (otherwise only the gzip CRC checks the transfer). Returns the folder.
    """
    folder = dataset_folder(name, root)
    if mirrors is None and name != "mnist":
        raise DataError(f"download_mnist: no known mirrors for {name!r}; pass mirrors=[base URL, ...]")
    bases = mnist_mirrors(mirrors)
    for stem in MNIST_FILES.values():
        if not force and _locate(folder, stem) is not None:
            continue
        sums = [s for kind, s, _ in expected_sums(folder, f"{stem}.gz", KNOWN_SHA256.get(name)) if kind == "payload"]
        download_file(
            [base + f"{stem}.gz" for base in bases],
            folder / f"{stem}.gz",
            sha256=sums[0] if sums else None,
            retries=retries, backoff=backoff, timeout=timeout, progress=progress,
        )
    return folder


def _offline() -> bool:
    return os.environ.get("MINISGD_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def read_mnist(
    root: str | os.PathLike | None = None,
    *,
    name: str = "mnist",
    download: bool | None = None,
    mirrors: Sequence[str] | None = None,
    progress: bool | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
) -> tuple[dict[str, np.ndarray], dict]:
    """Read and check the four IDX files; return ``(arrays, record)``.

    ``arrays`` maps ``train_images`` (N, H, W) uint8, ``train_labels`` (N,) uint8, ``test_images``,
    ``test_labels``. ``record`` is the load step for the dataset's metadata: ``{"op": "load", "dataset",
    "format": "idx", "sha256": {file: payload sum}, "verified": bool}``.

    ``download``: ``None`` downloads missing files unless ``MINISGD_OFFLINE`` is set; ``True`` always may;
    ``False`` never does (a missing file is an error saying what to do).
    """
    folder = dataset_folder(name, root)
    want_download = (not _offline()) if download is None else bool(download)
    missing = [stem for stem in MNIST_FILES.values() if _locate(folder, stem) is None]
    if missing and want_download and (name == "mnist" or mirrors is not None):
        download_mnist(root, name=name, mirrors=mirrors, retries=retries, backoff=backoff, timeout=timeout,
                       progress=progress)
        missing = [stem for stem in MNIST_FILES.values() if _locate(folder, stem) is None]
    if missing:
        how = "pass download=True" if name == "mnist" else "pass download=True with mirrors=[...]"
        if _offline() and download is None:
            how = "unset MINISGD_OFFLINE to download them"
        raise DataError(
            f"{folder} ({_where(root)}): {', '.join(missing)} not found (raw or .gz). To fix: {how}, copy the "
            f"files there, or set MINISGD_DATA to the folder that contains '{name}/'."
        )

    arrays: dict[str, np.ndarray] = {}
    digests: dict[str, str] = {}
    verified = True
    for role, stem in MNIST_FILES.items():
        path = _locate(folder, stem)
        sums = expected_sums(folder, path.name, KNOWN_SHA256.get(name))
        verified &= any(kind == "payload" for kind, _, _ in sums)
        shape = _MNIST_SHAPES[role] if name == "mnist" else ((None,) * (3 if role.endswith("images") else 1))
        arrays[role], digests[stem] = read_idx(path, sums=sums, expected_shape=shape, return_sha256=True)

    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape[0] != labels.shape[0]:
            raise DataError(
                f"{folder}: {split} has {images.shape[0]} images but {labels.shape[0]} labels; the files do not "
                f"belong together. Replace them with a matching set."
            )
        if images.dtype != np.uint8 or labels.dtype != np.uint8:
            raise DataError(f"{folder}: {split} files must hold uint8 values, got {images.dtype} and {labels.dtype}")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(f"{folder}: train and test images differ in size; the files do not belong together")
    record = {"op": "load", "dataset": name, "format": "idx", "sha256": digests, "verified": bool(verified)}
    return arrays, record


def load_mnist(
    root: str | os.PathLike | None = None,
    *,
    name: str = "mnist",
    scale: bool = True,
    pool: int = 1,
    standardize: bool = False,
    pca: int | None = None,
    classes: Sequence[int] | None = None,
    n_train: int | None = None,
    n_val: int = 0,
    seed: int = 0,
    download: bool | None = None,
    mirrors: Sequence[str] | None = None,
    progress: bool | None = None,
    device: str = "cpu",
) -> Dataset:
    """MNIST (or an IDX dataset ``name``) as a :class:`Dataset`, preprocessed in this fixed order:

    1. ``scale``: pixels / 255 into [0, 1] (done while converting to float64);
    2. ``classes``: keep those classes, relabelled ``classes[i] -> i`` (e.g. ``(0, 1)``);
    3. ``n_val``: move that many training examples (stratified, by ``seed``) into a validation split;
    4. ``n_train``: keep a stratified subset of that many training examples (by ``seed``);
    5. ``pool``: average pooling by that factor (2: 28x28 -> 14x14; 4: -> 7x7);
    6. ``standardize``: per-pixel, with the training split's statistics;
    7. ``pca``: project onto that many principal directions of the training split.

    Choosing examples before fitting keeps every fitted statistic (6, 7) a function of the final training split only.
    Each step is recorded in ``preprocessing``; for other orders call :mod:`minisgd.data.preprocess`
    directly. X: (N, d) float64; y: (N,) int64. ``device``: ``"cpu"`` or ``"gpu"``.
    """
    arrays, record = read_mnist(root, name=name, download=download, mirrors=mirrors, progress=progress)
    num_classes = int(max(arrays["train_labels"].max(), arrays["test_labels"].max())) + 1
    records = [record]
    factor = 1.0
    if scale:
        # Scaling while converting uint8 -> float64 saves a full pass and an (N, D) allocation; the values
        # are bit-for-bit those of preprocess.scale (x * (1/255) in float64).
        factor = 1.0 / 255.0
        records.append({"op": "scale", "divisor": 255.0})

    def floats(images):  # (N, H, W) uint8 -> (N, H*W) float64
        return np.multiply(images.reshape(images.shape[0], -1), factor, dtype=np.float64)

    ds = Dataset(
        name=name,
        X_train=floats(arrays["train_images"]),
        y_train=arrays["train_labels"].astype(np.int64),
        X_test=floats(arrays["test_images"]),
        y_test=arrays["test_labels"].astype(np.int64),
        num_classes=num_classes,
        task="classification",
        image_shape=arrays["train_images"].shape[1:],
        preprocessing=records,
    )
    if classes is not None:
        ds = preprocess.select_classes(ds, classes)
    if n_val:
        ds = preprocess.validation_split(ds, n_val, seed=seed)
    if n_train is not None:
        ds = preprocess.stratified_subset(ds, n_train, seed=seed)
    if pool and pool != 1:
        ds = preprocess.avg_pool(ds, pool)
    if standardize:
        ds = preprocess.standardize(ds)
    if pca is not None:
        ds = preprocess.pca(ds, pca)
    return ds if device == "cpu" else ds.to(device)
