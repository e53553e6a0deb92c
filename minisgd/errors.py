"""Exceptions that say what was wrong and what to do about it.

Every check that raises one of these runs before any heavy work, so a bad call costs nothing.
"""


class ShapeError(ValueError):
    """An array has the wrong number of dimensions or the wrong length along one of them."""


class NonFiniteError(ValueError):
    """NaN or inf where finite numbers are required (inputs, parameters, a diverging loss)."""


class LabelError(ValueError):
    """Targets that do not fit the loss: labels out of range, float labels for cross-entropy, ..."""


class HessianTooLargeError(MemoryError):
    """A dense (P, P) matrix that would not fit in the memory available to the backend."""


class BackendUnavailableError(RuntimeError):
    """The requested device or array library is not installed or has no device."""


class ExtraNotInstalledError(ImportError):
    """An optional dependency, installed with one of the package's extras, is missing; the message names the
    ``pip install`` command."""


class ClusterError(RuntimeError):
    """A Dask cluster that cannot be used: no scheduler answers at the address, or its workers cannot run minisgd."""
