"""Fixtures for the data-layer tests: where the real MNIST files are, and a loopback HTTP server.

The real files: where the library looks (``$MINISGD_DATA``, else the user cache), else ``<repo>/../shared/data``
(:func:`support.find_mnist_root`); tests that need them skip, saying why, only when none holds the four files.

Nothing here reaches the network: the HTTP server listens on 127.0.0.1 only, and ``MINISGD_OFFLINE=1`` is set
for every test, so a load that would fall back to downloading from the public mirrors fails instead.
"""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

from support import find_mnist_root

SERVER_LIFETIME_S = 120  # a server that a failing test forgot to stop shuts itself down after this


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("MINISGD_OFFLINE", "1")
    monkeypatch.delenv("MINISGD_MNIST_MIRRORS", raising=False)
    # A proxy setting would send even 127.0.0.1 requests elsewhere.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The folder that contains ``mnist/`` with the real files."""
    root, why = find_mnist_root()
    if root is None:
        pytest.skip(why)
    return root


@pytest.fixture(scope="session")
def mnist_dir(mnist_root) -> Path:
    return mnist_root / "mnist"


@pytest.fixture(scope="session")
def mnist(mnist_root):
    """Full MNIST scaled to [0, 1], loaded once per session (about 1 s)."""
    from minisgd.data import load_mnist

    return load_mnist(mnist_root, download=False)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; records the request paths and status codes instead of logging to stderr."""

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass

    def log_request(self, code="-", size="-"):
        self.server.requests.append((self.path, int(code) if str(code).isdigit() else code))


class CutHandler(QuietHandler):
    """Announces the full Content-Length, sends half of the file, then closes the connection."""

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return super().do_GET()
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


class FlakyHandler(QuietHandler):
    """Answers 503 to the first request for each path, then serves normally."""

    def do_GET(self):
        seen = self.server.seen
        if self.path not in seen:
            seen.add(self.path)
            self.send_error(503, "try again")
            return
        return super().do_GET()


HANDLERS = {"plain": QuietHandler, "cut": CutHandler, "flaky": FlakyHandler}


@pytest.fixture
def http_server():
    """``start(folder, kind="plain") -> (base_url, server)``; every server is stopped after the test.

    ``server.requests`` lists ``(path, status)`` of each request. Binds 127.0.0.1 on a free port.
    """
    started = []

    def start(folder, kind="plain"):
        handler = functools.partial(HANDLERS[kind], directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        server.requests = []
        server.seen = set()
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        watchdog = threading.Timer(SERVER_LIFETIME_S, server.shutdown)
        watchdog.daemon = True
        watchdog.start()
        started.append((server, thread, watchdog))
        return f"http://127.0.0.1:{server.server_address[1]}/", server

    yield start
    for server, thread, watchdog in started:
        watchdog.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
