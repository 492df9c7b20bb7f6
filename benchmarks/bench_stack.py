"""Stack overhead: the full atom stack against a bare FastAPI app, same uvicorn settings.

Two routes: ``GET ping`` (quiet: logged at DEBUG) and a small JSON ``POST`` (logged at
INFO, like a model route: one line per call, request id, metrics), plus the atom's
``detect`` with nothing to load against the same route written by hand. Load from wrk;
the servers alternate over several rounds (which goes first rotates too), and the table
gives medians, and the median of each round's atom / bare ratio.

A last row sets the logged POST beside the bare app run as uvicorn runs it by default,
with its access log: what one log line per call costs without the atom (its line is
shorter than the atom's, without request id or body, and goes to one output, not two).

    .venv/bin/python benchmarks/bench_stack.py [--seconds 5] [--rounds 5] [--connections 16]
        [--pin]

``--pin`` holds each server to CPU 1 and wrk to CPU 0 (taskset): on a machine of two
cores, where the two otherwise share both, the ratios move much less from run to run.
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.atomctl import AtomServer, bake, pinned, wrk

HERE = Path(__file__).resolve().parent
POST_SCRIPT = """
wrk.method = "POST"
wrk.body = '{body}'
wrk.headers["Content-Type"] = "application/json"
"""
TARGET = 0.95
DETECT_TARGET = 0.90
# The body of a detect with nothing to load.
STREAM_BODY = json.dumps({"data": [], "src_type": "stream"})
KEYS = ("rps", "p50", "p99", "cpu_us")


# The small JSON body of the echo route (bench_memory sends it too).
ECHO_BODY = json.dumps({"name": "frame-17", "values": list(range(20))})


def bake_with_stack_servers(output_dir: Path) -> Path:
    """The default atom baked in ``output_dir``, with stack_servers.py beside server.py."""
    project = bake(output_dir)
    shutil.copy(HERE / "stack_servers.py", project)
    return project


class StackServer(AtomServer):
    """stack_servers.py atom|bare in the baked project (held to ``cpus`` when given)."""

    variants = "stack_servers.py"  # the script, run with the server's kind and --port

    def __init__(self, project: Path, kind: str, cpus: str | None = None, **kwargs) -> None:
        super().__init__(project, **kwargs)
        self.kind = kind
        self.cpus = cpus

    def command(self) -> list[str]:
        return pinned([self.python, self.variants, self.kind, "--port", str(self.port)], self.cpus)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loaded(
    server: StackServer, url: str, seconds: int, connections: int, script, cpus=None
) -> dict:
    """One wrk run, plus the server's CPU time per request (less sensitive than requests/s
    to other work on the machine: it counts only what the server itself spent)."""
    assert server.process is not None
    before = cpu_seconds(server.process.pid)
    row = wrk(url, seconds, connections, script, threads=1, cpus=cpus)
    spent = cpu_seconds(server.process.pid) - before
    # A route that answers errors (a 404 of a missing route, a 422) measures nothing.
    assert not row["errors"], f"{server.kind} {url}: {row['errors']:.0f} replies were not 2xx"
    row["cpu_us"] = spent / max(1.0, row["rps"] * seconds) * 1e6
    return row


# (row key, path, body script name or None); the bare app serves the atom's detect
# written by hand twice, as a plain def and as an async def.
LOADS = {
    "bare-logged": (("echo_logged", "/bench/echo", "echo"),),
    "atom": (
        ("ping", "/v1/health/ping", None),
        ("echo", "/bench/echo", "echo"),
        ("detect", "/detect", "stream"),
        ("detect_async", "/detect", "stream"),
    ),
    "bare": (
        ("ping", "/v1/health/ping", None),
        ("echo", "/bench/echo", "echo"),
        ("detect", "/detect", "stream"),
        ("detect_async", "/bench/detect-async", "stream"),
    ),
}
# (label, atom's row, the other server, its row, target)
ROWS = (
    ("GET ping", "ping", "bare", "ping", TARGET),
    ("POST small JSON", "echo", "bare", "echo", TARGET),
    (
        "POST detect, no image (stream); bare: hand-written `def`",
        "detect",
        "bare",
        "detect",
        DETECT_TARGET,
    ),
    (
        "POST detect, no image (stream); bare: hand-written `async def`",
        "detect_async",
        "bare",
        "detect_async",
        None,
    ),
    (
        "POST small JSON; bare with uvicorn's access log on (its default)",
        "echo",
        "bare-logged",
        "echo_logged",
        None,
    ),
)
KINDS = ("atom", "bare", "bare-logged")


def measure(
    server: StackServer, seconds: int, connections: int, scripts: dict, cpus: str | None = None
) -> dict:
    """Each route's throughput on one server (after a warm-up), wrk held to ``cpus``."""
    rows = {}
    with server:
        for key, path, body in LOADS[server.kind]:
            url, script = server.url(path), scripts.get(body)
            wrk(url, 2, connections, script, threads=1, cpus=cpus)
            rows[key] = loaded(server, url, seconds, connections, script, cpus)
    return rows


