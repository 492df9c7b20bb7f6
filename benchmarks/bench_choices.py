"""Runtime choices, measured: each choice the atom made against its alternative, side by side.

- the example ``detect`` as shipped (``async def``: the images loaded in the thread pool
  and the model run by its batch thread, only when there are some) or as a plain ``def``
  (a thread-pool hop on every call), on a CPU-bound request (the 64x64 face, about 8 ms)
  and on a request with nothing to load (``src_type`` ``stream``);
- logged calls through the atom's batched handlers or through the standard library's
  ``QueueHandler`` and ``QueueListener`` (the small logged JSON POST);
- routes copied into the app's own list (``include_flat``) or mounted with FastAPI's
  ``include_router`` (``GET ping``).

Variants of a pair alternate over several rounds (which goes first alternates too); the
table gives medians, and the median of each round's ratio.

    .venv/bin/python benchmarks/bench_choices.py [--seconds 5] [--rounds 3] [--connections 8]
"""

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_stack import ECHO_BODY, POST_SCRIPT

from scripts.atomctl import AtomServer, bake, small_face, wrk

HERE = Path(__file__).resolve().parent
KEYS = ("rps", "p50", "p99")
# (label, shipped variant, alternative, path, body or None)
PAIRS = (
    ("detect, 64x64 face", "detect-shipped", "detect-def", "/detect", "face"),
    ("detect, no image (stream)", "detect-shipped", "detect-def", "/detect", "stream"),
    ("logged JSON POST", "log-batched", "log-queue", "/bench/echo", "echo"),
    ("GET ping", "routes-flat", "routes-included", "/v1/health/ping", None),
)


class ChoiceServer(AtomServer):
    """choice_servers.py VARIANT in the baked project."""

    def __init__(self, project: Path, variant: str, **kwargs: object) -> None:
        super().__init__(project, **kwargs)
        self.variant = variant

    def command(self) -> list[str]:
        return [self.python, "choice_servers.py", self.variant, "--port", str(self.port)]


def measure(server: ChoiceServer, path: str, script: Path | None, args: argparse.Namespace):
    """Throughput and latency of one route of one server (after a warm-up)."""
    with server:
        url = server.url(path)
        wrk(url, 2, args.connections, script, threads=1)
        return wrk(url, args.seconds, args.connections, script, threads=1)


def main() -> int:
    """Measure every pair and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        project = bake(workdir / "bake")
        shutil.copy(HERE / "choice_servers.py", project)
        bodies = {
            "echo": ECHO_BODY,
            "face": json.dumps({"data": [small_face(project)], "src_type": "base64"}),
            "stream": json.dumps({"data": [], "src_type": "stream"}),
        }
        scripts = {name: workdir / f"{name}.lua" for name in bodies}
        for name, body in bodies.items():
            scripts[name].write_text(POST_SCRIPT.format(body=body))
        env = {"LOG_ROOT": str(workdir / "logs")}
        for label, shipped, other, path, body in PAIRS:
            script = scripts[body] if body else None
            runs: dict[str, list[dict]] = {shipped: [], other: []}
            for round_ in range(args.rounds):
                order = (shipped, other) if round_ % 2 else (other, shipped)
                for variant in order:
                    server = ChoiceServer(project, variant, env=env)
                    runs[variant].append(measure(server, path, script, args))
            rows.append((label, shipped, other, runs))
    print(
        f"wrk 1 thread, {args.connections} connections, {args.seconds} s per run;"
        f" {args.rounds} alternating rounds; Python {sys.version.split()[0]}"
    )
    print()
    print(
        "| request | shipped | req/s | p50 / p99 ms | alternative | req/s | p50 / p99 ms"
        " | shipped / alternative |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, shipped, other, runs in rows:
        a = {k: statistics.median(r[k] for r in runs[shipped]) for k in KEYS}
        b = {k: statistics.median(r[k] for r in runs[other]) for k in KEYS}
        ratio = statistics.median(
            x["rps"] / y["rps"] for x, y in zip(runs[shipped], runs[other], strict=True)
        )
        print(
            f"| {label} | {shipped} | {a['rps']:.0f} | {a['p50']:.2f} / {a['p99']:.2f} |"
            f" {other} | {b['rps']:.0f} | {b['p50']:.2f} / {b['p99']:.2f} | {ratio:.2f}x |"
        )
    print()
    print("medians over the rounds; shipped / alternative is the median of the rounds' ratios")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
