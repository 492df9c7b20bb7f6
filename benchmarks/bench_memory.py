"""Memory: RSS of one server after warm-up and after 10,000 more requests, and the peak
of the worst request of every door.

Prints two tables.

1. The atom serves ``detect`` (a 64x64 face, so the run stays short) and the small logged
   JSON POST of bench_stack; a bare FastAPI app with the same uvicorn settings serves the
   same POST, side by side in the same run. The load: keep-alive clients sending an exact
   number of requests. Target: the atom grows by less than 5%.
2. Every door that takes input (detect base64, url, local, mmap; the video stream; v2
   JSON, binary UINT8 and binary BYTES; batched detect), each sent the worst request the
   default limits allow (the demo model, ATOM_MEMORY_BYTES 512 MiB), alone and 8 at once,
   each on a fresh ``python server.py``: the replies, its peak RSS (VmHWM) and the
   slowest ping answered meanwhile. Target: under 1 GiB, no server killed, every ping
   within 100 ms.

    .venv/bin/python benchmarks/bench_memory.py [--requests 10000] [--warm-up 1000]
                                                [--tables leak,doors]
"""

import argparse
import base64
import http.client
import importlib.util
import itertools
import json
import struct
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

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
MIB = 1 << 20
TARGET_PEAK_MIB = 1024  # per worker, whatever it is sent (the container allows 2 GiB)
CONCURRENT = 8
DOOR_SIDE = 2048  # the demo model holds 60 bytes per pixel: 240 MiB for one such photo
DOOR_IMAGES = 8  # 96 MiB decoded, the model's 240 MiB and the body within the 512 MiB


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


def peak_mib(pid: int) -> float:
    """Peak resident memory of a process (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


Request = tuple[str, bytes, dict[str, str]]  # path, body, headers


def jpeg_bytes(project: Path, side: int) -> bytes:
    """The sample photograph scaled to ``side`` x ``side``, as JPEG bytes."""
    return base64.b64decode(photo_jpeg(project, side, side))


def video_bytes(max_bytes: int) -> bytes:
    """A 1920 x 1080 MJPG AVI of noise frames, as large as fits in ``max_bytes``."""
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 255, (1080, 1920, 3), np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (1920, 1080))
        frames = 0
        while frames * 1_900_000 < max_bytes - 4_000_000:  # about 1.9 MB per noise frame
            writer.write(np.roll(frame, frames, axis=1))
            frames += 1
        writer.release()
        return path.read_bytes()


def v2_request(inputs: list[dict], binary: bytes = b"") -> tuple[bytes, dict[str, str]]:
    """A v2 infer body (JSON, then binary tensors) and its headers."""
    document = json.dumps({"inputs": inputs}).encode()
    headers = {"Content-Type": "application/octet-stream" if binary else "application/json"}
    if binary:
        headers["Inference-Header-Content-Length"] = str(len(document))
    return document + binary, headers


def door_requests(project: Path, files: dict[str, bytes], base: str, folder: Path) -> dict:
    """Door -> (what is sent, the request): the worst each door allows with the defaults."""
    side, count = DOOR_SIDE, DOOR_IMAGES
    photo = jpeg_bytes(project, side)
    encoded = base64.b64encode(photo).decode()
    files["/photo.jpg"] = photo
    (folder / "photo.jpg").write_bytes(photo)
    frame = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
    (folder / "frames.bgr").write_bytes(frame.tobytes() * count)
    mmap = [
        {
            "path": str(folder / "frames.bgr"),
            "position": i * frame.nbytes,
            "size": frame.nbytes,
            "height": side,
            "width": side,
        }
        for i in range(count)
    ]
    files["/video.avi"] = video_bytes(64 * MIB)

    def detect(src_type: str, data: list) -> Request:
        return "/detect", json.dumps({"data": data, "src_type": src_type}).encode(), HEADERS

    pixels = [
        {
            "name": "image",
            "datatype": "UINT8",
            "shape": [5, side, side, 3],
            "parameters": {"binary_data_size": 5 * frame.nbytes},
        }
    ]
    strings = [{"name": "image", "datatype": "BYTES", "shape": [count], "data": [encoded] * count}]
    elements = b"".join(struct.pack("<I", len(photo)) + photo for _ in range(count))
    raw = [
        {
            "name": "image",
            "datatype": "BYTES",
            "shape": [count],
            "parameters": {"binary_data_size": len(elements)},
        }
    ]
    video = json.dumps({"data": f"{base}/video.avi", "src_type": "url", "max_frames": 5})
    v2 = "/v2/models/face/infer"
    label = f"{count} photos of {side} x {side}"
    return {
        "detect base64": (label, detect("base64", [encoded] * count)),
        "detect url": (label, detect("url", [f"{base}/photo.jpg"] * count)),
        "detect local": (label, detect("local", [str(folder / "photo.jpg")] * count)),
        "detect mmap": (f"{count} frames of {side} x {side}", detect("mmap", mmap)),
        "stream": (
            f"a {len(files['/video.avi']) / MIB:.0f} MiB 1080p video by URL, 5 frames",
            ("/detect/stream", video.encode(), HEADERS),
        ),
        "v2 JSON": (f"{label}, base64 BYTES", (v2, *v2_request(strings))),
        "v2 binary": (
            f"UINT8 [5, {side}, {side}, 3]",
            (v2, *v2_request(pixels, frame.tobytes() * 5)),
        ),
        "v2 BYTES": (f"{label}, binary BYTES", (v2, *v2_request(raw, elements))),
        "batched": (f"1 photo of {side} x {side} per request", detect("base64", [encoded])),
    }


def send(url: str, body: bytes, headers: dict[str, str]) -> int:
    """One POST; its status (0 when the connection failed)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    try:
        connection.request("POST", parts.path, body, headers)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        connection.close()


