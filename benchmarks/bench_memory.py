"""Memory: RSS of one server after warm-up and after 10,000 more requests.

Prints one table. The atom serves ``detect`` (a 64x64 face, so the run stays short) and
the small logged JSON POST of bench_stack; a bare FastAPI app with the same uvicorn
settings serves the same POST, side by side in the same run. The load: keep-alive
clients sending an exact number of requests. Target: the atom grows by less than 5%.

    .venv/bin/python benchmarks/bench_memory.py [--requests 10000] [--warm-up 1000]
"""

import argparse
import http.client
import itertools
import json
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_stack import (  # benchmarks/ is on the path as the script's folder
    ECHO_BODY,
    StackServer,
    bake_with_stack_servers,
)

from scripts.atomctl import rss_kib, small_face

TARGET = 0.05
CLIENTS = 8
HEADERS = {"Content-Type": "application/json"}


def load(url: str, body: bytes, count: int) -> tuple[int, int]:
    """Send ``count`` POSTs of ``body`` from CLIENTS keep-alive clients; return
    (responses, failed)."""
    parts = urllib.parse.urlsplit(url)
    counter, failures, done = itertools.count(), itertools.count(), itertools.count()

    def client() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            while next(counter) < count:
                try:
                    connection.request("POST", parts.path, body, HEADERS)
                    response = connection.getresponse()
                    response.read()
                    if response.status != 200:
                        next(failures)
                except (OSError, http.client.HTTPException):
                    connection.close()  # reopened by the next request
                    next(failures)
                next(done)
        finally:
            connection.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(60, count))  # a stuck run ends the benchmark
    assert not any(thread.is_alive() for thread in threads), "the load did not finish"
    return next(done), next(failures)


def measure(server: StackServer, path: str, body: bytes, args: argparse.Namespace) -> dict:
    """RSS after the warm-up and after ``args.requests`` more requests."""
    with server:
        url = server.url(path)
        _, warm_failed = load(url, body, args.warm_up)
        before = rss_kib(server.process.pid)
        sent, failed = load(url, body, args.requests)
        after = rss_kib(server.process.pid)
    return {
        "sent": sent,
        "failed": failed + warm_failed,
        "before": before,
        "after": after,
        "growth": (after - before) / before,
    }


def main() -> int:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--warm-up", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        project = bake_with_stack_servers(workdir / "bake")
        detect = json.dumps({"data": [small_face(project)], "src_type": "base64"}).encode()
        echo = ECHO_BODY.encode()
        env = {"LOG_ROOT": str(workdir / "logs")}
        runs = {
            ("atom", "detect, 64x64 face"): ("atom", "/detect", detect),
            ("atom", "POST small JSON"): ("atom", "/bench/echo", echo),
            ("bare FastAPI", "POST small JSON"): ("bare", "/bench/echo", echo),
        }
        results = {}
        for key, (kind, path, body) in runs.items():
            results[key] = measure(StackServer(project, kind, env=env), path, body, args)
    print(
        f"{CLIENTS} keep-alive clients; RSS from /proc after {args.warm_up} warm-up"
        f" requests and after {args.requests} more; Python {sys.version.split()[0]}"
    )
    print()
    print(
        "| server | route | requests | failed | RSS after warm-up | RSS after | growth | target |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for (server, route), row in results.items():
        target = "-"
        if server == "atom":
            met = row["growth"] < TARGET and row["failed"] == 0
            target = f"< {TARGET * 100:.0f}%: {'met' if met else 'not met'}"
        print(
            f"| {server} | {route} | {row['sent']} | {row['failed']} |"
            f" {row['before'] / 1024:.1f} MiB | {row['after'] / 1024:.1f} MiB |"
            f" {row['growth'] * 100:+.2f}% | {target} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
