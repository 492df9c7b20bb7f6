"""Bake time, start-to-ready time, import time and memory of one atom server.

Prints one table; the atom and a bare FastAPI app (stack_servers.py bare, same uvicorn
settings) are measured alternately in the same run, so their ratio holds on any machine.
"Ready" is the first 200 of the ready route: for the atom, its demo model decrypted
with the project's key and loaded (target: within 2 s).

    .venv/bin/python benchmarks/bench_boot.py [--runs 5]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_stack import (  # benchmarks/ is on the path as the script's folder
    StackServer,
    bake_with_stack_servers,
)

from scripts.atomctl import AtomServer, bake, http, rss_kib

READY_TARGET = 2.0  # seconds


def time_bake(workdir: Path, runs: int) -> list[float]:
    """Seconds to render the default atom, ``runs`` times."""
    seconds = []
    for run in range(runs):
        started = time.perf_counter()
        bake(workdir / f"bake{run}")
        seconds.append(time.perf_counter() - started)
    return seconds


def time_import(project: Path, module: str) -> float:
    """Seconds for a fresh interpreter to import ``module`` (minus a bare interpreter start)."""

    def run(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=project, check=True, timeout=120)
        return time.perf_counter() - started

    return run(f"import {module}") - run("pass")


def boot(project: Path, logs: Path, bare: bool) -> tuple[float, int]:
    """Start a server, wait until ready; return (seconds to ready, RSS in KiB after warm-up)."""
    env = {"LOG_ROOT": str(logs)}
    server = StackServer(project, "bare", env=env) if bare else AtomServer(project, env=env)
    with server:
        for _ in range(200):  # warm-up
            assert http("GET", server.url("/v1/health/ping"))[0] == 200
        return server.seconds_to_ready or 0.0, rss_kib(server.process.pid)


def main() -> int:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bakes = time_bake(workdir, args.runs)
        atom = workdir / "bake0" / "my-atom"
        bare = bake_with_stack_servers(workdir / "bare")  # the bare app of bench_stack
        rows = {"atom": [], "bare": []}
        for run in range(args.runs):
            rows["atom"].append(boot(atom, workdir / f"logs{run}", bare=False))
            rows["bare"].append(boot(bare, workdir / f"blogs{run}", bare=True))
        imports = {
            "atom": statistics.median(
                time_import(atom, "uvicorn, my_atom.api.app") for _ in range(3)
            ),
            "bare": statistics.median(time_import(atom, "uvicorn, fastapi") for _ in range(3)),
        }
    ready = {key: statistics.median(r[0] for r in value) for key, value in rows.items()}
    rss = {key: statistics.median(r[1] for r in value) for key, value in rows.items()}
    print(f"runs: {args.runs} (medians); Python {sys.version.split()[0]}")
    print()
    verdict = "met" if max(r[0] for r in rows["atom"]) <= READY_TARGET else "not met"
    print("| measure | atom | bare FastAPI | atom / bare | target |")
    print("|---|---|---|---|---|")
    print(f"| bake (render + Cython compile) | {statistics.median(bakes):.2f} s | - | - | - |")
    print(
        f"| `python server.py` to ready | {ready['atom']:.2f} s | {ready['bare']:.2f} s |"
        f" {ready['atom'] / ready['bare']:.2f}x | every run <= {READY_TARGET:.0f} s: {verdict} |"
    )
    print(
        f"| import of the app module | {imports['atom']:.2f} s | {imports['bare']:.2f} s |"
        f" {imports['atom'] / imports['bare']:.2f}x | - |"
    )
    print(
        f"| RSS after 200 pings | {rss['atom'] / 1024:.1f} MiB | {rss['bare'] / 1024:.1f} MiB |"
        f" {rss['atom'] / rss['bare']:.2f}x | - |"
    )
    slowest = max(r[0] for r in rows["atom"])
    print()
    print(f"slowest atom start of the {args.runs}: {slowest:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
