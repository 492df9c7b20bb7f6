"""http_client.HttpClient: timeouts always set, retries only when safe, redacted logs."""

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
import requests

from {{ cookiecutter.package_name }}.http_client import HttpClient, redact_url

CLIENT_LOGGER = "{{ cookiecutter.package_name }}.http_client"


class Handler(BaseHTTPRequestHandler):
    """/ok answers JSON, /slow sleeps 2 s, /fail answers 500; every hit is counted."""

    hits: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self._answer()

    def _answer(self) -> None:
        path = self.path.split("?")[0]
        Handler.hits[path] = Handler.hits.get(path, 0) + 1
        if path == "/slow":
            time.sleep(2)
        status = 500 if path == "/fail" else 200
        body = json.dumps({"token": "rsecret9", "path": path}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1, stopped after the test."""
    Handler.hits = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    """A local port with nothing listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_get_json(server: str) -> None:
    """A plain call returns the reply."""
    assert HttpClient().get(f"{server}/ok").json()["path"] == "/ok"


@pytest.mark.parametrize("timeout", [None, (1, 0.5)])
def test_read_timeout_is_always_set_and_not_retried(server: str, timeout: object) -> None:
    """timeout=None still means the client's timeout; a read timeout is not retried."""
    client = HttpClient(timeout=(1, 0.5), retries=3)
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        client.get(f"{server}/slow", timeout=timeout)
    assert time.monotonic() - started < 1.5
    assert Handler.hits["/slow"] == 1


def test_connection_refused_is_retried_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    """A refused connection is retried `retries` times, waiting longer each time."""
    client = HttpClient(retries=3, backoff=0.1)
    started = time.monotonic()
    with (
        caplog.at_level(logging.INFO, logger=CLIENT_LOGGER),
        pytest.raises(requests.ConnectionError),
    ):
        client.post(f"http://127.0.0.1:{closed_port()}/x", json={"a": 1})
    elapsed = time.monotonic() - started
    retries = [r for r in caplog.records if "retry in" in r.getMessage()]
    assert len(retries) == 3
    assert elapsed >= 0.05 + 0.1 + 0.2  # at least half of each backoff step
    assert "failed after 4 attempt(s)" in caplog.records[-1].getMessage()


def test_server_errors_are_not_retried(server: str) -> None:
    """A 500 reply is returned as is, after one call."""
    response = HttpClient(retries=3).post(f"{server}/fail", json={})
    assert response.status_code == 500
    assert Handler.hits["/fail"] == 1


def test_logs_are_redacted(server: str, caplog: pytest.LogCaptureFixture) -> None:
    """Authorization, passwords, tokens in the URL, body and reply never reach the log."""
    with caplog.at_level(logging.INFO, logger=CLIENT_LOGGER):
        HttpClient().post(
            f"http://user:usecret1@{server.removeprefix('http://')}/ok?token=qsecret2&page=3",
            json={"password": "bsecret3", "name": "ann", "blob": "z" * 1000},
            headers={"Authorization": "Bearer hsecret4"},
        )
    text = "\n".join(record.getMessage() for record in caplog.records)
    for secret in ("usecret1", "qsecret2", "bsecret3", "hsecret4", "rsecret9"):
        assert secret not in text
    assert "page=3" in text
    assert '"name":"ann"' in text
    assert "...(1000 chars)" in text
    assert " 200 in " in text


def test_redact_url() -> None:
    """Userinfo (a token may be the user name) and secret query values are hidden."""
    assert (
        redact_url("https://bob:pw@host:8443/p?api_key=1&q=x&sig=2")
        == "https://***@host:8443/p?api_key=***&q=x&sig=***"
    )
