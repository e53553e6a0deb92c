"""Every error minisgd raises on purpose, under one root: ``except minisgd.MinisgdError`` catches them all.

Each class also derives from the built-in exception it refines (``ValueError`` for bad arguments and data,
``MemoryError``, ``RuntimeError``, ``OSError``, ``ImportError``), so code that catches the built-in keeps working.
Every message says what was wrong and what to do about it; every check that raises runs before the heavy work,
so a bad call costs nothing.

    MinisgdError
    ├── ShapeError, NonFiniteError, LabelError       (ValueError)  arrays that do not fit the call
    ├── ConfigError                                   (ValueError)  a config value of the wrong type or range
    │   └── ConfigMismatchError                                     resuming with another config, network or data
    ├── DataError                                     (ValueError)  a data file or argument that cannot be used
    │   ├── ChecksumError                                           a file whose SHA-256 is not the known one
    │   ├── CorruptFileError                                        a stored file damaged, too large or not ours
    │   └── DownloadError                              (OSError)    every mirror failed
    ├── UnsupportedModelError                         (ValueError)  a model brought in that minisgd cannot represent
    ├── BatchNormModeError                            (ValueError)  a quantity a batch-normalized net has in eval mode only
    ├── HessianTooLargeError                          (MemoryError) a dense (P, P) that would not fit
    ├── BackendUnavailableError                       (RuntimeError) no such device or array library
    ├── ExtraNotInstalledError                        (ImportError) an optional dependency is missing
    ├── ClusterError                                  (RuntimeError) a Dask cluster that cannot be used
    ├── CheckpointError                               (RuntimeError) a checkpoint missing, damaged or not ours
    ├── RunFolderError                                (OSError)     a run folder that cannot be written (a file, read-only)
    ├── FolderInUseError                              (RuntimeError) another process writes that folder (its PID)
    ├── StorageError                                  (OSError)     disk full or read-only: the file and bytes needed
    ├── DivergenceError                               (RuntimeError) training's loss blew up (carries the last good state)
    └── ConvergenceError                              (RuntimeError) Lanczos missed its tolerance (carries the partial result)

:class:`minisgd.training.callbacks.StopTraining` is not here: it is a signal a measurement raises to end training
cleanly, not an error.
"""


class MinisgdError(Exception):
    """The root of every error minisgd raises on purpose."""


class ShapeError(MinisgdError, ValueError):
    """An array has the wrong number of dimensions or the wrong length along one of them."""


class NonFiniteError(MinisgdError, ValueError):
    """NaN or inf where finite numbers are required (inputs, parameters, a diverging loss)."""


class LabelError(MinisgdError, ValueError):
    """Targets that do not fit the loss: labels out of range, float labels for cross-entropy, ..."""


class ConfigError(MinisgdError, ValueError):
    """A configuration value of the wrong type or outside its range; the message names the key."""


class ConfigMismatchError(ConfigError):
    """Resuming with a configuration (or network, or data) that differs from the stored one."""


class DataError(MinisgdError, ValueError):
    """A data file or a data argument is missing, malformed or inconsistent."""


class ChecksumError(DataError):
    """A file's SHA-256 (of its decompressed payload, or of the file itself) is not the known one."""


class CorruptFileError(DataError):
    """A file read from a run folder, a checkpoint or a data folder that is truncated, modified, larger than such a
    file may be, or not what minisgd writes; the message names the file."""


class DownloadError(DataError, OSError):
    """Every mirror failed. ``errors`` holds one ``(url, message)`` pair per failed attempt."""

    def __init__(self, message, errors=None):
        super().__init__(message)
        self.errors = list(errors or [])

    def __str__(self):  # OSError's own __str__ would print the args tuple
        return str(self.args[0]) if self.args else ""


class UnsupportedModelError(MinisgdError, ValueError):
    """A model brought in (``MLP.from_torch``, ``MLP.from_params``) that is not an MLP minisgd can represent; the
    message names the module or the layer and says what would work."""


class BatchNormModeError(MinisgdError, ValueError):
    """A quantity asked of a batch-normalized network in training mode, where every example's output depends on the
    whole batch (per-example gradients, exact Hessians, Gauss-Newton): the message says to use the eval-mode net,
    ``net.eval_mode(stats)``, a function of theta alone."""


class HessianTooLargeError(MinisgdError, MemoryError):
    """A dense (P, P) matrix that would not fit in the memory available to the backend."""


class BackendUnavailableError(MinisgdError, RuntimeError):
    """The requested device or array library is not installed or has no device."""


class ExtraNotInstalledError(MinisgdError, ImportError):
    """An optional dependency, installed with one of the package's extras, is missing; the message names the
    ``pip install`` command."""


class ClusterError(MinisgdError, RuntimeError):
    """A Dask cluster that cannot be used: no scheduler answers at the address, or its workers cannot run minisgd."""


class CheckpointError(MinisgdError, RuntimeError):
    """A checkpoint that is missing, unreadable, or does not match what it claims to be."""


class RunFolderError(MinisgdError, OSError):
    """A run folder (``--out``) that is a file, lies under a file, or cannot be written to."""

    def __str__(self):  # OSError's own __str__ would print the args tuple
        return str(self.args[0]) if self.args else ""


class FolderInUseError(MinisgdError, RuntimeError):
    """Another process holds the lock of the run folder or checkpoint folder this one was to write; the message
    names its PID."""


class StorageError(MinisgdError, OSError):
    """A write the file system refused for lack of room (disk full, quota, file size limit) or of permission
    (read-only). ``errno`` is the system's code, ``path`` the file or folder, ``needed`` the bytes it needed."""

    def __init__(self, message, *, errno=None, path=None, needed=0):
        super().__init__(message)
        self.errno, self.path, self.needed = errno, path, needed

    def __str__(self):  # OSError's own __str__ would print the args tuple
        return str(self.args[0]) if self.args else ""


class DivergenceError(MinisgdError, RuntimeError):
    """The loss became non-finite or exceeded ``divergence_factor`` times the first minibatch loss.

    Attributes: ``theta`` (the last parameters whose loss was finite and below the limit), ``history`` (every
    measurement up to the failing step), ``step`` (the step whose loss failed, = ``len(history["step"])``),
    ``loss`` (the failing value), ``opt_state`` (the optimizer state that goes with ``theta``).
    """

    def __init__(self, message, *, theta, history, step, loss, opt_state):
        super().__init__(message)
        self.theta, self.history, self.step, self.loss, self.opt_state = theta, history, step, loss, opt_state


class ConvergenceError(MinisgdError, RuntimeError):
    """Lanczos did not reach the tolerance; ``.partial`` holds the best Ritz pairs found."""

    def __init__(self, message, partial):
        super().__init__(message)
        self.partial = partial
