"""Checkpoint folders: arrays in an NPZ file and a JSON manifest, each written atomically, checked on load.

A checkpoint folder holds ``checkpoint.json`` (the manifest) and the one NPZ file it names::

    runs/sb/checkpoint.json             {"format": "minisgd-checkpoint", "version": 2, "arrays": "checkpoint-....npz",
                                          "sha256": "...", "bytes": n, "meta": {...}, "json_sha256": "..."}
    runs/sb/checkpoint-000000500-1f3a9c2e.npz
    runs/sb/.lock                       held by the run writing the folder (:func:`writing`)

Writing order: the NPZ under a fresh name (:func:`~minisgd.training.storage.atomic_write_bytes`), then the manifest
the same way, then older NPZ files are removed. A crash at any moment leaves a manifest that names a complete NPZ
with a matching SHA-256: the folder always holds the previous or the new checkpoint, never a mixture. The manifest
is sealed: ``json_sha256`` covers everything in it, the meta and the trainer's counters included, so an edited
``counters.step`` is caught (version 1 manifests, from before the seal, are read without it). Loading checks the
format, the version, the seal and the hash, and raises :class:`CheckpointError` saying what is wrong (missing
folder, missing, unreadable or malformed manifest, missing or modified arrays).

One writer at a time: a training run with ``out=`` holds the folder's lock while it runs (:func:`writing`), so a
second run into the same folder is refused (:class:`~minisgd.errors.FolderInUseError`, naming the first one's PID)
instead of deleting its files; the lock goes with the process, however it ends. Taking the lock removes what
crashed writers left: temporary files, and NPZ files written but never named by a manifest.

The NPZ holds plain numeric arrays only (read with :func:`~minisgd.training.storage.read_npz`: no pickles, sizes
checked before anything is allocated); ``meta`` is anything JSON can hold. What goes in them is the trainer's
business (:mod:`minisgd.training.train`).
"""
import hashlib
import io
import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..backend import to_numpy
from ..errors import CheckpointError, ConfigMismatchError, CorruptFileError
from .storage import (atomic_write_bytes, check_seal, folder_lock, read_bytes, read_json, read_npz,
                      remove_stale_temporaries, seal)
from .storage import MAX_JSON_BYTES, MAX_NPZ_BYTES

FORMAT = "minisgd-checkpoint"
VERSION = 2
_NPZ_NAME = re.compile(r"^[A-Za-z0-9_.-]+-\d{9,}-[0-9a-f]{8}\.npz$")  # what save() names its arrays


def manifest_path(folder, name="checkpoint"):
    return Path(folder) / f"{name}.json"


def has_checkpoint(folder, name="checkpoint"):
    """Whether ``folder`` holds a manifest ``name.json`` (it may still be corrupt; :func:`load` checks)."""
    return manifest_path(folder, name).is_file()


@contextmanager
def writing(folder):
    """Hold the lock of checkpoint folder ``folder`` (``None``: nothing to hold) while the block runs, after
    removing what crashed writers left in it: temporary files, and NPZ files no readable manifest names."""
    if folder is None:
        yield
        return
    with folder_lock(folder):
        remove_stale_temporaries(folder)
        named = {}
        for manifest in Path(folder).glob("*.json"):
            try:
                named[manifest.stem] = read_json(manifest)["arrays"]
            except (CorruptFileError, KeyError):
                named[manifest.stem] = None  # unreadable: keep every NPZ of that name, one may be its arrays
        for npz in Path(folder).glob("*.npz"):
            owner = npz.name.rsplit("-", 2)[0]
            if _NPZ_NAME.match(npz.name) and named.get(owner, "") not in (None, npz.name):
                npz.unlink()
        yield


def save(folder, arrays, meta, *, step, name="checkpoint"):
    """Write ``arrays`` (str -> NumPy array) and ``meta`` (JSON-able dict) as checkpoint ``name`` in ``folder``.

    Returns the manifest's path. Older NPZ files of the same ``name`` are removed once the new manifest is in place.
    Raises :class:`~minisgd.errors.StorageError` (naming the file and the bytes it needed) when the disk is full
    or read-only; the previous checkpoint is then intact.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    data = buffer.getvalue()
    npz_name = f"{name}-{int(step):09d}-{os.urandom(4).hex()}.npz"  # fresh name: the old one stays valid
    atomic_write_bytes(folder / npz_name, data)
    manifest = seal({"format": FORMAT, "version": VERSION, "arrays": npz_name,
                     "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "meta": meta})
    path = manifest_path(folder, name)
    atomic_write_bytes(path, (json.dumps(manifest, indent=1) + "\n").encode())
    for old in folder.glob(f"{name}-*.npz"):
        if old.name != npz_name:
            old.unlink(missing_ok=True)
    return path


def _manifest(folder, name):
    """The manifest of checkpoint ``name``, its structure and seal checked."""
    path = manifest_path(folder, name)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint in {folder}: {path.name} is missing (a run with out={str(folder)!r} "
                              "writes it every checkpoint_every steps and when it stops)")
    try:
        manifest = read_json(path, MAX_JSON_BYTES, "checkpoint manifest")
    except CorruptFileError as exc:
        raise CheckpointError(f"corrupt checkpoint manifest {exc}; resume from a copy or start afresh") from None
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a minisgd checkpoint (format {manifest.get('format')!r})")
    version = manifest.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(f"{path} has version {version!r}, newer than this minisgd reads ({VERSION}); "
                              "upgrade minisgd")
    if version >= 2:
        try:
            check_seal(manifest, path)
        except CorruptFileError as exc:
            raise CheckpointError(f"corrupt checkpoint manifest {exc}; resume from a copy or start afresh") \
                from None
    kinds = {"arrays": str, "sha256": str, "meta": dict}
    wrong = [f"{k} is {type(manifest.get(k)).__name__}" for k, kind in kinds.items()
             if not isinstance(manifest.get(k), kind)]
    if wrong or not _NPZ_NAME.match(manifest["arrays"]):
        what = "; ".join(wrong) or f"arrays names {manifest['arrays']!r}, not an NPZ file of this folder"
        raise CheckpointError(f"corrupt checkpoint manifest {path}: {what}; resume from a copy or start afresh")
    return manifest


def load(folder, name="checkpoint"):
    """``(arrays, meta)`` of checkpoint ``name`` in ``folder``: arrays as NumPy, meta as stored.

    Raises :class:`CheckpointError` when the folder, the manifest or the arrays are missing, unreadable, malformed,
    or do not match the manifest's SHA-256.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"no checkpoint at {folder}: the folder does not exist")
    manifest = _manifest(folder, name)
    npz_name, digest = manifest["arrays"], manifest["sha256"]
    npz = folder / npz_name
    if not npz.is_file():
        raise CheckpointError(f"corrupt checkpoint in {folder}: {name}.json names {npz_name}, which is missing")
    try:
        data = read_bytes(npz, MAX_NPZ_BYTES, "checkpoint's NPZ")
        if hashlib.sha256(data).hexdigest() != digest:
            raise CheckpointError(f"corrupt checkpoint in {folder}: {npz_name} does not match the SHA-256 in "
                                  f"{name}.json (truncated or modified; {len(data)} bytes, {manifest.get('bytes')} "
                                  "written)")
        arrays = read_npz(data, npz)
    except CorruptFileError as exc:
        raise CheckpointError(f"corrupt checkpoint: {exc}") from None
    return arrays, manifest["meta"]


