"""Storage: writes that are atomic and say what the disk refused, folder locks (refused at once naming the holder,
gone with it however it ends), sealed JSON, and reads of untrusted files that check sizes before reading and execute
nothing."""
import errno
import io
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from minisgd.errors import CorruptFileError, FolderInUseError, StorageError
from minisgd.training import storage


def test_atomic_write_replaces_whole_and_a_refused_write_names_file_and_bytes(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    storage.atomic_write_bytes(path, b"old")
    storage.atomic_write_bytes(path, b"new!")
    assert path.read_bytes() == b"new!" and os.listdir(tmp_path) == ["a.json"]
    real = os.replace
    for code, message in [(errno.ENOSPC, f"cannot write {path} (5 bytes): {os.strerror(errno.ENOSPC)}"),
                          (errno.EROFS, f"cannot write {path}: {os.strerror(errno.EROFS)}")]:
        def refuse(src, dst, code=code):
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(os, "replace", refuse)
        with pytest.raises(StorageError) as error:
            storage.atomic_write_bytes(path, b"never")
        assert str(error.value) == message and isinstance(error.value, OSError)
        assert error.value.errno == code and error.value.needed == 5 and error.value.path == path
        monkeypatch.setattr(os, "replace", real)
        assert path.read_bytes() == b"new!" and os.listdir(tmp_path) == ["a.json"]  # old file whole, no temporary
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(OSError, match="I/O error") as error:  # anything else passes through as it is
        storage.atomic_write_bytes(path, b"never")
    assert not isinstance(error.value, StorageError)


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    names = [".a.json.tmp-123", ".b.npz.tmp-9", ".lock", "a.json", ".hidden", ".c.tmp-x", "d.tmp-1"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    removed = storage.remove_stale_temporaries(tmp_path, tmp_path / "missing")
    assert sorted(p.name for p in removed) == [".a.json.tmp-123", ".b.npz.tmp-9"]
    assert sorted(os.listdir(tmp_path)) == sorted(set(names) - {".a.json.tmp-123", ".b.npz.tmp-9"})


def test_folder_lock_refuses_a_second_holder_at_once_and_goes_with_the_first(tmp_path):
    folder = tmp_path / "run"
    with storage.folder_lock(folder):
        assert (folder / ".lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(FolderInUseError, match=rf"{folder} is in use by another minisgd process \(PID "
                                                   rf"{os.getpid()}\)"):
            with storage.folder_lock(folder):
                pass
    with storage.folder_lock(folder):  # released on exit
        pass
    # another process takes it, says so on a pipe, and is killed: the lock goes with it
    code = ("import sys, time; from minisgd.training.storage import folder_lock\n"
            f"with folder_lock({str(folder)!r}):\n    print('locked', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(FolderInUseError, match=f"PID {holder.pid}"):
            with storage.folder_lock(folder):
                pass
    finally:
        holder.kill()
        holder.wait()
    with storage.folder_lock(folder):  # not stale after a SIGKILL
        pass


def test_seal_catches_one_edited_digit():
    obj = storage.seal({"b": [1.5, float("nan"), 3], "a": {"step": 120}})
    storage.check_seal(json.loads(json.dumps(obj)), "x.json")  # survives a round trip through JSON text
    edited = json.loads(json.dumps(obj).replace("120", "121"))
    with pytest.raises(CorruptFileError, match="x.json: its content does not match its json_sha256"):
        storage.check_seal(edited, "x.json")
    with pytest.raises(CorruptFileError, match="no json_sha256 checksum"):
        storage.check_seal({"a": 1}, "x.json")


def test_reads_check_the_size_before_reading(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(storage.MAX_JSON_BYTES + 1)  # sparse: costs no disk, and is never read
    with pytest.raises(CorruptFileError, match=rf"big.json: {storage.MAX_JSON_BYTES + 1:,} bytes, more than a JSON "
                                               "file may hold"):
        storage.read_json(big)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # opening it would block forever
    with pytest.raises(CorruptFileError, match="fifo.json: missing or not a regular file"):
        storage.read_json(fifo)


@pytest.mark.parametrize("text, match", [(b"{not json", "not valid JSON"), (b"[1, 2]", "holds a JSON list"),
                                         (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
                                         (b"\xff\xfe", "not valid JSON"), (b'{"a": 1' + b"0" * 5000 + b"}",
                                                                           "not valid JSON")])
def test_malformed_json_is_one_error_naming_the_file(tmp_path, text, match):
    path = tmp_path / "p.json"
    path.write_bytes(text)
    with pytest.raises(CorruptFileError, match=f"p.json: {match}"):
        storage.read_json(path)


def _npz(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npy_header(shape, dtype="<f8"):
    header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


def _zip(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def test_npz_round_trip():
    arrays = storage.read_npz(_npz(a=np.arange(5.0), b=np.ones((2, 3), np.int64), c=np.float32(2.5)), "x.npz")
    assert sorted(arrays) == ["a", "b", "c"] and arrays["b"].dtype == np.int64
    assert arrays["a"].tobytes() == np.arange(5.0).tobytes() and arrays["c"] == np.float32(2.5)


@pytest.mark.parametrize("data, match", [
    (_npz(a=np.array([{"x": 1}], dtype=object)), "holds Python objects"),  # a pickle inside
    (_zip({"a.npy": _npy_header((10 ** 12,)) + b"\0" * 16}), r"header says \(1000000000000,\)"),
    (_zip({"a.npy": _npy_header((4,)) + b"\0" * 16}), "holds 16"),  # 32 bytes claimed
    (_zip({"a.npy": _npy_header((2,), "|O") + b"\0" * 16}), "holds Python objects"),
    (_zip({"evil.pkl": b"cos\nsystem\n"}), "not a .npy array"),
    (b"PK\x03\x04 not really a zip", "not a zip file"),
    (_npz(a=np.arange(4.0))[:-30], ""),  # truncated
])
def test_crafted_npz_is_refused_naming_the_file_before_allocating(data, match):
    with pytest.raises(CorruptFileError, match=f"x.npz: not a readable NPZ of arrays.*{match}"):
        storage.read_npz(data, "x.npz")


def test_npz_with_a_bad_crc_or_too_much_is_refused():
    data = bytearray(_npz(a=np.arange(64.0)))
    at = bytes(data).index(np.arange(64.0).tobytes()) + 100
    data[at] ^= 1  # one bit of the array data flipped
    with pytest.raises(CorruptFileError, match="CRC"):
        storage.read_npz(bytes(data), "x.npz")
    with pytest.raises(CorruptFileError, match="would take 640 bytes, more than the 100 allowed"):
        storage.read_npz(_npz(a=np.arange(64.0)), "x.npz", limit=100)
