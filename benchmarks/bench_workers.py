"""Workers that scale: a CPU-bound detect through 1..N workers behind nginx, against one
worker held to one core and against `uvicorn --workers N`.

The body is the sample photograph (512x512, about 0.1 s of one core in the Haar
cascade). Set-ups, in alternating rounds (medians):

- one ``server.py`` held to one core (``taskset -c 0``, ATOM_THREADS=1): the unit;
- ``nginx_run`` with 1..N workers (N: the cores available), each with its thread budget
  (cores / workers, ``control/threads.py``) and nginx's ``least_conn``;
- ``uvicorn --workers N`` on the same app factory, as uvicorn runs it.

Each set-up is loaded with N connections (one request per core) and with 8 (a queue at
every worker). Targets: N workers reach at least 0.8 x N times the one-core unit (scaling
efficiency), and nginx_run with N workers is at least as fast as `uvicorn --workers N` at
an equal or lower p50. wrk runs on the same machine: the table says how much of the cores
it took.

    .venv/bin/python benchmarks/bench_workers.py [--seconds 10] [--rounds 3] [--connections 8]
"""

import argparse
import base64
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.atomctl import AtomLauncher, AtomServer, bake, pinned, wrk

WRK_SCRIPT = """
local file = io.open("{body}", "rb")
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
"""
EFFICIENCY_TARGET = 0.8
WRK_TIMEOUT = 30  # seconds: a slow reply is counted in the latencies, not dropped
UNIT = "server.py on one core"


class OneCore(AtomServer):
    """`taskset -c 0 python server.py`: one worker held to one core."""

    def command(self) -> list[str]:
        return pinned(super().command(), "0")


class UvicornWorkers(AtomServer):
    """`uvicorn --workers N` on the app factory: uvicorn's own multi-process mode."""

    def __init__(self, project: Path, workers: int, **kwargs: object) -> None:
        super().__init__(project, **kwargs)
        self.workers = workers

    def command(self) -> list[str]:
        return [
            *(self.python, "-m", "uvicorn", "my_atom.api.app:get_app", "--factory"),
            *("--workers", str(self.workers), "--host", "127.0.0.1", "--port", str(self.port)),
            *("--no-access-log", "--log-level", "warning"),
        ]


def wrk_cpu() -> float:
    """CPU seconds used by finished child processes (wrk's, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(server: AtomServer, script: Path, seconds: int, loads: tuple[int, ...]) -> dict:
    """Start the set-up, warm it up, load it at each concurrency, stop it; wrk's share of
    the cores too."""
    rows = {}
    with server:
        url = server.url("/detect")
        wrk(url, 3, max(loads), script, threads=1)  # warm-up: models, connections, caches
        for connections in loads:
            before = wrk_cpu()
            row = wrk(url, seconds, connections, script, threads=1, timeout=WRK_TIMEOUT)
            row["wrk_cores"] = (wrk_cpu() - before) / seconds
            rows[connections] = row
    return rows


def setups(project: Path, env: dict[str, str], cores: int) -> dict[str, object]:
    """The set-ups by name (factories: a server object runs once)."""
    found: dict[str, object] = {UNIT: lambda: OneCore(project, env={**env, "ATOM_THREADS": "1"})}
    for workers in range(1, cores + 1):
        found[f"nginx_run, {workers} worker(s)"] = lambda w=workers: AtomLauncher(
            project, workers=w, env=env
        )
    found[f"uvicorn --workers {cores}"] = lambda: UvicornWorkers(project, cores, env=env)
    return found


def main() -> int:
    """Measure the set-ups and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        project = bake(workdir / "bake")
        photo = (project / "tests" / "data" / "astronaut.jpg").read_bytes()
        body = workdir / "body.json"
        body.write_text(
            json.dumps({"data": [base64.b64encode(photo).decode()], "src_type": "base64"})
        )
        script = workdir / "detect.lua"
        script.write_text(WRK_SCRIPT.format(body=body))
        env = {"LOG_ROOT": str(workdir / "logs"), "LOG_LEVEL": "WARNING"}
        factories = setups(project, env, cores)
        loads = (cores, args.connections)
        runs: dict[str, list[dict]] = {name: [] for name in factories}
        for round_ in range(args.rounds):
            names = list(factories) if round_ % 2 == 0 else list(reversed(factories))
            for name in names:
                runs[name].append(measure(factories[name](), script, args.seconds, loads))
                time.sleep(1)
    for connections in loads:
        print_table(
            {name: [r[connections] for r in rows] for name, rows in runs.items()},
            cores,
            connections,
            args,
        )
    print(
        "wrk's cores: CPU time wrk used per second of its run (it shares the machine's"
        f" {cores} cores with the set-up)"
    )
    return 0


def print_table(
    runs: dict[str, list[dict]], cores: int, connections: int, args: argparse.Namespace
) -> None:
    """One row per set-up, with the targets."""
    print(
        f"detect on a 512x512 photo, wrk 1 thread and **{connections} connections**,"
        f" {args.seconds} s per run, {args.rounds} alternating rounds (medians); {cores} cores,"
        " shared by the servers, nginx and wrk"
    )
    print()
    print(
        "| set-up | requests/s | p50 ms | p99 ms | non-2xx / timeouts | wrk's cores"
        " | vs one worker on one core | target |"
    )
    print("|---|---|---|---|---|---|---|---|")

    def med(name: str, key: str) -> float:
        return statistics.median(row[key] for row in runs[name])

    unit = runs[UNIT]
    nginx_n, uvicorn_n = f"nginx_run, {cores} worker(s)", f"uvicorn --workers {cores}"
    for name, rows in runs.items():
        ratio = statistics.median(a["rps"] / b["rps"] for a, b in zip(rows, unit, strict=True))
        target = "-"
        if name.startswith("nginx_run"):
            workers = int(name.split(", ")[1].split(" ")[0])
            goal = EFFICIENCY_TARGET * workers
            target = f">= {goal:.1f}x: {'met' if ratio >= goal else 'not met'}"
        elif name == uvicorn_n:
            faster = statistics.median(
                a["rps"] / b["rps"] for a, b in zip(runs[nginx_n], rows, strict=True)
            )
            p50_ok = med(nginx_n, "p50") <= med(name, "p50")
            met = "met" if faster >= 1.0 and p50_ok else "not met"
            target = f"nginx_run {faster:.2f}x its req/s, p50 {'<=' if p50_ok else '>'}: {met}"
        print(
            f"| {name} | {med(name, 'rps'):.1f} | {med(name, 'p50'):.0f} | {med(name, 'p99'):.0f}"
            f" | {med(name, 'errors'):.0f} / {med(name, 'socket_errors'):.0f}"
            f" | {med(name, 'wrk_cores'):.2f} | {ratio:.2f}x"
            f" | {target} |"
        )
    print()


if __name__ == "__main__":
    raise SystemExit(main())
