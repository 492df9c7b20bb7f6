"""Memory: RSS of one server after warm-up and after 10,000 more requests, and the peak
of the worst requests the image limits allow.

Prints two tables.

1. The atom serves ``detect`` (a 64x64 face, so the run stays short) and the small logged
   JSON POST of bench_stack; a bare FastAPI app with the same uvicorn settings serves the
   same POST, side by side in the same run. The load: keep-alive clients sending an exact
   number of requests. Target: the atom grows by less than 5%.
2. ``detect`` with the demo model on the largest requests the default limits allow (and
   a few they refuse), each sent to a fresh ``python server.py``: its peak RSS (VmHWM)
   against the 2 GiB memory limit of ``deploy/k8s/deployment.yaml``. Target: every
   allowed request stays under the limit.

    .venv/bin/python benchmarks/bench_memory.py [--requests 10000] [--warm-up 1000]
                                                [--tables leak,worst]
"""

import argparse
import base64
import http.client
import itertools
import json
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_stack import (  # benchmarks/ is on the path as the script's folder
    ECHO_BODY,
    StackServer,
    bake_with_stack_servers,
)

from scripts.atomctl import AtomServer, rss_kib, small_face

TARGET = 0.05
CLIENTS = 8
HEADERS = {"Content-Type": "application/json"}
CONTAINER_LIMIT_MIB = 2048  # resources.limits.memory of deploy/k8s/deployment.yaml
SIDE = 4096  # IMAGE_MAX_PIXELS is 4096 x 4096


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


def photo_jpeg(project: Path, width: int, height: int) -> str:
    """The sample photograph scaled to ``width`` x ``height``, as base64 JPEG."""
    photo = cv2.imread(str(project / "tests" / "data" / "astronaut.jpg"))
    frame = cv2.resize(photo, (width, height), interpolation=cv2.INTER_CUBIC)
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return base64.b64encode(data.tobytes()).decode()


def black_png(side: int) -> str:
    """A black PNG of ``side`` x ``side`` pixels, as base64 (small, declares many pixels)."""
    ok, data = cv2.imencode(".png", np.zeros((side, side, 3), np.uint8))
    assert ok
    return base64.b64encode(data.tobytes()).decode()


def post_detect(url: str, body: bytes) -> int:
    """One detect call; its status."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    try:
        connection.request("POST", parts.path, body, HEADERS)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def send_at_once(url: str, bodies: list[bytes]) -> list[int]:
    """POST every body at the same time, each on its own connection; the statuses."""
    statuses: list[int] = []
    threads = [
        threading.Thread(target=lambda body=body: statuses.append(post_detect(url, body)))
        for body in bodies
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    return sorted(statuses)


def peak_mib(pid: int) -> float:
    """Peak resident memory of a process (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def worst_cases(project: Path) -> dict[str, tuple[dict[str, str], list[bytes]]]:
    """Name -> (environment, the bodies sent at once) of each worst-case run."""
    large = photo_jpeg(project, SIDE, SIDE)

    def body(items: list[str]) -> bytes:
        return json.dumps({"data": items, "src_type": "base64"}).encode()

    five = body([large] * 5)
    return {
        f"one {SIDE} x {SIDE} photo (IMAGE_MAX_PIXELS)": ({}, [body([large])]),
        f"five {SIDE} x {SIDE} photos: 240 MiB decoded (IMAGE_MAX_DECODED_BYTES 256 MiB)": (
            {},
            [five],
        ),
        "three of those at once (IMAGE_WORKER_DECODED_BYTES 384 MiB)": ({}, [five] * 3),
        f"six {SIDE} x {SIDE} photos: 288 MiB decoded": ({}, [body([large] * 6)]),
        "64 PNGs of 6000 x 6000 in 7 MB (issue 12)": ({}, [body([black_png(6000)] * 64)]),
        "one 6000 x 6000 photo, IMAGE_MAX_PIXELS=40000000 (the old default)": (
            {"IMAGE_MAX_PIXELS": "40000000"},
            [body([photo_jpeg(project, 6000, 6000)])],
        ),
    }


def worst_table(project: Path, workdir: Path) -> list[str]:
    """Table 2: the peak RSS of one worker for each worst case."""
    rows = [
        "| request (detect, demo model) | replies | time | worker peak RSS | of the 2 GiB limit |",
        "|---|---|---|---|---|",
    ]
    worst_allowed = 0.0
    for name, (env, bodies) in worst_cases(project).items():
        server = AtomServer(project, env={"LOG_ROOT": str(workdir / "logs"), **env})
        with server:
            started = time.perf_counter()
            statuses = send_at_once(server.url("/detect"), bodies)
            seconds = time.perf_counter() - started
            peak = peak_mib(server.process.pid)
        if not env:
            worst_allowed = max(worst_allowed, peak)
        replies = ", ".join(str(status) for status in statuses)
        share = peak / CONTAINER_LIMIT_MIB
        rows.append(f"| {name} | {replies} | {seconds:.1f} s | {peak:.0f} MiB | {share:.0%} |")
    met = "met" if worst_allowed < CONTAINER_LIMIT_MIB else "not met"
    rows.append("")
    rows.append(
        f"worst with the default limits: {worst_allowed:.0f} MiB of {CONTAINER_LIMIT_MIB} MiB"
        f" (target: under the limit: {met})"
    )
    return rows


def main() -> int:
    """Measure and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--warm-up", type=int, default=1_000)
    parser.add_argument("--tables", default="leak,worst")
    args = parser.parse_args()
    tables = set(args.tables.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        project = bake_with_stack_servers(workdir / "bake")
        worst = worst_table(project, workdir) if "worst" in tables else []
        if "leak" not in tables:
            print(f"one server.py per row, Python {sys.version.split()[0]}")
            print()
            print("\n".join(worst))
            return 0
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
    if worst:
        print()
        print("\n".join(worst))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