# ---- training states ------------------------------------------------------------------------------------------

def save_state(folder, theta, opt_state, counters, history, meta, name="checkpoint", bn_stats=None):
    """Write a training state: ``theta``, the optimizer state's arrays, a batch-normalized net's running statistics
    ``bn_stats`` (they are not parameters, but resuming and eval mode need them) and the history (one array per key,
    exact: float64 and int64 round-trip bit for bit) in the NPZ; ``counters`` (a dict with ``"step"``), the
    optimizer's step count, the history's keys and ``meta`` in the manifest. Device arrays are copied to the host.
    """
    arrays = {"theta": to_numpy(theta)}
    if bn_stats is not None:
        arrays["bn_stats"] = to_numpy(bn_stats)
    arrays.update({f"opt.{k}": to_numpy(v) for k, v in opt_state.items() if k != "step"})
    arrays.update({f"history.{k}": np.asarray(v) for k, v in history.items()})
    meta = {**meta, "counters": dict(counters), "opt_step": opt_state["step"], "history_keys": list(history)}
    return save(folder, arrays, meta, step=counters["step"], name=name)


def load_state(folder, name="checkpoint"):
    """The state written by :func:`save_state`: a dict with ``theta``, ``opt_state``, ``bn_stats`` (NumPy arrays;
    ``bn_stats`` None for a net without batch normalization),
    ``counters``, ``history`` (dict of lists of Python numbers) and ``meta`` (the rest of the manifest's meta).
    Raises :class:`CheckpointError` when the manifest's meta does not have the shape :func:`save_state` gives it."""
    arrays, meta = load(folder, name)
    counters, keys = meta.get("counters"), meta.get("history_keys")
    number = (int, float, type(None))
    malformed = [what for what, bad in (
        ("counters is not an object of numbers",
         not isinstance(counters, dict) or not all(isinstance(v, number) for v in counters.values())
         or not isinstance(counters.get("step"), int)),
        ("opt_step is not an integer", not isinstance(meta.get("opt_step"), int)),
        ("history_keys is not a list of names",
         not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)),
        ("config is not an object", not isinstance(meta.get("config", {}), dict)),
        ("fingerprint is not an object", not isinstance(meta.get("fingerprint", {}), dict))) if bad]
    if malformed:
        raise CheckpointError(f"malformed checkpoint manifest {manifest_path(folder, name)}: {'; '.join(malformed)}; "
                              "it was not written by minisgd.training.train, or was edited")
    try:
        opt_state = {k[4:]: v for k, v in arrays.items() if k.startswith("opt.")}
        opt_state["step"] = meta["opt_step"]
        history = {k: arrays[f"history.{k}"].tolist() for k in keys}
        return {"theta": arrays["theta"], "opt_state": opt_state, "bn_stats": arrays.get("bn_stats"),
                "counters": counters, "history": history, "meta": meta}
    except KeyError as exc:
        raise CheckpointError(f"incomplete checkpoint {manifest_path(folder, name)}: its arrays lack {exc}; it was not "
                              "written by minisgd.training.train") from None


def check_compatible(folder, stored, now, may_change=()):
    """Raise :class:`ConfigMismatchError` naming every key whose value differs between the dicts ``stored``
    and ``now``, other than those in ``may_change``."""
    changed = [k for k in sorted(set(stored) | set(now)) if k not in may_change and stored.get(k) != now.get(k)]
    if changed:
        lines = "; ".join(f"{k}: stored {stored.get(k)!r}, now {now.get(k)!r}" for k in changed)
        allowed = f"Only {', '.join(may_change)} may change when resuming; " if may_change else ""
        raise ConfigMismatchError(f"cannot resume {folder}: {', '.join(changed)} changed ({lines}). {allowed}"
                                  "for a new configuration start a new run from the checkpoint's theta")
