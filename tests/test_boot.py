"""The baked default atom as a real server: health, detect on a photograph, error bodies, logs."""

import base64
import contextlib
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.atomctl import TEMPLATE, AtomServer, http, log_lines, rss_kib

pytestmark = pytest.mark.boot


@pytest.fixture(scope="module")
def server(default_atom: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AtomServer]:
    """``python server.py --port <free port>`` in the baked atom, stopped by pid afterwards."""
    logs = tmp_path_factory.mktemp("logs")
    env = {"LOG_ROOT": str(logs), "ATOM_MAX_BODY_BYTES": "200000", "ATOM_HEADER_TIMEOUT": "2"}
    atom = AtomServer(default_atom, env=env)
    with atom:
        yield atom


def test_ping(server: AtomServer) -> None:
    """Ping is the bare linker_atom body."""
    status, headers, body = http("GET", server.url("/v1/health/ping"))
    assert (status, body) == (200, {"is_alive": True})
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])


def test_ready(server: AtomServer) -> None:
    """Ready reports the loaded model and the template release: this checkout's version and
    commit."""
    status, _, body = http("GET", server.url("/v1/health/ready"))
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=TEMPLATE, capture_output=True, text=True, check=True
    ).stdout.strip()
    version = json.loads((TEMPLATE / "cookiecutter.json").read_text())["_template_version"]
    if ".dev" in version:  # not a release: the commit is named (about.py)
        version = f"{version}+{head[:12]}"
    template = {"version": version, "commit": head}
    assert (status, body) == (
        200,
        {"is_ready": True, "models": {"face": "ready"}, "template": template},
    )


def test_detect_finds_the_face(server: AtomServer, default_atom: Path) -> None:
    """The astronaut photograph has one face, found in the right place."""
    photo = default_atom / "tests" / "data" / "astronaut.jpg"
    body = {"data": [base64.b64encode(photo.read_bytes()).decode()], "src_type": "base64"}
    status, _, reply = http("POST", server.url("/detect"), body)
    assert status == 200
    assert (reply["code"], reply["msg"]) == (200, "")
    (faces,) = reply["objects"]
    assert len(faces) == 1
    assert faces[0]["label"] == "face"
    assert faces[0]["xmin"] < 224 < faces[0]["xmax"]
    assert faces[0]["ymin"] < 113 < faces[0]["ymax"]


def test_error_envelopes(server: AtomServer) -> None:
    """404, 405 and 422 answer with the envelope."""
    assert http("GET", f"{server.base}/nope")[0::2] == (
        404,
        {"code": 404, "msg": "Not Found", "data": None},
    )
    assert http("POST", server.url("/v1/health/ping"), {})[0::2] == (
        405,
        {"code": 405, "msg": "Method Not Allowed", "data": None},
    )
    status, _, body = http("POST", server.url("/detect"), {"data": "x", "src_type": "base64"})
    assert (status, body["code"], body["msg"]) == (422, 422, "Request Entity Error")
    assert body["data"][0]["loc"] == ["body", "data"]


def test_body_above_the_limit(server: AtomServer) -> None:
    """A body above ATOM_MAX_BODY_BYTES is 413 with the envelope; the server keeps serving."""
    status, _, body = http("POST", server.url("/detect"), {"data": ["A" * 250_000]})
    assert (status, body) == (
        413,
        {"code": 413, "msg": "Request Entity Too Large (limit 200000 bytes)", "data": None},
    )
    assert http("GET", server.url("/v1/health/ping"))[0] == 200


def test_log_lines_carry_the_request_id(server: AtomServer) -> None:
    """The request's lines in the log file carry the X-Request-ID it was sent with."""
    body, headers = {"data": [], "src_type": "base64"}, {"X-Request-ID": "boot-42"}
    assert http("POST", server.url("/detect"), body, headers)[0] == 200
    log_file = Path(server.env["LOG_ROOT"]) / "atom" / "atom.log"
    lines = log_lines(log_file, {"[boot-42]"})
    assert len(lines) == 1  # one line per call at INFO
    assert "POST /d2atom/detect client=127.0.0.1:" in lines[0]
    assert " -> 200 in " in lines[0]


def cut_after(sock: socket.socket, trickle: bytes) -> float:
    """Send ``trickle`` a byte every 0.25 s until the server closes; the seconds it took."""
    started = time.monotonic()
    sock.settimeout(0.25)
    for byte in trickle:
        with contextlib.suppress(TimeoutError):
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.send(bytes([byte]))
    raise AssertionError(f"still open after {time.monotonic() - started:.1f} s")


def test_slow_headers_are_cut(server: AtomServer) -> None:
    """A client trickling a request's headers (slowloris) is cut after ATOM_HEADER_TIMEOUT
    (2 s here), on a new connection and on a kept-alive one after a reply."""
    trickle = b"GET /d2atom/v1/health/ping HTTP/1.1\r\nX-Slow: " + b"a" * 100
    with socket.create_connection(("127.0.0.1", server.port), 5) as sock:
        assert 1.5 < cut_after(sock, trickle) < 4.5
    with socket.create_connection(("127.0.0.1", server.port), 5) as sock:
        sock.sendall(b"GET /d2atom/v1/health/ping HTTP/1.1\r\nHost: a\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        assert 1.5 < cut_after(sock, trickle) < 4.5  # before uvicorn's 5 s keep-alive


def test_footprint(server: AtomServer) -> None:
    """The server became ready quickly and its memory is that of one small process."""
    assert server.seconds_to_ready is not None and server.seconds_to_ready < 15
    assert 30_000 < rss_kib(server.process.pid) < 400_000


def test_sigterm_stops_it(default_atom: Path, tmp_path: Path) -> None:
    """SIGTERM ends the server with status 0 within 5 s."""
    atom = AtomServer(default_atom, env={"LOG_ROOT": str(tmp_path)}).start()
    assert atom.stop(timeout=5) == 0


def readme_snippet(project: Path) -> str:
    """The Python snippet of the generated README's "Run" section."""
    readme = (project / "README.md").read_text(encoding="utf-8")
    match = re.search(r"python - <<'PY'\n(.*?)\nPY\n", readme, re.S)
    assert match is not None
    return match[1]


def test_readme_snippet_runs(server: AtomServer, default_atom: Path) -> None:
    """The README's detect example, pointed at this server, prints a reply with one face."""
    code = readme_snippet(default_atom).replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=default_atom,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["objects"][0]) == 1
