"""Files that survive crashes and cannot be turned against their reader: atomic writes, sealed JSON, bounded
reads, folder locks. Run folders (:mod:`minisgd.sweep`) and checkpoints (:mod:`minisgd.training.checkpoint`) use them.

* :func:`atomic_write_bytes`: a temporary file ``.NAME.tmp-PID`` in the same folder, ``fsync``, ``os.replace``,
  ``fsync`` of the folder, so readers see the old file or the whole new one. A process killed mid-write leaves its
  temporary file; the next writer of the folder removes it (:func:`remove_stale_temporaries`), which it may do
  because it holds the folder's lock. A write the file system refuses for lack of room (disk full, quota,
  ``RLIMIT_FSIZE``) or permission (read-only) raises :class:`~minisgd.errors.StorageError` naming the file and
  the bytes it needed.
* :func:`folder_lock`: an exclusive ``flock`` on ``FOLDER/.lock`` held while the block runs. The kernel drops it
  when the process ends in any way (``SIGKILL`` included), so a crash never leaves a stale lock; the file holds the
  holder's PID, which a refused second writer names (:class:`~minisgd.errors.FolderInUseError`).
* :func:`seal` / :func:`check_seal`: a JSON object that carries the SHA-256 of its own canonical form
  (``json.dumps(obj, sort_keys=True, separators=(",", ":"))`` without the ``json_sha256`` field), so an edited
  digit is caught. It guards against damage, not against someone who rewrites the file and its hash.
* :func:`read_json` / :func:`read_npz`: parse a file that may come from elsewhere without executing anything (no
  pickles: ``allow_pickle=False``; no ``eval``): the size is checked before the file is read, every NPZ member's
  array header is checked against the member's stored size before anything is allocated, and any failure is one
  :class:`~minisgd.errors.CorruptFileError` line naming the file.
"""
import errno
import hashlib
import io
import json
import os
import re
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, FolderInUseError, StorageError

LOCK_NAME = ".lock"
MAX_JSON_BYTES = 256 << 20  # a point's or manifest's JSON; real ones are kilobytes (histories: a few MB)
MAX_NPZ_BYTES = 16 << 30  # arrays after decompression, all members together
SEAL = "json_sha256"
_TEMPORARY = re.compile(r"^\..+\.tmp-\d+$")  # what atomic_write_bytes names its temporary files
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # disk full, quota, RLIMIT_FSIZE
_NO_WRITE = (errno.EROFS, errno.EACCES, errno.EPERM)  # read-only, no permission


def storage_error(exc, path, needed):
    """``exc`` as a :class:`StorageError` naming ``path`` and the ``needed`` bytes when it is a lack of room or of
    permission to write, else ``None``."""
    code = getattr(exc, "errno", None)
    if code not in _NO_ROOM + _NO_WRITE:
        return None
    size = f" ({needed:,} bytes)" if code in _NO_ROOM else ""
    return StorageError(f"cannot write {path}{size}: {os.strerror(code)}", errno=code, path=path, needed=needed)


def fsync_dir(folder):
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
    except OSError as exc:
        raise storage_error(exc, path, len(data)) or exc
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def remove_stale_temporaries(*folders):
    """Remove the temporary files :func:`atomic_write_bytes` left in ``folders`` when a writer was killed
    mid-write; call it holding the folders' lock (no other writer can be at work). Returns the paths removed."""
    removed = []
    for folder in map(Path, folders):
        if folder.is_dir():
            for path in folder.iterdir():
                if _TEMPORARY.match(path.name) and path.is_file():
                    path.unlink(missing_ok=True)
                    removed.append(path)
    return removed


