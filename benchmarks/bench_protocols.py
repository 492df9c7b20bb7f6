"""Standard protocols: time to first event of a stream through nginx, and v2 binary tensors
against base64 ``detect`` for a 1080p frame.

Prints two tables, every number measured in this run with the variants interleaved:

1. ``POST /detect/stream`` on a 360p video (the demo model, every frame) through
   ``nginx_run`` with 2 workers and straight to one of its workers: the time to the first
   frame event and to the summary, read with httpx-sse; the first event should come one
   frame's work after the call, whatever the video's length, and nginx should add
   nothing that matters to it;
2. one 1080p frame (the demo photograph scaled, with noise) sent to a real ``server.py``
   as ``detect`` with a base64 JPEG, and as v2 ``infer`` with the JPEG as binary BYTES,
   the raw RGB pixels as a binary UINT8 tensor, and the pixels as JSON numbers; once with
   the demo model and once with a model that finds nothing at once (the transport alone).
   The client's work (encoding) is included. The variants take turns, in an order that
   alternates from one round to the next.

    .venv/bin/python benchmarks/bench_protocols.py [--runs 15]
"""

import argparse
import base64
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
from httpx_sse import connect_sse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.atomctl import AtomLauncher, AtomServer, bake

SIZE = (1920, 1080)
STREAM_SIZE = (640, 360)  # the stream's frames: one frame's detection stays short
VIDEO_FRAMES = 12
NOOP_SERVER = '''"""server.py with a face model that finds nothing, at once (transport only)."""

import server
from my_atom.api.app import get_app


class Nothing:
    def predict_batch(self, images, threshold):
        return [[] for _ in images]


if __name__ == "__main__":
    raise SystemExit(
        server.main(app_factory=lambda s: get_app(s, model_loaders={"face": lambda _: Nothing()}))
    )
'''


def make_frame(project: Path, size: tuple[int, int] = SIZE) -> np.ndarray:
    """The demo photograph scaled to ``size`` with sensor-like noise (BGR)."""
    photo = cv2.imread(str(project / "tests" / "data" / "astronaut.jpg"))
    frame = cv2.resize(photo, size, interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(0).normal(0, 4, frame.shape)
    return np.clip(frame + noise, 0, 255).astype(np.uint8)


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f}"


def stream_times(client: httpx.Client, url: str, body: dict) -> tuple[float, float]:
    """Seconds to the first event and to the last one."""
    started = time.perf_counter()
    first = 0.0
    with connect_sse(client, "POST", url, json=body) as source:
        for index, event in enumerate(source.iter_sse()):
            if index == 0:
                first = time.perf_counter() - started
            assert event.event != "error", event.data
    return first, time.perf_counter() - started


def stream_table(project: Path, work: Path, runs: int) -> list[str]:
    """Table 1: time to first event and to the summary, through nginx and straight."""
    frame = make_frame(project, STREAM_SIZE)
    video = work / "videos" / "clip.avi"
    video.parent.mkdir()
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, STREAM_SIZE)
    for _ in range(VIDEO_FRAMES):
        writer.write(frame)
    writer.release()
    env = {"LOG_ROOT": str(work / "logs"), "IMAGE_LOCAL_ROOTS": str(video.parent)}
    body = {"data": str(video), "src_type": "local"}
    times: dict[str, list[tuple[float, float]]] = {"nginx_run, 2 workers": [], "one worker": []}
    launcher = AtomLauncher(project, workers=2, env={**env, "ATOM_RUNTIME_DIR": str(work / "run")})
    with launcher as atom, httpx.Client(timeout=120, trust_env=False) as client:
        urls = {
            "nginx_run, 2 workers": atom.url("/detect/stream"),
            "one worker": f"http://127.0.0.1:{atom.inner_start}{atom.prefix}/detect/stream",
        }
        for name in urls:
            stream_times(client, urls[name], body)  # warm-up
        for round_ in range(runs):
            order = list(urls.items())
            for name, url in order if round_ % 2 else reversed(order):
                times[name].append(stream_times(client, url, body))
    lines = [
        f"`POST /detect/stream`, a {VIDEO_FRAMES}-frame 640x360 MJPG video, demo model on every"
        f" frame; medians of {runs} runs:",
        "",
        "| path | first event, ms | summary, ms | first / summary |",
        "|---|---:|---:|---:|",
    ]
    for name, pairs in times.items():
        first = [pair[0] for pair in pairs]
        last = [pair[1] for pair in pairs]
        ratio = statistics.median(first) / statistics.median(last)
        lines.append(f"| {name} | {median_ms(first)} | {median_ms(last)} | {ratio:.2f} |")
    nginx = statistics.median(p[0] for p in times["nginx_run, 2 workers"])
    direct = statistics.median(p[0] for p in times["one worker"])
    lines += ["", f"First event through nginx / straight to a worker: {nginx / direct:.2f}x."]
    return lines