def main() -> int:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--pin", action="store_true", help="servers on CPU 1, wrk on CPU 0")
    args = parser.parse_args()
    server_cpus, wrk_cpus = ("1", "0") if args.pin else (None, None)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        project = bake_with_stack_servers(workdir / "bake")
        scripts = {"echo": workdir / "echo.lua", "stream": workdir / "stream.lua"}
        scripts["echo"].write_text(POST_SCRIPT.format(body=ECHO_BODY))
        scripts["stream"].write_text(POST_SCRIPT.format(body=STREAM_BODY))
        env = {"LOG_ROOT": str(workdir / "logs")}  # the atom logs as it does by default
        runs: dict[str, list[dict]] = {kind: [] for kind in KINDS}
        for round_ in range(args.rounds):
            shift = round_ % len(KINDS)
            for kind in KINDS[shift:] + KINDS[:shift]:
                server = StackServer(project, kind, server_cpus, env=env)
                row = measure(server, args.seconds, args.connections, scripts, wrk_cpus)
                runs[kind].append(row)
    pinned = "; servers on CPU 1, wrk on CPU 0" if args.pin else ""
    print(
        f"wrk 1 thread, {args.connections} connections, {args.seconds} s per run;"
        f" {args.rounds} alternating rounds; Python {sys.version.split()[0]}{pinned}"
    )
    print()
    print(
        "| route | atom req/s | bare req/s | atom / bare | atom p50 / p99 ms"
        " | bare p50 / p99 ms | CPU µs per request, atom / bare | bare / atom CPU | target |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for label, route, other, other_route, target in ROWS:
        pairs = list(zip(runs["atom"], runs[other], strict=True))
        atom = {k: statistics.median(a[route][k] for a, _ in pairs) for k in KEYS}
        bare = {k: statistics.median(b[other_route][k] for _, b in pairs) for k in KEYS}
        ratio = statistics.median(a[route]["rps"] / b[other_route]["rps"] for a, b in pairs)
        cpu = statistics.median(b[other_route]["cpu_us"] / a[route]["cpu_us"] for a, b in pairs)
        verdict = (
            "-"
            if target is None
            else f">= {target:.2f}x: " + ("met" if ratio >= target else "not met")
        )
        print(
            f"| {label} | {atom['rps']:.0f} | {bare['rps']:.0f} | {ratio:.2f}x |"
            f" {atom['p50']:.2f} / {atom['p99']:.2f} | {bare['p50']:.2f} / {bare['p99']:.2f} |"
            f" {atom['cpu_us']:.0f} / {bare['cpu_us']:.0f} | {cpu:.2f}x |"
            f" {verdict} |"
        )
    print()
    print(
        "medians over the rounds; atom / bare and bare / atom CPU are medians of the rounds'"
        " ratios. CPU per request counts only the server's own time: on a machine shared"
        " with other work it is the steadier measure of what the stack costs."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
