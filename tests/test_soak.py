"""The soak lane: many `detect` calls through nginx and 2 workers, then no leak and no failure.

``SOAK_REQUESTS`` sets the number of measured calls (2,000 in ``make test``, 20,000 in
``make soak``); the bounds below are the same for both.
"""

import itertools
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPException
from pathlib import Path

import pytest

from scripts.atomctl import AtomLauncher, http, rss_kib, small_face
from tests.test_nginx import nginx_binary, process_group

pytestmark = pytest.mark.soak

SOAK_REQUESTS = int(os.environ.get("SOAK_REQUESTS", "2000"))
CONCURRENCY = 32
# The warm-up runs at 4x the concurrency so that the pools and buffers of every process
# have grown to what the load needs before usage is measured.
WARM_UP_REQUESTS = 800
WARM_UP_CONCURRENCY = 4 * CONCURRENCY
# A worker's thread count may rise by up to the size of anyio's thread pool (its default
# 40 tokens, which the atom keeps): detect is an async route that hops to the pool only to
# decode images, so how many pool threads exist depends on how many decodes happened to
# overlap, not on the number of calls (idle pool threads exit after 10 s). A leak of a
# thread per call exceeds it within the first 100 of the 2,000 calls.
POOL_THREADS = 40
# Usage is measured at rest: uvicorn closes idle keep-alive connections after 5 s (its
# timeout_keep_alive; server.py keeps the default), so after this pause no connection
# from nginx to a worker is left open and fd counts compare exactly.
SETTLE_SECONDS = 6
REQUEST_TIMEOUT = 30  # seconds for one call; a stuck call is a failure, not a hang
# RSS may grow by this much over the warmed-up value, whatever SOAK_REQUESTS is: a leak of
# 0.5 KiB per call fails the full run (20,000 calls); measured growth is below 1 MiB.
RSS_GROWTH_KIB = 8 * 1024


@dataclass
class Usage:
    """What one process holds: resident memory (KiB), open fds, threads."""

    rss_kib: int
    fds: int
    threads: int


def at_rest(named: dict[str, int]) -> dict[str, Usage]:
    """Name -> usage of each process, once idle connections are closed."""
    time.sleep(SETTLE_SECONDS)
    return {name: usage(pid) for name, pid in named.items()}


def usage(pid: int) -> Usage:
    """The current usage of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    threads = next(line for line in status.splitlines() if line.startswith("Threads:"))
    return Usage(rss_kib(pid), len(os.listdir(f"/proc/{pid}/fd")), int(threads.split()[1]))


@dataclass
class Load:
    """The outcome of a load run: calls made, failures (with a few samples), seconds."""

    requests: int
    failures: int
    samples: list[str]
    seconds: float
    client_cpu_seconds: float  # of this process: is the load generator the bottleneck?


def load(
    atom: AtomLauncher, body: bytes, expected: list, count: int, concurrency: int = CONCURRENCY
) -> Load:
    """``count`` detect calls by ``concurrency`` keep-alive clients, each reply checked."""
    path = f"{atom.prefix}/detect"
    counter = itertools.count()
    lock = threading.Lock()
    failures: list[str] = []
    answered = itertools.count()  # replies checked, good or bad

    def check(status: int, raw: bytes) -> str | None:
        """Why a reply is not a good detect reply, or None."""
        if status != 200:
            return f"status {status}: {raw[:200]!r}"
        reply = json.loads(raw)
        if (reply.get("code"), reply.get("msg"), reply.get("objects")) != (200, "", expected):
            return f"body {raw[:200]!r}"
        return None

    def client() -> None:
        connection = HTTPConnection("127.0.0.1", atom.port, timeout=REQUEST_TIMEOUT)
        headers = {"Content-Type": "application/json"}
        try:
            while next(counter) < count:
                try:
                    connection.request("POST", path, body, headers)
                    response = connection.getresponse()
                    problem = check(response.status, response.read())
                except (OSError, HTTPException, ValueError) as error:
                    connection.close()  # reopened by the next request
                    problem = repr(error)
                next(answered)
                if problem:
                    with lock:
                        failures.append(problem)
        finally:
            connection.close()

    started, cpu = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(60, count * 0.1))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert not any(thread.is_alive() for thread in threads), "load generator did not finish"
    assert next(answered) == count, "a client thread died"
    return Load(count, len(failures), failures[:5], seconds, cpu)


def processes(atom: AtomLauncher) -> dict[str, int]:
    """Name -> pid of the launcher, each worker, and nginx's master and workers."""
    assert atom.process is not None
    named = {"launcher": atom.process.pid}
    for port, pid in sorted(atom.worker_pids().items()):
        named[f"worker :{port}"] = pid
    master = int((Path(atom.env["ATOM_RUNTIME_DIR"]) / "nginx.pid").read_text())
    named["nginx master"] = master
    for number, pid in enumerate(sorted(set(process_group(master)) - {master}), 1):
        named[f"nginx worker {number}"] = pid
    return named


