"""Errors raised by the data layer.

Every message names the file (or the argument), says what is wrong and what to do about it, because
the person reading it is usually halfway through an experiment and should not have to read this code.
"""

from __future__ import annotations

__all__ = ["DataError", "ChecksumError", "DownloadError"]


class DataError(ValueError):
    """A data file or a data argument is missing, malformed or inconsistent."""


class ChecksumError(DataError):
    """A file's SHA-256 (of its decompressed payload, or of the file itself) is not the known one."""


class DownloadError(DataError):
    """Every mirror failed. ``errors`` holds one ``(url, message)`` pair per failed attempt."""

    def __init__(self, message: str, errors: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.errors = list(errors or [])
