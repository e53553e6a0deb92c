"""Read IDX files (the format of MNIST, Fashion-MNIST, KMNIST, EMNIST), gzip-compressed or raw, and check them.

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic number -- two zero bytes,
a type code, the number of dimensions n -- then n big-endian uint32 sizes, then the values in C order,
big-endian. The type codes:

    0x08 uint8   0x09 int8   0x0B int16   0x0C int32   0x0D float32   0x0E float64

A file is checked in this order, so the message names the first thing wrong: it exists, is a regular file and
holds at most :data:`MAX_IDX_BYTES` (checked before it is read); its gzip stream (if compressed) decompresses to at
most :data:`MAX_IDX_BYTES` (checked as it decompresses: a small file that would inflate to gigabytes is stopped
there), is complete and its CRC holds; the magic number; the header length; the payload size against the sizes in
the header (computed in Python integers, before any array is made: a header claiming 10^12 elements costs
nothing); the expected shape, if given; the SHA-256 sums, if known. Nothing in a data file is executed. Checksums
are of the *decompressed* payload (the file as ``gunzip`` leaves it), so one sum serves the ``.gz`` and the raw
file; a ``SHA256SUMS`` file in ``sha256sum`` format may also list the sum of the ``.gz`` itself.
"""

from __future__ import annotations

import hashlib
import math
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ..errors import ChecksumError, DataError

__all__ = [
    "IDX_DTYPES",
    "read_idx",
    "read_payload",
    "parse_idx",
    "read_sha256sums",
    "expected_sums",
    "sha256_hex",
]

# Type code -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
MAX_IDX_BYTES = 2 << 30  # an IDX file, or its decompressed payload (the largest of EMNIST's is 0.55 GB)
MAX_SUMS_BYTES = 1 << 20  # a SHA256SUMS file
_FIX = "Delete it and run again to re-download it, or put a good copy there (or set MINISGD_DATA)."


def sha256_hex(data: bytes) -> str:
    """SHA-256 of ``data`` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def _read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, refused before reading when it is not a regular file or larger than ``limit``."""
    if not path.is_file():  # missing, or a FIFO or a device that would block or never end
        raise DataError(f"{path}: no such file. {_FIX}")
    size = path.stat().st_size
    if size > limit:
        raise DataError(f"{path}: {size:,} bytes, more than a data file may hold here ({limit:,}); not read. {_FIX}")
    with open(path, "rb") as fh:
        return fh.read(limit + 1)


def _gunzip(path: Path, raw: bytes, limit: int) -> bytes:
    """The decompressed content of the gzip file ``raw`` (members one after another), at most ``limit`` bytes."""
    out, rest = [], raw
    size = 0
    while rest:
        inflater = zlib.decompressobj(wbits=31)  # one gzip member, CRC checked at its end
        chunk = inflater.decompress(rest, limit + 1 - size)
        size += len(chunk)
        out.append(chunk)
        if size > limit:
            raise DataError(f"{path}: decompresses to more than {limit:,} bytes, more than a data file may hold "
                            f"here; stopped there. {_FIX}")
        if not inflater.eof:
            raise EOFError("compressed file ended before the end-of-stream marker was reached")
        rest = inflater.unused_data.lstrip(b"\0")  # gzip allows zero padding after the last member
    return b"".join(out)


def read_payload(path: str | Path, limit: int | None = None) -> tuple[bytes, bytes]:
    """Return ``(file_bytes, payload)``: the file as stored and its decompressed content.

    A file is treated as gzip when it starts with the gzip magic bytes, whatever its name, so a ``.gz`` that
    was already decompressed by a browser still reads. Raises :class:`DataError` when the file is missing, holds
    or decompresses to more than ``limit`` bytes (default :data:`MAX_IDX_BYTES`), or its gzip stream is cut short,
    :class:`ChecksumError` when the gzip stream does not decode or its CRC does not hold.
    """
    path = Path(path)
    limit = MAX_IDX_BYTES if limit is None else limit
    raw = _read_bounded(path, limit)
    if not raw.startswith(_GZIP_MAGIC):
        return raw, raw
    try:
        payload = _gunzip(path, raw, limit)
    except EOFError as exc:
        raise DataError(f"{path}: truncated: the gzip stream ends early ({len(raw)} bytes, {exc}). {_FIX}") from exc
    except zlib.error as exc:
        raise ChecksumError(f"{path}: corrupted: the gzip stream does not decode ({exc}). {_FIX}") from exc
    return raw, payload


