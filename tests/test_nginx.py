"""The nginx lane: nginx_run.py with real nginx and two workers on free ports of 127.0.0.1."""

import gzip
import importlib.util
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scripts.atomctl import AtomLauncher, http, log_lines

pytestmark = pytest.mark.nginx

SLOW_SERVER = '''"""server.py plus a slow route, for the drain test."""

import asyncio

import server
from my_atom.api.app import get_app


def factory(settings):
    app = get_app(settings)

    @app.get("/slow")
    async def slow(seconds: float = 2.0) -> dict:
        await asyncio.sleep(seconds)
        return {"slept": seconds}

    return app


if __name__ == "__main__":
    raise SystemExit(server.main(app_factory=factory))
'''


def nginx_binary() -> str:
    """nginx must be installed for this lane (scripts/setup.sh installs it)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    assert os.access(binary, os.X_OK), (
        "nginx is missing: run scripts/setup.sh (apt-get install nginx)"
    )
    return binary


def process_group(pgid: int) -> list[int]:
    """Pids of the live processes of a process group."""
    members = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(proc.name))
    return members


def processes_under(path: Path) -> list[str]:
    """Command lines of live processes that run from ``path`` or mention it."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if str(path) in cmdline or cwd == str(path):
            found.append(f"{proc.name}: {cmdline}")
    return found


