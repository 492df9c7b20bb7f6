"""server.py's header timeout (deploy/header_timeout.py): a client trickling a request's
headers is cut after ATOM_HEADER_TIMEOUT; a prompt one is served, kept alive or not."""

import socket
import time

from fastapi import FastAPI

from {{ cookiecutter.package_name }}.deploy.header_timeout import http_protocol

from .live_server import serve_in_thread

TIMEOUT = 0.5
REQUEST = b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n"


def ok_app() -> FastAPI:
    """One route answering 200."""
    app = FastAPI()

    @app.get("/ok")
    async def ok() -> dict:
        return {"ok": True}

    return app


def seconds_until_closed(sock: socket.socket, head: bytes) -> float:
    """Send ``head`` one byte every 0.1 s; the seconds until the server closes."""
    started = time.monotonic()
    sock.settimeout(0.1)
    for byte in head * 100:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        try:
            sock.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
    raise AssertionError("the connection stayed open")


def test_slow_headers_are_cut_and_prompt_ones_served() -> None:
    """Headers trickled past the timeout close the connection, on a new connection and on
    a kept-alive one after a reply; complete headers are served."""
    with serve_in_thread(ok_app(), http=http_protocol(TIMEOUT)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), 5) as sock:
            assert TIMEOUT * 0.8 < seconds_until_closed(sock, b"GET /ok HTTP/1.1\r\nX: ") < 4
        with socket.create_connection(("127.0.0.1", port), 5) as sock:
            for _ in range(2):  # kept alive: each request gets its own time
                sock.sendall(REQUEST)
                time.sleep(TIMEOUT * 0.6)
                assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
            assert TIMEOUT * 0.8 < seconds_until_closed(sock, b"GET /ok HTTP/1.1\r\nX: ") < 4
