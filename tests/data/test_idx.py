"""The IDX reader on hand-made files: every type code, gzip and raw, and each way a file can be wrong."""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest

from minisgd.data import ChecksumError, DataError, read_idx
from minisgd.data.idx import IDX_DTYPES, expected_sums, parse_idx, read_sha256sums


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """Encode ``array`` as IDX by hand (independently of the reader): magic, big-endian sizes, values."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(IDX_DTYPES[code]).tobytes()


@pytest.mark.parametrize("code", sorted(IDX_DTYPES))
@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_every_type(tmp_path, code, compress):
    rng = np.random.default_rng(code)
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(IDX_DTYPES[code].newbyteorder("="))
    if IDX_DTYPES[code].kind == "u":
        array = np.abs(array)
    data = idx_bytes(array, code)
    path = tmp_path / ("x.gz" if compress else "x")
    path.write_bytes(gzip.compress(data) if compress else data)
    out, digest = read_idx(path, return_sha256=True)
    assert out.dtype == IDX_DTYPES[code].newbyteorder("=") and out.dtype.isnative
    np.testing.assert_array_equal(out, array)
    assert digest == hashlib.sha256(data).hexdigest()  # the sum is of the payload, compressed or not
    out[0, 0, 0] = 1  # the result owns writeable memory


def test_gzip_detected_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    (tmp_path / "raw-named.gz").write_bytes(idx_bytes(array, 0x08))  # already decompressed, still .gz
    (tmp_path / "gz-named").write_bytes(gzip.compress(idx_bytes(array, 0x08)))
    np.testing.assert_array_equal(read_idx(tmp_path / "raw-named.gz"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "gz-named"), array)


def test_missing_file_named(tmp_path):
    with pytest.raises(DataError, match=r"nope-idx1-ubyte: no such file.*re-download"):
        read_idx(tmp_path / "nope-idx1-ubyte")


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"\x00\x00", "shorter than the 4-byte IDX magic"),
        (b"\x08\x03\x00\x00" + bytes(20), "not an IDX file: magic number 08030000"),
        (bytes([0, 0, 0x07, 1]) + bytes(8), "not an IDX file"),  # unknown type code
        (bytes([0, 0, 0x08, 0]), "not an IDX file"),  # zero dimensions
        (bytes([0, 0, 0x08, 3, 0, 0, 0, 2]), "truncated inside the header"),
        (bytes([0, 0, 0x08, 1]) + struct.pack(">I", 10) + bytes(7), r"truncated: the header says shape \(10,\)"),
        (bytes([0, 0, 0x08, 1]) + struct.pack(">I", 10) + bytes(12), "2 unexpected bytes"),
    ],
)
def test_malformed_payloads(payload, message):
    with pytest.raises(DataError, match=message):
        parse_idx(payload, name="f")


def test_truncated_gzip_names_file(tmp_path):
    data = gzip.compress(idx_bytes(np.arange(5000, dtype=np.uint8) % 251, 0x08))
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"labels-idx1-ubyte.gz: truncated: the gzip stream ends early"):
        read_idx(path)


def test_gzip_crc_failure_is_checksum_error(tmp_path):
    data = bytearray(gzip.compress(idx_bytes(np.zeros(100, dtype=np.uint8), 0x08), mtime=0))
    data[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    path = tmp_path / "f.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="f.gz: corrupted"):
        read_idx(path)


def test_expected_shape_checked(tmp_path):
    path = tmp_path / "imgs"
    path.write_bytes(idx_bytes(np.zeros((2, 3, 3), dtype=np.uint8), 0x08))
    assert read_idx(path, expected_shape=(None, 3, 3)).shape == (2, 3, 3)
    with pytest.raises(DataError, match=r"shape \(2, 3, 3\), expected \(None, 28, 28\)"):
        read_idx(path, expected_shape=(None, 28, 28))


def test_checksum_mismatch_names_file_and_fix(tmp_path):
    data = idx_bytes(np.arange(10, dtype=np.uint8), 0x08)
    path = tmp_path / "lab-idx1-ubyte"
    path.write_bytes(data)
    good = hashlib.sha256(data).hexdigest()
    read_idx(path, sums=[("payload", good, "test")])
    with pytest.raises(ChecksumError, match=r"lab-idx1-ubyte: corrupted or not the expected file.*Delete it"):
        read_idx(path, sums=[("payload", "0" * 64, "test")])


def test_sha256sums_files(tmp_path):
    payload = idx_bytes(np.arange(7, dtype=np.uint8), 0x08)
    gz = gzip.compress(payload, mtime=0)
    (tmp_path / "a-idx1-ubyte.gz").write_bytes(gz)
    p_sum, f_sum = hashlib.sha256(payload).hexdigest(), hashlib.sha256(gz).hexdigest()
    (tmp_path / "SHA256SUMS.uncompressed").write_text(f"# comment\n{p_sum}  a-idx1-ubyte\n\n")
    (tmp_path / "SHA256SUMS").write_text(f"{f_sum} *a-idx1-ubyte.gz\n")
    sums = read_sha256sums(tmp_path)
    assert sums == {"payload": {"a-idx1-ubyte": p_sum}, "file": {"a-idx1-ubyte.gz": f_sum}}
    listed = expected_sums(tmp_path, "a-idx1-ubyte.gz", builtin={"a-idx1-ubyte": p_sum})
    assert [(k, h) for k, h, _ in listed] == [("payload", p_sum), ("payload", p_sum), ("file", f_sum)]
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx1-ubyte.gz", sums=listed), np.arange(7))
    # Every applicable sum must hold: shipped constants that disagree with the listing are reported.
    wrong = expected_sums(tmp_path, "a-idx1-ubyte.gz", builtin={"a-idx1-ubyte": "1" * 64})
    with pytest.raises(ChecksumError, match="the sums shipped with minisgd say 1111"):
        read_idx(tmp_path / "a-idx1-ubyte.gz", sums=wrong)


def test_malformed_sha256sums_line(tmp_path):
    (tmp_path / "SHA256SUMS").write_text("not-a-sum  file\n")
    with pytest.raises(DataError, match=r"SHA256SUMS, line 1"):
        read_sha256sums(tmp_path)


# ---- untrusted files: sizes checked before memory is spent ---------------------------------------------------------

def test_header_claiming_a_trillion_elements_costs_nothing(tmp_path):
    """A 12-byte file whose header says 10^12 bytes follow, and one whose sizes multiply past 2^64 (an int64
    product would wrap around to a small number): both refused from the header, no array made."""
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 0x08, 2]) + struct.pack(">2I", 10 ** 6, 10 ** 6) + b"\0" * 4)
    with pytest.raises(DataError, match=r"x: truncated: the header says shape \(1000000, 1000000\) "
                                        r"\(1000000000000 bytes of data\)"):
        read_idx(path)
    path.write_bytes(bytes([0, 0, 0x0E, 4]) + struct.pack(">4I", *[2 ** 32 - 1] * 4) + b"\0" * 8)
    with pytest.raises(DataError, match=r"truncated: the header says shape \(4294967295, 4294967295"):
        read_idx(path)


def test_gzip_bomb_is_stopped_at_the_limit(tmp_path, monkeypatch):
    """A small .gz that inflates past the limit is stopped there, before it is all decompressed."""
    import minisgd.data.idx as idx
    monkeypatch.setattr(idx, "MAX_IDX_BYTES", 1 << 20)
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 64 << 20) + bytes(64 << 20)))
    assert path.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"bomb.gz: decompresses to more than 1,048,576 bytes"):
        read_idx(path)


def test_oversized_files_are_refused_unread(tmp_path, monkeypatch):
    import minisgd.data.idx as idx
    path = tmp_path / "train-images-idx3-ubyte"
    with open(path, "wb") as fh:
        fh.truncate(idx.MAX_IDX_BYTES + 1)  # sparse
    with pytest.raises(DataError, match=rf"train-images-idx3-ubyte: {idx.MAX_IDX_BYTES + 1:,} bytes, more than a "
                                        "data file may hold here"):
        read_idx(path)
    with open(tmp_path / "SHA256SUMS", "wb") as fh:
        fh.truncate(idx.MAX_SUMS_BYTES + 1)
    with pytest.raises(DataError, match="SHA256SUMS: .* bytes, more than"):
        read_sha256sums(tmp_path)


def test_multi_member_gzip_and_padding_still_read(tmp_path):
    """What ``gzip`` writes by concatenation (two members) and zero padding after the last: read as one payload."""
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes(array, 0x08)
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(data[:10]) + gzip.compress(data[10:]) + b"\0" * 8)
    np.testing.assert_array_equal(read_idx(path), array)