def table(result: Load, before: dict[str, Usage], after: dict[str, Usage]) -> str:
    """The summary: throughput, then usage before -> after for each process."""
    rate = result.requests / result.seconds
    lines = [
        f"soak: {result.requests} detect calls at concurrency {CONCURRENCY} in "
        f"{result.seconds:.1f} s ({rate:.0f} req/s, load generator "
        f"{result.client_cpu_seconds:.1f} s of CPU), {result.failures} failed",
        f"{'process':<16} {'RSS KiB before -> after':>28} {'fds':>10} {'threads':>10}",
    ]
    for name, old in before.items():
        new = after[name]
        rss = f"{old.rss_kib} -> {new.rss_kib} ({new.rss_kib - old.rss_kib:+})"
        lines.append(
            f"{name:<16} {rss:>28} {f'{old.fds} -> {new.fds}':>10} "
            f"{f'{old.threads} -> {new.threads}':>10}"
        )
    return "\n".join(lines)


@pytest.fixture
def atom(default_atom: Path, tmp_path: Path, runtime_dir: Path) -> Iterator[AtomLauncher]:
    """nginx_run.py with 2 workers, no Serving, logs in the test's directory."""
    nginx_binary()
    launcher = AtomLauncher(
        default_atom,
        workers=2,
        env={
            "LOG_ROOT": str(tmp_path / "logs"),
            "ATOM_RUNTIME_DIR": str(runtime_dir),
            # The warm-up sends 128 calls at once from one address: no per-client limit.
            "ATOM_CONNECTIONS_PER_CLIENT": "0",
        },
    )
    with launcher:
        yield launcher


def test_soak(atom: AtomLauncher, default_atom: Path) -> None:
    """SOAK_REQUESTS calls: none fails, no worker restarts, no fd/thread growth, RSS bounded."""
    image = small_face(default_atom)
    status, _, reply = http("POST", atom.url("/detect"), {"data": [image], "src_type": "base64"})
    assert status == 200
    expected = reply["objects"]
    assert [len(faces) for faces in expected] == [1]
    body = json.dumps({"data": [image], "src_type": "base64"}).encode()

    warm_up = load(atom, body, expected, WARM_UP_REQUESTS, WARM_UP_CONCURRENCY)
    assert (warm_up.failures, warm_up.samples) == (0, [])
    named = processes(atom)
    before = at_rest(named)

    result = load(atom, body, expected, SOAK_REQUESTS)
    after = at_rest(named)
    print(f"\n{table(result, before, after)}")  # shown by pytest -s (make soak)

    assert (result.failures, result.samples) == (0, [])
    assert processes(atom) == named  # no worker crashed or was restarted
    assert http("GET", atom.url("/v1/health/ping"))[0::2] == (200, {"is_alive": True})
    for name in named:
        assert after[name].fds <= before[name].fds, name
        slack = POOL_THREADS if name.startswith("worker") else 0
        assert after[name].threads <= before[name].threads + slack, name
        assert after[name].rss_kib - before[name].rss_kib < RSS_GROWTH_KIB, name