@contextmanager
def folder_lock(folder):
    """Hold ``folder``'s lock (created with the folder if need be) while the block runs.

    Raises :class:`FolderInUseError` naming the holder's PID when another process holds it, at once (no waiting),
    and :class:`StorageError` when the folder cannot be created. Where ``fcntl`` is missing (Windows) the block runs
    unlocked.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise storage_error(exc, folder, 0) or exc
    try:
        try:
            import fcntl
        except ImportError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise FolderInUseError(f"{folder} is in use by another minisgd process (PID {holder}): wait until it "
                                   "ends, or stop it, or choose another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


# ---- sealed JSON -----------------------------------------------------------------------------------------------

def _canonical_sha256(obj):
    body = {k: v for k, v in obj.items() if k != SEAL}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal(obj):
    """``obj`` (a dict as it reads back from JSON) with ``json_sha256``, the SHA-256 of its canonical form."""
    return {**obj, SEAL: _canonical_sha256(obj)}


def check_seal(obj, path):
    """Raise :class:`CorruptFileError` naming ``path`` unless ``obj`` carries a ``json_sha256`` that matches."""
    if not isinstance(obj.get(SEAL), str):
        raise CorruptFileError(f"{path}: no {SEAL} checksum (damaged, or written by an older minisgd)")
    if obj[SEAL] != _canonical_sha256(obj):
        raise CorruptFileError(f"{path}: its content does not match its {SEAL} (modified after it was written)")


# ---- bounded reads ---------------------------------------------------------------------------------------------

def read_bytes(path, limit, what="file"):
    """The bytes of ``path``, refused (:class:`CorruptFileError`) when it is not a regular file or holds more than
    ``limit`` bytes, before anything is read."""
    path = Path(path)
    if not path.is_file():  # a FIFO or a device would block or never end
        raise CorruptFileError(f"{path}: missing or not a regular file")
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        data = fh.read(limit + 1) if size <= limit else b""
    if size > limit or len(data) > limit:
        raise CorruptFileError(f"{path}: {max(size, len(data)):,} bytes, more than a {what} may hold "
                               f"({limit:,}); not read")
    return data


def read_json(path, limit=MAX_JSON_BYTES, what="JSON file"):
    """The JSON object (a dict) in ``path``, size-checked before reading; :class:`CorruptFileError` otherwise."""
    data = read_bytes(path, limit, what)
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CorruptFileError(f"{path}: not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise CorruptFileError(f"{path}: holds a JSON {type(obj).__name__}, not an object")
    return obj


def _member_array(zf, info):
    """One ``.npy`` member of an NPZ, its header checked before the array is allocated."""
    with zf.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"member {info.filename!r} has .npy version {version}, which minisgd never writes")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)
        if dtype.hasobject:
            raise ValueError(f"member {info.filename!r} holds Python objects ({dtype}), which minisgd never "
                             "writes; not loaded (unpickling them could run code)")
        count = 1
        for n in shape:
            count *= n
        if count * dtype.itemsize != info.file_size - member.tell():
            raise ValueError(f"member {info.filename!r}: its header says {shape} {dtype} "
                             f"({count * dtype.itemsize:,} bytes), it holds {info.file_size - member.tell():,}")
    with zf.open(info) as member:
        return np.lib.format.read_array(member, allow_pickle=False)


def read_npz(data, name, limit=MAX_NPZ_BYTES):
    """The arrays (``{key: array}``) of the NPZ file whose bytes are ``data``; ``name`` (the file) is what errors
    name. Refuses, with :class:`CorruptFileError`: anything that is not a ZIP of ``.npy`` members, object arrays,
    members whose header disagrees with their size, more than ``limit`` bytes in all, a bad CRC."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            if total > limit:
                raise ValueError(f"its arrays would take {total:,} bytes, more than the {limit:,} allowed")
            arrays = {}
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise ValueError(f"member {info.filename!r} is not a .npy array")
                arrays[info.filename[:-len(".npy")]] = _member_array(zf, info)
            return arrays
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, NotImplementedError) as exc:
        raise CorruptFileError(f"{name}: not a readable NPZ of arrays ({exc})") from None