def atom_stubs(project: Path) -> ModuleType:
    """The baked atom's own stub peers (tests/stubs.py): a stub Serving among them."""
    spec = importlib.util.spec_from_file_location("atom_stubs", project / "tests" / "stubs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def serving(default_atom: Path) -> Iterator:
    """A stub Serving platform recording every call."""
    stubs = atom_stubs(default_atom)
    with stubs.running(stubs.StubServing()) as stub:
        yield stub


@pytest.fixture
def atom(
    default_atom: Path, tmp_path: Path, serving: object, runtime_dir: Path
) -> Iterator[AtomLauncher]:
    """nginx_run.py with 2 workers (and a slow route) registered with the stub Serving."""
    nginx_binary()
    (default_atom / "slow_server.py").write_text(SLOW_SERVER)
    meta = {"servingHost": "127.0.0.1", "servingPort": serving.server_address[1], "atomCode": "a"}
    launcher = AtomLauncher(
        default_atom,
        workers=2,
        server="slow_server.py",
        env={
            "LOG_ROOT": str(tmp_path / "logs"),
            "ATOM_RUNTIME_DIR": str(runtime_dir),
            "ATOM_MAX_BODY_BYTES": "200000",
            "ATOM_GRACE_PERIOD": "8",
            "META": json.dumps(meta),
            "SERVING_HEARTBEAT_INTERVAL": "0.2",
        },
    )
    with launcher:
        yield launcher


def log_pids(atom: AtomLauncher, request_ids: set[str]) -> set[int]:
    """Pids of the log lines of these requests."""
    log_file = Path(atom.env["LOG_ROOT"]) / "atom" / "atom.log"
    pids = set()
    for line in log_lines(log_file, {f"[{request_id}]" for request_id in request_ids}):
        parts = line.split(" ", 5)
        if parts[4].strip("[]") in request_ids:
            pids.add(int(parts[3]))
    return pids


def test_requests_reach_both_workers(atom: AtomLauncher) -> None:
    """Requests through nginx are served by both worker processes."""
    ids = {f"spread-{n}" for n in range(20)}
    for request_id in ids:
        status, headers, _ = http(
            "POST",
            atom.url("/detect"),
            {"data": [], "src_type": "base64"},
            {"X-Request-ID": request_id},
        )
        assert status == 200
        assert headers["x-request-id"] == request_id
    assert log_pids(atom, ids) == set(atom.worker_pids().values())


def test_killed_worker_comes_back(atom: AtomLauncher) -> None:
    """kill -9 on a worker: the atom keeps answering, and the worker is back within 5 s."""
    port = atom.inner_start + 1
    old_pid = atom.worker_pids()[port]
    os.kill(old_pid, signal.SIGKILL)
    killed = time.monotonic()
    back = None
    while time.monotonic() - killed < 5:
        assert http("GET", atom.url("/v1/health/ping"))[0] == 200
        if back is None and http_ok(f"http://127.0.0.1:{port}/d2atom/v1/health/ping"):
            back = time.monotonic() - killed
        time.sleep(0.05)
    assert back is not None and back < 5
    assert atom.worker_pids()[port] != old_pid


def http_ok(url: str) -> bool:
    """True when the URL answers 200."""
    try:
        return http("GET", url, timeout=1)[0] == 200
    except OSError:
        return False


def test_body_above_the_limit_gets_the_envelope(atom: AtomLauncher) -> None:
    """nginx refuses a body above the limit with 413 and the atom's envelope."""
    status, headers, body = http(
        "POST", atom.url("/detect"), {"data": ["A" * 300_000]}, {"X-Request-ID": "too-big"}
    )
    assert (status, body) == (
        413,
        {"code": 413, "msg": "Request Entity Too Large (limit 200000 bytes)", "data": None},
    )
    assert headers["x-request-id"] == "too-big"


def test_sigterm_drains_in_flight_requests(atom: AtomLauncher) -> None:
    """SIGTERM mid-request: the request completes, exit 0 within the grace period, nothing left."""
    result: dict[str, object] = {}

    def slow_call() -> None:
        result["reply"] = http("GET", f"{atom.base}/slow?seconds=3", timeout=20)

    caller = threading.Thread(target=slow_call)
    caller.start()
    time.sleep(0.7)
    assert atom.process is not None
    started = time.monotonic()
    atom.process.send_signal(signal.SIGTERM)
    status = atom.process.wait(timeout=8 + 10)
    elapsed = time.monotonic() - started
    caller.join(10)
    assert status == 0
    assert elapsed < 8 + 5
    status_code, _, body = result["reply"]
    assert (status_code, body) == (200, {"slept": 3.0})
    assert processes_under(Path(atom.env["ATOM_RUNTIME_DIR"])) == []
    assert all(
        not http_ok(f"http://127.0.0.1:{port}/d2atom/v1/health/ping") for port in atom.worker_pids()
    )


def test_missing_nginx_is_a_clear_error(default_atom: Path) -> None:
    """With NGINX_BIN pointing nowhere, nginx_run.py stops at once with a message saying so."""
    result = subprocess.run(
        [sys.executable, "nginx_run.py"],
        cwd=default_atom,
        env={"PATH": "/usr/bin:/bin", "NGINX_BIN": "/nonexistent/nginx", "LOG_ROOT": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "NGINX_BIN" in result.stderr
    assert "/nonexistent/nginx" in result.stderr


def test_one_registration_for_the_atom(atom: AtomLauncher, serving: object) -> None:
    """With 2 workers: one register, one heartbeat stream, one unRegister at SIGTERM."""
    serving.wait_for("/atom/register")
    beats = serving.wait_for("/atom/health", count=10)
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(beats)]
    assert min(gaps) > 0.1  # one stream at the 0.2 s interval, not two interleaved
    assert len(serving.paths("/atom/register")) == 1
    assert atom.stop(timeout=10) == 0
    assert len(serving.paths("/atom/unRegister")) == 1


def test_sigterm_with_serving_down_exits_quickly(atom: AtomLauncher, serving: object) -> None:
    """Registered, then Serving goes away: SIGTERM still ends the atom within 5 s."""
    serving.wait_for("/atom/health")
    serving.shutdown()
    serving.server_close()
    started = time.monotonic()
    assert atom.stop(timeout=10) == 0
    assert time.monotonic() - started < 5


def test_one_scrape_sums_the_workers(atom: AtomLauncher) -> None:
    """After k requests spread over both workers, one scrape through nginx reports k."""
    k = 24
    for n in range(k):
        body, headers = {"data": [], "src_type": "base64"}, {"X-Request-ID": f"k-{n}"}
        assert http("POST", atom.url("/detect"), body, headers)[0] == 200
    assert len(log_pids(atom, {f"k-{n}" for n in range(k)})) == 2
    status, _, text = http("GET", atom.url("/metrics"))
    assert status == 200, text
    counts = {
        (sample.labels["route"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "atom_requests_total"
    }
    assert counts[("/d2atom/detect", "200")] == k
    ready = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "atom_ready"
    ]
    assert ready == [1.0]
    template = [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "atom_template_info"
    ]
    assert len(template) == 1 and template[0][1] == 1.0  # one sample, not one per worker
    assert set(template[0][0]) == {"version", "commit"}


def test_json_is_gzipped(atom: AtomLauncher) -> None:
    """nginx compresses JSON replies for clients that accept gzip."""
    request = urllib.request.Request(
        f"{atom.base}/openapi.json", headers={"Accept-Encoding": "gzip"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert json.loads(gzip.decompress(response.read()))["openapi"].startswith("3.")


def test_launcher_exits_non_zero_when_nginx_dies(atom: AtomLauncher) -> None:
    """If nginx dies, the launcher stops its workers and exits with status 1."""
    nginx_pid = int((Path(atom.env["ATOM_RUNTIME_DIR"]) / "nginx.pid").read_text())
    assert len(process_group(nginx_pid)) >= 2  # the master and its workers
    os.kill(nginx_pid, signal.SIGKILL)
    assert atom.process is not None
    assert atom.process.wait(timeout=30) == 1
    assert processes_under(Path(atom.env["ATOM_RUNTIME_DIR"])) == []
    assert process_group(nginx_pid) == []  # no orphaned nginx worker left
