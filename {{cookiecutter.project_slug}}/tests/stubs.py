"""Stub peers for the tests: a Serving platform and a SkyWalking collector, both real HTTP
servers on 127.0.0.1 that record every call. The template's nginx lane uses them too.
"""

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Recorder(ThreadingHTTPServer):
    """A threaded HTTP server that records (time, method, path, JSON body) of each call."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self.calls: list[tuple[float, str, str, Any]] = []
        self.lock = threading.Lock()
        # serve_forever looks for shutdown() every poll_interval (0.5 s by default): each
        # test's stop would wait that long.
        self.thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, method: str, path: str, body: Any) -> None:
        with self.lock:
            self.calls.append((time.monotonic(), method, path, body))

    def paths(self, path: str) -> list[tuple[float, Any]]:
        """(time, body) of the calls to ``path``."""
        with self.lock:
            return [(at, body) for at, _, p, body in self.calls if p == path]

    def wait_for(self, path: str, count: int = 1, timeout: float = 10) -> list[tuple[float, Any]]:
        """Wait until ``path`` was called ``count`` times; return those calls."""
        deadline = time.monotonic() + timeout
        while len(self.paths(path)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} called {len(self.paths(path))} times, not {count}")
            time.sleep(0.02)
        return self.paths(path)


class ServingHandler(BaseHTTPRequestHandler):
    """Answers as ``server.mode[path]`` says: ok, ok-int, register, 500, html, garbage, slow."""

    server: "StubServing"

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        self.server.record("POST", self.path, body)
        mode = self.server.mode.get(self.path, self.server.mode.get("*", "ok"))
        if mode == "register" and self.path == "/atom/health":
            self.server.mode[self.path] = "ok"  # once
        self._answer(mode)

    def do_GET(self) -> None:  # the atom's ready route, when a test needs one
        self.server.record("GET", self.path, None)
        self._send(200, "application/json", b'{"is_ready": true}')

    def _answer(self, mode: str) -> None:
        if mode == "slow":
            time.sleep(self.server.slow_seconds)
        replies = {
            "ok": (200, "application/json", b'{"code": "0", "msg": "", "data": null}'),
            "ok-int": (200, "application/json", b'{"code": 0, "msg": "", "data": null}'),
            "register": (200, "application/json", b'{"code": "0", "data": "register"}'),
            "refused": (200, "application/json", b'{"code": "1", "msg": "no such ability"}'),
            "500": (500, "text/plain", b"internal error"),
            "html": (200, "text/html", b"<html><body>gateway</body></html>"),
            "garbage": (200, "application/json", b"\x00\x01{not json"),
            "slow": (200, "application/json", b'{"code": "0"}'),
        }
        self._send(*replies[mode])

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client gave up (a timeout test)
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class StubServing(Recorder):
    """The Serving platform: ``mode`` maps a path (or "*") to how it answers."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(port, ServingHandler)
        self.mode: dict[str, str] = {}
        self.slow_seconds = 5.0


class CollectorHandler(BaseHTTPRequestHandler):
    """Accepts every POST under /v3/ like SkyWalking's HTTP receiver."""

    server: "StubCollector"

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self.server.record("POST", self.path, body)
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


class StubCollector(Recorder):
    """A SkyWalking collector over HTTP."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(port, CollectorHandler)

    def segments(self) -> list[dict[str, Any]]:
        """Every trace segment reported so far."""
        found: list[dict[str, Any]] = []
        for _, body in self.paths("/v3/segment"):
            found.extend(body if isinstance(body, list) else [body])
        return found


@contextmanager
def running(server: Recorder) -> Iterator[Recorder]:
    """Serve in a thread for the duration of the block."""
    server.thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