def parse_idx(payload: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode an uncompressed IDX payload into a native-byte-order array of the header's shape.

    ``name`` is only used in error messages. The returned array owns its memory and is writeable.
    """
    if len(payload) < 4:
        raise DataError(f"{name}: truncated: {len(payload)} bytes, shorter than the 4-byte IDX magic number. {_FIX}")
    zero0, zero1, code, ndim = payload[0], payload[1], payload[2], payload[3]
    if zero0 != 0 or zero1 != 0 or code not in IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{name}: not an IDX file: magic number {payload[:4].hex()} (expected 0000 then a type code in "
            f"{sorted(hex(c) for c in IDX_DTYPES)} and a dimension count >= 1). "
            f"Check that it is the right file; {_FIX}"
        )
    header = 4 + 4 * ndim
    if len(payload) < header:
        raise DataError(f"{name}: truncated inside the header ({len(payload)} of {header} bytes). {_FIX}")
    shape = tuple(int(s) for s in np.frombuffer(payload, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python integers: no overflow however large the header's sizes
    have = len(payload) - header
    if have < expected:
        raise DataError(
            f"{name}: truncated: the header says shape {shape} ({expected} bytes of data) but only {have} "
            f"bytes follow. {_FIX}"
        )
    if have > expected:
        raise DataError(
            f"{name}: {have - expected} unexpected bytes after the {expected} bytes of data that the header "
            f"(shape {shape}) announces. {_FIX}"
        )
    values = np.frombuffer(payload, dtype=dtype, offset=header)
    # astype makes a native-order, writeable copy (frombuffer over bytes is read-only).
    return values.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def read_sha256sums(folder: str | Path) -> dict[str, dict[str, str]]:
    """Read the checksum lists next to the data, if any.

    Returns ``{"payload": {name: hex}, "file": {name: hex}}``:

    - ``SHA256SUMS.uncompressed``: sums of decompressed payloads, keyed by the raw file name (no ``.gz``);
    - ``SHA256SUMS`` (``sha256sum`` output): sums of the files as named. A name ending in ``.gz`` is a sum of
      the compressed file; any other name is a sum of a raw file, i.e. of the payload.

    Lines are ``<64 hex> <spaces> [*]<name>``; blank lines and ``#`` comments are skipped.
    """
    folder = Path(folder)
    sums: dict[str, dict[str, str]] = {"payload": {}, "file": {}}
    for listing, uncompressed in (("SHA256SUMS.uncompressed", True), ("SHA256SUMS", False)):
        path = folder / listing
        if not path.is_file():
            continue
        text = _read_bounded(path, MAX_SUMS_BYTES).decode("utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(maxsplit=1)
            digest = parts[0].lower()
            if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise DataError(
                    f"{path}, line {lineno}: expected '<64 hex digits>  <file name>', got {line!r}. "
                    f"Fix or delete that file."
                )
            fname = parts[1].strip().lstrip("*")
            if uncompressed or not fname.endswith(".gz"):
                sums["payload"][fname.removesuffix(".gz")] = digest
            else:
                sums["file"][fname] = digest
    return sums


def expected_sums(
    folder: str | Path, filename: str, builtin: Mapping[str, str] | None = None
) -> list[tuple[str, str, str]]:
    """All known sums that apply to ``folder/filename``, as ``(kind, hex, source)`` triples.

    ``kind`` is ``"payload"`` (decompressed content) or ``"file"`` (the bytes on disk); ``builtin`` maps raw
    file names to payload sums shipped with the code. Each listed sum must hold, so a ``SHA256SUMS`` that
    disagrees with the shipped constants is reported rather than silently preferred.
    """
    stem = filename.removesuffix(".gz")
    listed = read_sha256sums(folder)
    out: list[tuple[str, str, str]] = []
    if builtin and stem in builtin:
        out.append(("payload", builtin[stem].lower(), "the sums shipped with minisgd"))
    if stem in listed["payload"]:
        out.append(("payload", listed["payload"][stem], f"{Path(folder) / 'SHA256SUMS*'}"))
    if filename.endswith(".gz") and filename in listed["file"]:
        out.append(("file", listed["file"][filename], f"{Path(folder) / 'SHA256SUMS'}"))
    return out


def _check_sums(path: Path, raw: bytes, payload: bytes, sums: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    digests: dict[str, str] = {}
    for kind, want, source in sums:
        if kind not in digests:
            digests[kind] = sha256_hex(payload if kind == "payload" else raw)
        if digests[kind] != want:
            what = "decompressed content" if kind == "payload" else "file"
            raise ChecksumError(
                f"{path}: corrupted or not the expected file: the SHA-256 of its {what} is {digests[kind]}, "
                f"{source} say {want}. {_FIX}"
            )
    return digests


def read_idx(
    path: str | Path,
    *,
    sums: Iterable[tuple[str, str, str]] = (),
    expected_shape: tuple[int | None, ...] | None = None,
    return_sha256: bool = False,
) -> np.ndarray | tuple[np.ndarray, str]:
    """Read one IDX file (gzip or raw) into a NumPy array, checking it on the way.

    Parameters
    ----------
    path : the file; gzip is detected from its first bytes.
    sums : ``(kind, hex, source)`` triples as :func:`expected_sums` returns; each must match.
    expected_shape : the shape the caller needs, ``None`` entries meaning "any size"
        (e.g. ``(None, 28, 28)``); a mismatch raises :class:`DataError`.
    return_sha256 : also return the payload's SHA-256 (computed anyway when sums are checked).

    Returns
    -------
    array of the header's shape and type, in native byte order; or ``(array, sha256_hex)``.
    """
    path = Path(path)
    raw, payload = read_payload(path)
    array = parse_idx(payload, name=str(path))
    if expected_shape is not None:
        ok = len(expected_shape) == array.ndim and all(
            want is None or want == have for want, have in zip(expected_shape, array.shape)
        )
        if not ok:
            raise DataError(
                f"{path}: shape {array.shape}, expected {tuple(expected_shape)} (None = any). "
                f"Check that the file is the one its name says; {_FIX}"
            )
    digests = _check_sums(path, raw, payload, sums)
    if return_sha256:
        return array, digests.get("payload") or sha256_hex(payload)
    return array
