"""Throughput of a CPU-bound detect: 1 worker, 2 workers behind nginx, `uvicorn --workers 2`.

Load from wrk (Debian package) with the sample photograph as the body; the three set-ups
run one after the other in the same run, on the same baked atom, and the table gives
each one's ratio to the single server.

    .venv/bin/python benchmarks/bench_workers.py [--seconds 15] [--connections 8]
"""

import argparse
import base64
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.atomctl import AtomLauncher, AtomServer, bake, wrk

WRK_SCRIPT = """
local file = io.open("{body}", "rb")
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
"""


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


def measure(server: AtomServer, script: Path, seconds: int, connections: int) -> dict:
    """Start the set-up, warm it up, load it, stop it."""
    with server:
        url = server.url("/detect")
        wrk(url, 3, connections, script)  # warm-up: models, connections, caches
        return wrk(url, seconds, connections, script)


def main() -> int:
    """Measure the three set-ups and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
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
        setups = {
            "server.py, 1 worker": AtomServer(project, env=env),
            "nginx_run, 2 workers": AtomLauncher(project, workers=2, env=env),
            "uvicorn --workers 2": UvicornWorkers(project, 2, env=env),
        }
        results = {}
        for name, server in setups.items():
            results[name] = measure(server, script, args.seconds, args.connections)
            time.sleep(1)
    base = results["server.py, 1 worker"]["rps"]
    print(f"detect on a 512x512 photo, wrk {args.connections} connections, {args.seconds} s each")
    print()
    print("| set-up | requests/s | p50 ms | p99 ms | non-2xx | ratio to 1 worker |")
    print("|---|---|---|---|---|---|")
    for name, row in results.items():
        print(
            f"| {name} | {row['rps']:.1f} | {row['p50']:.1f} | {row['p99']:.1f} |"
            f" {row['errors']:.0f} | {row['rps'] / base:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
