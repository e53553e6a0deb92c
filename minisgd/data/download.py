"""Download one file from a list of mirrors: retries with backoff, a progress bar, checksum, atomic write.

Only the standard library (urllib) and tqdm. The file is streamed into a temporary file in the destination
folder and moved into place with :func:`os.replace` only after it has been checked, so a reader never sees a
half-written or unverified file, and a failed download leaves nothing behind: only a process killed mid-transfer can
leave a hidden ``.<name>.*.part`` file, which nothing reads.

Mirrors are tried HTTPS first (in their given order), then the others. A plain-HTTP mirror is used only when the
file's SHA-256 is known: anyone on the path can change what it serves, and the checksum is what catches that; without
one, ``http://`` mirrors are skipped (the error lists them).

What is checked, per attempt: the HTTP status; the byte count against ``Content-Length``; the size, file and
payload each at most :data:`~minisgd.data.idx.MAX_IDX_BYTES` (a mirror that sends more, or a gzip that inflates to
more, is stopped there: it cannot fill the disk); for a gzip file, that the stream decodes to its end (CRC
included); the SHA-256 of the decompressed payload (and of the file itself where that sum is known). A failure that may be transient (a connection error, a timeout, a cut
transfer, a 5xx) is retried on the same mirror after ``backoff * 2**attempt`` seconds; one that will not
change (a 404, a checksum mismatch) moves on to the next mirror at once.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path

from ..errors import DataError, DownloadError
from . import idx

__all__ = ["download_file", "progress_enabled"]

log = logging.getLogger(__name__)

_CHUNK = 1 << 16
_USER_AGENT = "minisgd-data/0.1 (+https://pypi.org/project/minisgd)"


class _Permanent(Exception):
    """A failure that retrying the same URL will not fix."""


class _Transient(Exception):
    """A failure that retrying the same URL may fix."""


def progress_enabled(progress: bool | None) -> bool:
    """``None`` means "on when stderr is a terminal"; tqdm writes to stderr, never to stdout."""
    if progress is None:
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return bool(progress)


def _fetch_once(
    url: str,
    tmp,
    *,
    gzip_payload: bool,
    timeout: float,
    progress: bool,
    desc: str,
) -> tuple[str, str]:
    """Stream ``url`` into the open binary file ``tmp``; return (sha256 of payload, sha256 of file)."""
    # The terminal bar, not tqdm.auto: the notebook variant needs ipywidgets, which minisgd does not require.
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if 500 <= exc.code < 600 or exc.code in (408, 429):
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from exc
        raise _Permanent(f"HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise _Transient(f"cannot connect: {getattr(exc, 'reason', exc)}") from exc

    file_hash = hashlib.sha256()
    payload_hash = hashlib.sha256()
    # wbits=31: gzip container; decompressing as we go lets us hash the payload without a second pass.
    inflater = zlib.decompressobj(wbits=31) if gzip_payload else None
    received = inflated = 0
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                   disable=not progress, leave=False, file=sys.stderr)
        try:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                # IncompleteRead (an HTTPException), connection reset, socket timeout
                except (http.client.HTTPException, OSError, ValueError, EOFError) as exc:
                    raise _Transient(f"transfer cut after {received} bytes: {exc!r}") from exc
                if not chunk:
                    break
                received += len(chunk)
                if received > idx.MAX_IDX_BYTES:
                    raise _Permanent(f"sends more than {idx.MAX_IDX_BYTES:,} bytes, more than a data file may hold "
                                     "here")
                tmp.write(chunk)
                file_hash.update(chunk)
                if inflater is not None:
                    try:
                        payload = inflater.decompress(chunk)
                    except zlib.error as exc:
                        raise _Permanent(f"corrupted: the gzip stream does not decode ({exc})") from exc
                    inflated += len(payload)
                    if inflated > idx.MAX_IDX_BYTES:
                        raise _Permanent(f"decompresses to more than {idx.MAX_IDX_BYTES:,} bytes, more than a data "
                                         "file may hold here")
                    payload_hash.update(payload)
                bar.update(len(chunk))
        finally:
            bar.close()
    if total is not None and received != total:
        raise _Transient(f"truncated: received {received} of {total} bytes")
    if inflater is not None:
        try:
            payload_hash.update(inflater.flush())
        except zlib.error as exc:
            raise _Permanent(f"corrupted: the gzip stream does not decode ({exc})") from exc
        if not inflater.eof:
            raise _Permanent(f"truncated: the gzip stream ends early ({received} bytes received)")
    else:
        payload_hash = file_hash
    return payload_hash.hexdigest(), file_hash.hexdigest()


def download_file(
    urls: Sequence[str],
    dest: str | Path,
    *,
    sha256: str | None = None,
    file_sha256: str | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
    progress: bool | None = None,
) -> Path:
    """Download ``dest`` from the first of ``urls`` that yields a good file; return ``dest``.

    Parameters
    ----------
    urls : full URLs, tried in order (primary mirror first, then fallbacks), the ``https://`` ones before the
        others; an ``http://`` one only when ``sha256`` is given.
    dest : where the file ends up; its folder is created if needed.
    sha256 : SHA-256 of the *decompressed* payload when ``dest`` ends in ``.gz``, else of the file.
        ``None`` skips the check (only the transfer and, for gzip, the stream's own CRC are checked).
    file_sha256 : optional SHA-256 of the compressed file as served.
    retries : attempts per mirror for transient failures (>= 1).
    backoff : seconds before the second attempt on a mirror, doubled after each further one.
    timeout : socket timeout in seconds, per connection and per read.
    progress : tqdm progress bar on stderr; ``None`` = only when stderr is a terminal.

    Raises
    ------
    DownloadError : every attempt on every mirror failed; ``.errors`` lists ``(url, reason)``, and the
        message says what to do. Nothing is left at ``dest`` (an existing ``dest`` is never touched
        unless a verified download replaces it).
    """
    if not urls:
        raise DataError(f"{dest}: no mirror URLs to download it from. Pass mirrors=[...] or set MINISGD_MNIST_MIRRORS.")
    if retries < 1:
        raise DataError(f"retries must be >= 1, got {retries}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    gzip_payload = dest.name.endswith(".gz")
    show = progress_enabled(progress)
    errors: list[tuple[str, str]] = []
    for url in sorted(urls, key=lambda u: not u.lower().startswith("https://")):  # stable: given order otherwise
        if url.lower().startswith("http://") and sha256 is None:
            errors.append((url, "skipped: plain HTTP without a known SHA-256 to check the file against"))
            continue
        for attempt in range(retries):
            if attempt:
                time.sleep(backoff * 2 ** (attempt - 1))
            # Same folder as dest, so os.replace is an atomic rename on one file system.
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
            try:
                with os.fdopen(fd, "wb") as tmp:
                    got_payload, got_file = _fetch_once(
                        url, tmp, gzip_payload=gzip_payload, timeout=timeout, progress=show, desc=dest.name
                    )
                    tmp.flush()
                    os.fsync(tmp.fileno())
                if sha256 is not None and got_payload != sha256.lower():
                    raise _Permanent(f"checksum mismatch: SHA-256 of the content is {got_payload}, expected {sha256}")
                if file_sha256 is not None and got_file != file_sha256.lower():
                    raise _Permanent(f"checksum mismatch: SHA-256 of the file is {got_file}, expected {file_sha256}")
                os.replace(tmp_name, dest)
                log.debug("downloaded %s from %s", dest, url)
                return dest
            except _Permanent as exc:
                errors.append((url, str(exc)))
                log.debug("%s: %s (trying the next mirror)", url, exc)
                break
            except _Transient as exc:
                errors.append((url, str(exc)))
                log.debug("%s: %s (attempt %d of %d)", url, exc, attempt + 1, retries)
            finally:
                if os.path.exists(tmp_name):
                    os.unlink(tmp_name)
    last = {u: r for u, r in errors}  # the last reason per mirror, and how many attempts it took
    reasons = "; ".join(f"{u}: {r}" + (f" ({n} attempts)" if (n := sum(e[0] == u for e in errors)) > 1 else "")
                        for u, r in last.items())
    any_checksum = any("checksum" in r or "corrupted" in r for _, r in errors)
    if any_checksum:
        hint = ("A mirror served a file that is not the known one; try another mirror (mirrors=[...] or "
                "MINISGD_MNIST_MIRRORS)")
    elif all(r.startswith("skipped: plain HTTP") for _, r in errors):
        hint = "Give an https:// mirror, or the file's SHA-256 so that a plain-HTTP one can be checked"
    else:
        hint = f"Check the network, or put the files in {dest.parent} by hand"
    raise DownloadError(
        f"{dest}: download failed from every mirror ({reasons}). {hint}, or set MINISGD_DATA to a folder that "
        f"contains a {dest.parent.name}/ folder holding them.",
        errors,
    )