def pinged(server: AtomServer, stop: threading.Event, worst: list[float]) -> None:
    """Ping every 20 ms until ``stop``; keep the slowest answer (seconds) in ``worst``."""
    parts = urllib.parse.urlsplit(server.url("/v1/health/ping"))
    while not stop.wait(0.02):
        started = time.perf_counter()
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            connection.request("GET", parts.path)
            connection.getresponse().read()
        except (OSError, http.client.HTTPException):
            worst[0] = float("inf")
        finally:
            connection.close()
        worst[0] = max(worst[0], time.perf_counter() - started)


def run_door(project: Path, env: dict[str, str], request: Request, copies: int) -> dict:
    """``copies`` of a request at once on a fresh server: statuses, peak RSS, slowest ping."""
    path, body, headers = request
    with AtomServer(project, env=env) as server:
        stop, worst = threading.Event(), [0.0]
        pinger = threading.Thread(target=pinged, args=(server, stop, worst))
        pinger.start()
        statuses: list[int] = []
        threads = [
            threading.Thread(target=lambda: statuses.append(send(server.url(path), body, headers)))
            for _ in range(copies)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(600)
        seconds = time.perf_counter() - started
        stop.set()
        pinger.join(60)
        alive = server.process is not None and server.process.poll() is None
        peak = peak_mib(server.process.pid) if alive else float("inf")
    return {
        "statuses": sorted(statuses),
        "peak": peak,
        "ping": worst[0],
        "alive": alive,
        "seconds": seconds,
    }


def doors_table(project: Path, workdir: Path, doors: set[str]) -> list[str]:
    """Table 2: the worst request of every door alone and 8 at once, each on a fresh
    server.py with the default limits: peak RSS, replies, the slowest ping meanwhile."""
    folder = workdir / "inputs"
    folder.mkdir()
    files: dict[str, bytes] = {}
    videos = load_module(project / "tests" / "videos.py")
    rows = [
        f"| door | worst request | alone: replies | peak RSS | 8 at once: replies | peak RSS"
        f" | slowest ping | target: < {TARGET_PEAK_MIB} MiB, none killed, ping < 100 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    worst_peak, worst_ping, killed = 0.0, 0.0, 0
    with videos.serve_files(files) as base:
        env = {
            "LOG_ROOT": str(workdir / "logs"),
            "IMAGE_LOCAL_ROOTS": str(folder),
            "IMAGE_MMAP_ROOTS": str(folder),
            "IMAGE_URL_ALLOWED_NETWORKS": "127.0.0.1/32",
        }
        for door, (what, request) in door_requests(project, files, base, folder).items():
            if doors and door not in doors:
                continue
            print(f"{door}...", file=sys.stderr, flush=True)
            alone = run_door(project, env, request, 1)
            many = run_door(project, env, request, CONCURRENT)
            peak = max(alone["peak"], many["peak"])
            ping = max(alone["ping"], many["ping"])
            dead = (not alone["alive"]) + (not many["alive"])
            worst_peak, worst_ping, killed = (
                max(worst_peak, peak),
                max(worst_ping, ping),
                killed + dead,
            )
            met = peak < TARGET_PEAK_MIB and not dead and ping < 0.1
            rows.append(
                f"| {door} | {what} | {replies(alone['statuses'])} | {alone['peak']:.0f} MiB"
                f" | {replies(many['statuses'])} | {many['peak']:.0f} MiB | {ping * 1000:.0f} ms"
                f" | {'met' if met else 'not met'} |"
            )
    rows.append("")
    rows.append(
        f"worst: {worst_peak:.0f} MiB peak RSS (target < {TARGET_PEAK_MIB} MiB), {killed} server"
        f" killed, slowest ping {worst_ping * 1000:.0f} ms (target < 100 ms)"
    )
    return rows


def replies(statuses: list[int]) -> str:
    """Statuses counted: "200 x2, 503 x6"."""
    counts: dict[int, int] = {}
    for status in statuses:
        counts[status] = counts.get(status, 0) + 1
    return ", ".join(
        f"{status} x{n}" if n > 1 else str(status) for status, n in sorted(counts.items())
    )


def load_module(path: Path) -> Any:
    """A module of the baked atom's tests folder, by path."""
    spec = importlib.util.spec_from_file_location(f"atom_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    """Measure and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--warm-up", type=int, default=1_000)
    parser.add_argument("--tables", default="leak,doors")
    parser.add_argument("--doors", default="", help="a comma-separated subset of the doors")
    args = parser.parse_args()
    tables = set(args.tables.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        project = bake_with_stack_servers(workdir / "bake")
        chosen = set(filter(None, args.doors.split(",")))
        worst = doors_table(project, workdir, chosen) if "doors" in tables else []
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
