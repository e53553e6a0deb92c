"""Data for minisgd: MNIST-format datasets (read, verify, download, preprocess) and synthetic problems whose
population is known, all delivered as one :class:`Dataset` object.

Shapes: N examples, d inputs, K outputs (classes). Inputs X are (N, d) float64; labels (N,) int64 for
classification, targets (N, K) float64 for regression.

::

    from minisgd.data import load_mnist, make_linear_gaussian
    ds = load_mnist(pool=2, pca=50, classes=(0, 1))      # reads $MINISGD_DATA/mnist/ (downloads if missing)
    print(ds.describe())
    lg = make_linear_gaussian(d=10, seed=0)
    lg.population.population_gradient(w)                 # exact true gradient Sigma (w - w*)

Modules: :mod:`.idx` (IDX reader and checksums), :mod:`.download` (mirrors, retries, atomic write),
:mod:`.mnist` (locating and loading), :mod:`.preprocess` (recorded, deterministic steps),
:mod:`.synthetic` and :mod:`.mixture` (problems with a known population), :mod:`.dataset`, :mod:`.augment`
(random image shifts, a batch transform the trainer applies). The teacher-student problem, whose teacher is a
network, lives in :mod:`minisgd.theory.teacher_student`: data knows no model.
"""

from .dataset import TASKS, Dataset, Population, format_record
from .download import download_file
from ..errors import ChecksumError, DataError, DownloadError
from .idx import read_idx
from .mixture import BayesErrorRate, GaussianMixture, make_gaussian_mixture
from .mnist import (KNOWN_SHA256, MNIST_FILES, MNIST_MIRRORS, MNIST_SHA256, data_home, dataset_folder,
                    download_mnist, load_mnist, read_mnist)
from .preprocess import (PCA, Standardizer, avg_pool, avg_pool_images, fit_pca, pca, scale, select_classes,
                         standardize, stratified_indices, stratified_subset, validation_split)
from .synthetic import (Estimate, LinearGaussian, TwoSpirals, as_generator, estimate_mean, make_linear_gaussian,
                        make_two_spirals, seed_streams)

__all__ = [
    # dataset
    "Dataset", "Population", "TASKS", "format_record",
    # errors
    "DataError", "ChecksumError", "DownloadError",
    # MNIST-format files
    "load_mnist", "read_mnist", "download_mnist", "download_file", "read_idx", "data_home", "dataset_folder",
    "MNIST_FILES", "MNIST_SHA256", "MNIST_MIRRORS", "KNOWN_SHA256",
    # preprocessing
    "scale", "standardize", "avg_pool", "pca", "select_classes", "stratified_subset", "validation_split",
    "avg_pool_images", "fit_pca", "PCA", "Standardizer", "stratified_indices",
    # synthetic problems
    "LinearGaussian", "TwoSpirals", "GaussianMixture", "BayesErrorRate", "Estimate",
    "estimate_mean", "make_linear_gaussian", "make_two_spirals", "as_generator", "seed_streams",
    "make_gaussian_mixture",
]
