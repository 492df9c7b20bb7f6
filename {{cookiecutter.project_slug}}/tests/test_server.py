"""server.py as a real process: it starts, serves, and stops on SIGTERM."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import about

ROOT = Path(__file__).parent.parent


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, dict]:
    """GET a URL; return status and JSON body."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def start(tmp_path: Path, port: int, **env: str) -> subprocess.Popen:
    """Start server.py with a clean environment."""
    environ = {"PATH": os.environ["PATH"], "LOG_ROOT": str(tmp_path / "logs"), **env}
    return subprocess.Popen(
        [sys.executable, "server.py", "--port", str(port), "--host", "127.0.0.1"],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    """A running server.py; killed by pid if a test leaves it running."""
    port = free_port()
    process = start(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    try:
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def wait_until_ready(base: str, prefix: str, timeout: float = 30) -> None:
    """Poll ready until 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if get(f"{base}{prefix}/v1/health/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("server.py did not become ready")


def test_serves_and_stops_on_sigterm(server: tuple[subprocess.Popen, str]) -> None:
    """Ready within 30 s, ping answers, SIGTERM ends it with status 0 within 5 s."""
    process, base = server
    prefix = about.API_PREFIX
    wait_until_ready(base, prefix)
    assert get(f"{base}{prefix}/v1/health/ping") == (200, {"is_alive": True})
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=5) == 0


def test_bad_setting_stops_the_start(tmp_path: Path) -> None:
    """A bad variable ends server.py at once with status 2 and one line naming it."""
    process = start(tmp_path, free_port(), SW_SWITCH="maybe")
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2
    assert stderr.strip().splitlines() == [
        "error: invalid configuration: SW_SWITCH='maybe': "
        "must be one of true/false, 1/0, yes/no, on/off"
    ]