def detect_variants(client: httpx.Client, base: str, frame: np.ndarray) -> dict[str, Callable]:
    """One request per variant (the client's encoding included)."""
    rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def jpeg() -> bytes:
        return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()

    def binary(name: str, datatype: str, shape: list[int], raw: bytes) -> Any:
        head = {
            "inputs": [
                {
                    "name": name,
                    "datatype": datatype,
                    "shape": shape,
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
        text = json.dumps(head).encode()
        headers = {"inference-header-content-length": str(len(text))}
        return client.post(f"{base}/v2/models/face/infer", content=text + raw, headers=headers)

    def detect_base64() -> Any:
        body = {"data": [base64.b64encode(jpeg()).decode()], "src_type": "base64"}
        return client.post(f"{base}/detect", json=body)

    def v2_bytes() -> Any:
        raw = jpeg()
        return binary("image", "BYTES", [1], len(raw).to_bytes(4, "little") + raw)

    def v2_uint8() -> Any:
        return binary("image", "UINT8", [1, *rgb.shape], rgb.tobytes())

    def v2_json() -> Any:
        body = {
            "inputs": [
                {
                    "name": "image",
                    "datatype": "UINT8",
                    "shape": [1, *rgb.shape],
                    "data": rgb.reshape(-1).tolist(),
                }
            ]
        }
        return client.post(f"{base}/v2/models/face/infer", json=body)

    return {
        "`detect`, base64 JPEG (JSON)": detect_base64,
        "v2, JPEG as binary BYTES": v2_bytes,
        "v2, RGB pixels as binary UINT8": v2_uint8,
        "v2, RGB pixels as JSON numbers": v2_json,
    }


def request_table(project: Path, work: Path, runs: int) -> list[str]:
    """Table 2: one 1080p frame per request, four ways, demo model and no-op model."""
    (project / "noop_server.py").write_text(NOOP_SERVER)
    frame = make_frame(project)
    results: dict[str, dict[str, float]] = {}
    for model, script in (("demo model", "server.py"), ("no-op model", "noop_server.py")):
        env = {"LOG_ROOT": str(work / f"logs-{model[:4]}")}
        with (
            AtomServer(project, env=env, script=script) as atom,
            httpx.Client(timeout=120, trust_env=False) as client,
        ):
            variants = detect_variants(client, atom.base + atom.prefix, frame)
            json_runs = max(3, runs // 3)
            times: dict[str, list[float]] = {name: [] for name in variants}
            for name, call in variants.items():
                assert call().status_code == 200, name  # warm-up and check
            for round_ in range(runs):
                # The order alternates: a request right after another one pays for it.
                order = list(variants.items())
                for name, call in order if round_ % 2 else reversed(order):
                    if "JSON numbers" in name and round_ >= json_runs:
                        continue  # slow: fewer runs
                    started = time.perf_counter()
                    assert call().status_code == 200
                    times[name].append(time.perf_counter() - started)
            results[model] = {name: statistics.median(values) for name, values in times.items()}
    base_name = "`detect`, base64 JPEG (JSON)"
    lines = [
        f"One 1080p frame per request to `server.py`; medians of {runs} runs (JSON numbers:"
        f" {max(3, runs // 3)}), the client's encoding included:",
        "",
        "| request | demo model, ms | vs detect | no-op model, ms | vs detect |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in results["demo model"]:
        cells = []
        for model in ("demo model", "no-op model"):
            value = results[model][name]
            cells += [f"{value * 1000:.1f}", f"{value / results[model][base_name]:.2f}x"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-protocols-") as folder:
        work = Path(folder)
        # nginx's workers (nobody, when the benchmark runs as root) pass through this
        # folder to the runtime folder inside it: mkdtemp's 0700 would stop the launcher.
        work.chmod(0o755)
        project = bake(work / "bake")
        print("\n".join(stream_table(project, work, args.runs)))
        print()
        print("\n".join(request_table(project, work, args.runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
