"""A stub image server on 127.0.0.1 for the url tests: good, bad, slow and endless replies."""

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

PHOTO = Path(__file__).parent / "data" / "astronaut.jpg"
CHUNK = bytes(64 * 1024)
BLANK_PNG = cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))[1].tobytes()  # no object


@dataclass
class Stub:
    """The running stub: its base URL, what it was asked and how many bytes it sent."""

    base: str
    stop: threading.Event
    hits: dict[str, int] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        """Absolute URL of a stub path."""
        return f"{self.base}{path}"


class Handler(BaseHTTPRequestHandler):
    """GET routes; the reply of each is described by its method name."""

    stub: Stub

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        self.stub.hits[path] = self.stub.hits.get(path, 0) + 1
        route = getattr(self, "route_" + path.strip("/").replace("-", "_").replace(".", "_"), None)
        if route is None:
            self.reply(404, b"not found", "text/plain")
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            route()  # a broken pipe: the atom stopped reading, as it should

    def reply(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def route_photo_jpg(self) -> None:
        """The sample photograph."""
        self.reply(200, PHOTO.read_bytes(), "image/jpeg")

    def route_blank_png(self) -> None:
        """A small blank PNG."""
        self.reply(200, BLANK_PNG, "image/png")

    def route_page_html(self) -> None:
        """An HTML page with status 200."""
        self.reply(200, b"<!doctype html><title>login</title>", "text/html; charset=utf-8")

    def route_slow(self) -> None:
        """A JPEG trickled one byte every 50 ms (each read is quick; the whole is not)."""
        body = PHOTO.read_bytes()
        self.send_response(200)
        self.send_header("content-type", "image/jpeg")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        for byte in body[:100]:
            if self.stub.stop.wait(0.05):
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()

    def route_slow_headers(self) -> None:
        """Headers trickled one byte every 0.2 s for up to 30 s (each read is quick)."""
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Slow: ")
        self.wfile.flush()
        for _ in range(150):
            if self.stub.stop.wait(0.2):
                return
            self.wfile.write(b"z")
            self.wfile.flush()

    def route_endless(self) -> None:
        """Up to 256 MiB without Content-Length (the body ends when the connection closes)."""
        self.send_response(200)
        self.send_header("content-type", "application/octet-stream")
        self.end_headers()
        self.stub.sent["/endless"] = 0
        for _ in range(4096):
            if self.stub.stop.is_set():
                return
            self.wfile.write(CHUNK)
            self.stub.sent["/endless"] += len(CHUNK)

    def route_huge(self) -> None:
        """A Content-Length of 10 GB (refused before reading)."""
        self.send_response(200)
        self.send_header("content-type", "image/jpeg")
        self.send_header("content-length", str(10**10))
        self.end_headers()

    def route_to_photo(self) -> None:
        """A relative redirect to the photograph."""
        self.reply(302, b"", "text/plain", location="/photo.jpg")

    def route_to_private(self) -> None:
        """A redirect to a private address (never reached: refused before connecting)."""
        self.reply(302, b"", "text/plain", location="http://10.255.255.1/photo.jpg")

    def route_to_file(self) -> None:
        """A redirect to a local file."""
        self.reply(302, b"", "text/plain", location="file:///etc/passwd")

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serve_stub() -> Iterator[Stub]:
    """Run the stub on 127.0.0.1 in a thread; stop it, and its slow replies, afterwards."""
    stub = Stub(base="", stop=threading.Event())
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("StubHandler", (Handler,), {"stub": stub}))
    stub.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield stub
    finally:
        stub.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
