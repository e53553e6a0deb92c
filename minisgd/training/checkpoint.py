"""Checkpoint folders: arrays in an NPZ file and a JSON manifest, each written atomically, checked on load.

A checkpoint folder holds ``checkpoint.json`` (the manifest) and the one NPZ file it names::

    runs/sb/checkpoint.json             {"format": "minisgd-checkpoint", "version": 1, "arrays": "checkpoint-....npz",
                                          "sha256": "...", "meta": {...}}
    runs/sb/checkpoint-000000500-1f3a9c2e.npz

Writing order: the NPZ under a fresh name (temporary file in the same folder, ``fsync``, ``os.replace``), then the
manifest the same way, then the folder entry is synced and older NPZ files are removed. A crash at any moment
leaves a manifest that names a complete NPZ with a matching SHA-256: the folder always holds the previous or the
new checkpoint, never a mixture. Loading checks the format, the version and the hash, and raises
:class:`CheckpointError` saying what is wrong (missing folder, missing or unreadable manifest, missing or
modified arrays).

The NPZ holds plain numeric arrays only (loaded with ``allow_pickle=False``); ``meta`` is anything JSON can
hold. What goes in them is the trainer's business (:mod:`minisgd.training.train`).
"""
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from ..backend import to_numpy
from ..errors import CheckpointError, ConfigMismatchError

FORMAT = "minisgd-checkpoint"
VERSION = 1




def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders; os.replace is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, data):
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def manifest_path(folder, name="checkpoint"):
    return Path(folder) / f"{name}.json"


def has_checkpoint(folder, name="checkpoint"):
    """Whether ``folder`` holds a manifest ``name.json`` (it may still be corrupt; :func:`load` checks)."""
    return manifest_path(folder, name).is_file()


def save(folder, arrays, meta, *, step, name="checkpoint"):
    """Write ``arrays`` (str -> NumPy array) and ``meta`` (JSON-able dict) as checkpoint ``name`` in ``folder``.

    Returns the manifest's path. Older NPZ files of the same ``name`` are removed once the new manifest is in place.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    data = buffer.getvalue()
    npz_name = f"{name}-{int(step):09d}-{os.urandom(4).hex()}.npz"  # fresh name: the old one stays valid
    atomic_write_bytes(folder / npz_name, data)
    manifest = {"format": FORMAT, "version": VERSION, "arrays": npz_name,
                "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "meta": meta}
    path = manifest_path(folder, name)
    atomic_write_bytes(path, json.dumps(manifest, indent=1).encode())
    for old in folder.glob(f"{name}-*.npz"):
        if old.name != npz_name:
            old.unlink(missing_ok=True)
    return path


def load(folder, name="checkpoint"):
    """``(arrays, meta)`` of checkpoint ``name`` in ``folder``: arrays as NumPy, meta as stored.

    Raises :class:`CheckpointError` when the folder, the manifest or the arrays are missing, unreadable, or do
    not match the manifest's SHA-256.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"no checkpoint at {folder}: the folder does not exist")
    path = manifest_path(folder, name)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint in {folder}: {path.name} is missing (a run with out={str(folder)!r} "
                              "writes it every checkpoint_every steps and when it stops)")
    try:
        manifest = json.loads(path.read_text())
        npz_name, digest, meta = manifest["arrays"], manifest["sha256"], manifest["meta"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"corrupt checkpoint manifest {path}: {exc}; resume from a copy or start afresh") \
            from None
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a minisgd checkpoint (format {manifest.get('format')!r})")
    if manifest.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} has version {manifest['version']}, newer than this minisgd reads ({VERSION}); "
                              "upgrade minisgd")
    npz = folder / npz_name
    if not npz.is_file():
        raise CheckpointError(f"corrupt checkpoint in {folder}: {path.name} names {npz_name}, which is missing")
    data = npz.read_bytes()
    if hashlib.sha256(data).hexdigest() != digest:
        raise CheckpointError(f"corrupt checkpoint in {folder}: {npz_name} does not match the SHA-256 in {path.name} "
                              f"(truncated or modified; {len(data)} bytes, {manifest.get('bytes')} written)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as exc:
        raise CheckpointError(f"corrupt checkpoint in {folder}: cannot read {npz_name} ({exc})") from None
    return arrays, meta


# ---- training states ------------------------------------------------------------------------------------------

def save_state(folder, theta, opt_state, counters, history, meta, name="checkpoint"):
    """Write a training state: ``theta``, the optimizer state's arrays and the history (one array per key,
    exact: float64 and int64 round-trip bit for bit) in the NPZ; ``counters`` (a dict with ``"step"``), the
    optimizer's step count, the history's keys and ``meta`` in the manifest. Device arrays are copied to the host.
    """
    arrays = {"theta": to_numpy(theta)}
    arrays.update({f"opt.{k}": to_numpy(v) for k, v in opt_state.items() if k != "step"})
    arrays.update({f"history.{k}": np.asarray(v) for k, v in history.items()})
    meta = {**meta, "counters": dict(counters), "opt_step": opt_state["step"], "history_keys": list(history)}
    return save(folder, arrays, meta, step=counters["step"], name=name)


def load_state(folder, name="checkpoint"):
    """The state written by :func:`save_state`: a dict with ``theta``, ``opt_state`` (NumPy arrays),
    ``counters``, ``history`` (dict of lists of Python numbers) and ``meta`` (the rest of the manifest's meta)."""
    arrays, meta = load(folder, name)
    try:
        opt_state = {k[4:]: v for k, v in arrays.items() if k.startswith("opt.")}
        opt_state["step"] = meta["opt_step"]
        history = {k: arrays[f"history.{k}"].tolist() for k in meta["history_keys"]}
        return {"theta": arrays["theta"], "opt_state": opt_state, "counters": meta["counters"], "history": history,
                "meta": meta}
    except KeyError as exc:
        raise CheckpointError(f"incomplete checkpoint in {folder}: {exc} is missing; it was not written by "
                              "minisgd.training.train") from None


def check_compatible(folder, stored, now, may_change=()):
    """Raise :class:`ConfigMismatchError` naming every key whose value differs between the dicts ``stored``
    and ``now``, other than those in ``may_change``."""
    changed = [k for k in sorted(set(stored) | set(now)) if k not in may_change and stored.get(k) != now.get(k)]
    if changed:
        lines = "; ".join(f"{k}: stored {stored.get(k)!r}, now {now.get(k)!r}" for k in changed)
        allowed = f"Only {', '.join(may_change)} may change when resuming; " if may_change else ""
        raise ConfigMismatchError(f"cannot resume {folder}: {', '.join(changed)} changed ({lines}). {allowed}"
                                  "for a new configuration start a new run from the checkpoint's theta")
