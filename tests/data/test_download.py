"""The download path, for real, against HTTP servers on 127.0.0.1 (never any other address).

Servers serve temporary copies of ../shared/data/mnist/ (or damaged variants of them); see conftest.py.
``backoff=0`` keeps retries instant.
"""

from __future__ import annotations

import gzip
import shutil
import socket

import numpy as np
import pytest

from minisgd.data import MNIST_SHA256, DownloadError, download_file, download_mnist, load_mnist

LABELS = "train-labels-idx1-ubyte"


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch):
    """Fail any connection attempt to an address other than 127.0.0.1 (a guard for the tests themselves)."""
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        assert address[0] in ("127.0.0.1", "localhost"), f"test tried to reach {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)


@pytest.fixture
def served(mnist_dir, tmp_path):
    """A folder with copies of the four real .gz files, to serve."""
    folder = tmp_path / "served"
    folder.mkdir()
    for f in mnist_dir.glob("*-ubyte.gz"):
        shutil.copy(f, folder / f.name)
    return folder


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_then_load(served, tmp_path, http_server, capsys):
    url, server = http_server(served)
    ds = load_mnist(tmp_path / "home", download=True, mirrors=[url], progress=False)
    assert np.bincount(ds.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    dest = tmp_path / "home" / "mnist"
    assert leftovers(dest) == sorted(f"{s}.gz" for s in MNIST_SHA256)  # no temporary files remain
    for s in MNIST_SHA256:
        assert (dest / f"{s}.gz").read_bytes() == (served / f"{s}.gz").read_bytes()
    assert sorted(p for p, _ in server.requests) == sorted(f"/{s}.gz" for s in MNIST_SHA256)
    # A second load finds the files and downloads nothing.
    load_mnist(tmp_path / "home", download=True, mirrors=[url], progress=False)
    assert len(server.requests) == 4
    out, err = capsys.readouterr()
    assert out == "" and err == ""  # library code prints nothing; the bar was off


def test_mirror_list_from_environment(served, tmp_path, http_server, monkeypatch):
    url, server = http_server(served)
    monkeypatch.setenv("MINISGD_MNIST_MIRRORS", f"http://127.0.0.1:9/nothing-here/, {url}")
    download_mnist(tmp_path, retries=1, backoff=0, progress=False)
    assert len(leftovers(tmp_path / "mnist")) == 4


def test_fallback_mirror_after_404(served, tmp_path, http_server):
    empty = tmp_path / "empty"
    empty.mkdir()
    bad_url, bad = http_server(empty)
    good_url, good = http_server(served)
    dest = tmp_path / "out" / f"{LABELS}.gz"
    download_file([bad_url + f"{LABELS}.gz", good_url + f"{LABELS}.gz"], dest, sha256=MNIST_SHA256[LABELS],
                  retries=3, backoff=0, progress=False)
    assert dest.read_bytes() == (served / f"{LABELS}.gz").read_bytes()
    assert bad.requests == [(f"/{LABELS}.gz", 404)]  # a 404 is not retried: it will not change
    assert good.requests == [(f"/{LABELS}.gz", 200)]


def test_transient_error_is_retried(served, tmp_path, http_server):
    url, server = http_server(served, kind="flaky")
    dest = tmp_path / "out" / f"{LABELS}.gz"
    download_file([url + f"{LABELS}.gz"], dest, sha256=MNIST_SHA256[LABELS], retries=3, backoff=0, progress=False)
    assert [code for _, code in server.requests] == [503, 200]
    assert gzip.decompress(dest.read_bytes())[:4] == b"\x00\x00\x08\x01"


def _expect_rejected(url, dest, match, **kwargs):
    with pytest.raises(DownloadError, match=match) as err:
        download_file([url + f"{LABELS}.gz"], dest, sha256=MNIST_SHA256[LABELS], backoff=0, progress=False, **kwargs)
    return err.value


def test_truncated_file_on_server_rejected(served, tmp_path, http_server):
    data = (served / f"{LABELS}.gz").read_bytes()
    (served / f"{LABELS}.gz").write_bytes(data[: len(data) // 2])  # the mirror itself holds half a file
    url, _ = http_server(served)
    dest = tmp_path / "out" / f"{LABELS}.gz"
    err = _expect_rejected(url, dest, "truncated: the gzip stream ends early")
    assert str(dest) in str(err) and "set MINISGD_DATA to a folder that contains a out/ folder" in str(err)
    assert leftovers(dest.parent) == []  # nothing half-written left behind


def test_corrupted_payload_rejected_by_checksum(served, tmp_path, http_server):
    payload = bytearray(gzip.decompress((served / f"{LABELS}.gz").read_bytes()))
    payload[8 + 1000] = (payload[8 + 1000] + 1) % 10  # a valid gzip of wrong content: only the sum sees it
    (served / f"{LABELS}.gz").write_bytes(gzip.compress(bytes(payload)))
    url, server = http_server(served)
    dest = tmp_path / "out" / f"{LABELS}.gz"
    err = _expect_rejected(url, dest, "checksum mismatch", retries=3)
    assert "try another mirror" in str(err)
    assert len(server.requests) == 1  # a wrong file is not fetched again from the same mirror
    assert leftovers(dest.parent) == []


def test_corrupted_gzip_bytes_rejected(served, tmp_path, http_server):
    data = bytearray((served / f"{LABELS}.gz").read_bytes())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0x5A
    (served / f"{LABELS}.gz").write_bytes(bytes(data))
    url, _ = http_server(served)
    dest = tmp_path / "out" / f"{LABELS}.gz"
    _expect_rejected(url, dest, "corrupted|checksum mismatch")
    assert leftovers(dest.parent) == []


def test_connection_cut_mid_transfer_retried_then_rejected(served, tmp_path, http_server):
    url, server = http_server(served, kind="cut")
    dest = tmp_path / "out" / f"{LABELS}.gz"
    err = _expect_rejected(url, dest, "transfer cut|truncated", retries=2)
    assert len(server.requests) == 2 and len(err.errors) == 2  # transient: retried `retries` times
    assert leftovers(dest.parent) == []


def test_failed_download_leaves_existing_file_alone(served, tmp_path, http_server):
    (served / f"{LABELS}.gz").write_bytes(b"\x1f\x8b garbage")
    url, _ = http_server(served)
    dest = tmp_path / "out" / f"{LABELS}.gz"
    dest.parent.mkdir()
    dest.write_bytes(b"previous content")
    _expect_rejected(url, dest, "corrupted|truncated")
    assert dest.read_bytes() == b"previous content"
    assert leftovers(dest.parent) == [dest.name]


def test_progress_bar_goes_to_stderr_when_asked(served, tmp_path, http_server, capsys):
    url, _ = http_server(served)
    download_file([url + f"{LABELS}.gz"], tmp_path / f"{LABELS}.gz", sha256=MNIST_SHA256[LABELS], progress=True)
    out, err = capsys.readouterr()
    assert out == "" and LABELS in err  # tqdm's bar, labelled with the file name, on stderr only


def test_https_mirrors_come_first_and_plain_http_needs_a_checksum(served, tmp_path, http_server, monkeypatch):
    """An https:// mirror is tried before the http:// ones listed ahead of it; without a SHA-256 a plain-HTTP mirror
    is not used at all (its content could be anyone's), and the error says what would make it usable."""
    import minisgd.data.download as download
    url, server = http_server(served)
    tried = []
    real = download._fetch_once

    def fetch(u, *args, **kwargs):
        tried.append(u)
        return real(u.replace("https://secure.invalid/", url), *args, **kwargs)  # the "https" mirror is ours

    monkeypatch.setattr(download, "_fetch_once", fetch)
    dest = tmp_path / f"{LABELS}.gz"
    download_file([url + f"{LABELS}.gz", f"https://secure.invalid/{LABELS}.gz"], dest, sha256=MNIST_SHA256[LABELS],
                  backoff=0, progress=False)
    assert tried == [f"https://secure.invalid/{LABELS}.gz"] and dest.is_file()
    dest.unlink()
    with pytest.raises(DownloadError, match="plain HTTP without a known SHA-256.*Give an https:// mirror") as error:
        download_file([url + f"{LABELS}.gz"], dest, backoff=0, progress=False)
    assert not dest.exists() and len(tried) == 1 and len(server.requests) == 1  # never asked
    assert error.value.errors[0][0] == url + f"{LABELS}.gz"


@pytest.mark.parametrize("limit, says", [(10_000, "sends more than 10,000 bytes"),
                                         (40_000, "decompresses to more than 40,000 bytes")])
def test_a_mirror_that_sends_too_much_is_stopped_there(served, tmp_path, http_server, monkeypatch, limit, says):
    """The labels' .gz is 28,857 bytes and inflates to 60,008: under a lower limit the transfer, or the inflating,
    stops where it passes the limit, the mirror is not asked again, and nothing is kept."""
    import minisgd.data.idx as idx
    monkeypatch.setattr(idx, "MAX_IDX_BYTES", limit)
    url, server = http_server(served)
    dest = tmp_path / "out" / f"{LABELS}.gz"
    _expect_rejected(url, dest, says, retries=3)
    assert len(server.requests) == 1 and leftovers(dest.parent) == []
