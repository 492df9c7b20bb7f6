"""The peer, side by side: the atom against LitServe on the same models and bodies.

LitServe runs in its own virtual environment (``build/litserve-venv``, made here on first
use from PyPI: ``litserve``, OpenCV 4.x for the Haar cascades, ONNX Runtime), serving
``litserve_server.py``: the atom's face model with the atom's request and reply bodies,
and the batching benchmark's MLP (``mlp_model.py``). One worker each, batching on both
sides (16 items, 5 ms); the atom with its defaults (log file and console at INFO,
request ids, metrics). Loads from wrk (1 thread); atom and LitServe alternate over the
rounds; medians, and the median of each round's ratio.

- a detect of the sample photograph (512x512): both are bound by the model;
- an empty detect (``{"data": [], "src_type": "stream"}``): the cost of each stack;
- the MLP at 32 connections: the two batchers.

    .venv/bin/python benchmarks/bench_peer.py [--seconds 6] [--rounds 3]
"""

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_workers import WRK_SCRIPT

from scripts.atomctl import AtomServer, bake, wrk

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = ROOT / "build" / "litserve-venv"
# LitServe's side, pinned like the atom's (OpenCV below 5: the cascades).
REQUIREMENTS = (
    "litserve==0.2.19",
    "opencv-python-headless==4.14.0.94",
    "numpy==2.4.6",
    "onnxruntime==1.32.0",
)
FILES = ("litserve_server.py", "mlp_model.py", "batching_server.py")
# (label, atom server kind, path, body name, connections, target atom / LitServe)
LOADS = (
    ("detect, 512x512 photo", "face", "/detect", "photo", 4, 1.0),
    ("detect, empty request", "face", "/detect", "empty", 16, 1.5),
    ("MLP, batched, 1 item per request", "mlp", "/mlp", "mlp", 32, 1.0),
)
KEYS = ("rps", "p50", "p99")
WRK_TIMEOUT = 30  # seconds: a slow photo is counted in the latencies, not dropped


def litserve_python() -> str:
    """The Python of LitServe's virtual environment, made (or updated) when needed."""
    python = VENV / "bin" / "python"
    marker = VENV / "requirements.txt"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return str(python)
    print(f"bench: installing LitServe into {VENV} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *REQUIREMENTS],
        check=True,
        timeout=1200,
    )
    marker.write_text(wanted)
    return str(python)


class AtomFace(AtomServer):
    """The atom as generated: server.py, its face model batching."""


class AtomMlp(AtomServer):
    """batching_server.py: the atom serving the MLP."""

    def command(self) -> list[str]:
        return [self.python, "batching_server.py", "--port", str(self.port), "--host", "127.0.0.1"]


class LitServe(AtomServer):
    """litserve_server.py KIND with LitServe's Python; ready when /health answers."""

    def __init__(self, project: Path, kind: str, **kwargs: object) -> None:
        super().__init__(project, **kwargs)
        self.kind = kind

    def command(self) -> list[str]:
        # Its own session: LitServe's API server and inference worker are processes of
        # their own, stopped with the group.
        setsid = shutil.which("setsid")
        assert setsid, "setsid is missing (Debian: util-linux)"
        return [setsid, self.python, "litserve_server.py", self.kind, "--port", str(self.port)]

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM to the whole group, SIGKILL to what is left of it after ``timeout``."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        return 0

    def url(self, path: str) -> str:
        if path == "/v1/health/ready":
            return f"{self.base}/health"
        return super().url(path)


def measure(server: AtomServer, path: str, script: Path, connections: int, seconds: int) -> dict:
    """One load on one server: warm-up, then the measured run."""
    with server:
        url = server.url(path)
        wrk(url, 2, connections, script, threads=1, timeout=WRK_TIMEOUT)
        return wrk(url, seconds, connections, script, threads=1, timeout=WRK_TIMEOUT)


def main() -> int:
    """Measure every load and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    peer_python = litserve_python()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        project = bake(workdir / "bake")
        for name in FILES:
            shutil.copy(HERE / name, project)
        sys.path.insert(0, str(HERE))
        from mlp_model import build

        model = build(workdir / "mlp.onnx")
        photo = base64.b64encode((project / "tests" / "data" / "astronaut.jpg").read_bytes())
        bodies = {
            "photo": json.dumps({"data": [photo.decode()], "src_type": "base64"}),
            "empty": json.dumps({"data": [], "src_type": "stream"}),
            "mlp": json.dumps({"data": [0.5]}),
        }
        scripts = {}
        for name, body in bodies.items():
            (workdir / f"{name}.json").write_text(body)
            scripts[name] = workdir / f"{name}.lua"
            scripts[name].write_text(WRK_SCRIPT.format(body=workdir / f"{name}.json"))
        atom_env = {"LOG_ROOT": str(workdir / "logs"), "MLP_MODEL": str(model), "ATOM_THREADS": "1"}
        peer_env = {"MLP_MODEL": str(model), "MLP_THREADS": "1"}
        servers = {
            "atom": {
                "face": lambda: AtomFace(project, env={"LOG_ROOT": str(workdir / "logs")}),
                "mlp": lambda: AtomMlp(project, env=atom_env),
            },
            "litserve": {
                kind: lambda kind=kind: LitServe(project, kind, env=peer_env, python=peer_python)
                for kind in ("face", "mlp")
            },
        }
        runs: dict[str, dict[str, list[dict]]] = {"atom": {}, "litserve": {}}
        for round_ in range(args.rounds):
            for label, kind, path, body, connections, _ in LOADS:
                order = ("atom", "litserve") if round_ % 2 == 0 else ("litserve", "atom")
                for side in order:
                    server = servers[side][kind]()
                    row = measure(server, path, scripts[body], connections, args.seconds)
                    runs[side].setdefault(label, []).append(row)
    print_table(runs, args)
    return 0


def print_table(runs: dict[str, dict[str, list[dict]]], args: argparse.Namespace) -> None:
    """One row per load, with its target."""
    print(
        f"one worker each, batching on both sides (16 items, 5 ms); wrk 1 thread, {args.seconds} s"
        f" per run, {args.rounds} alternating rounds (medians); LitServe {REQUIREMENTS[0][10:]}"
    )
    print()
    print(
        "| load | connections | atom req/s | LitServe req/s | atom / LitServe"
        " | atom p50 / p99 ms | LitServe p50 / p99 ms | target |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, _, _, _, connections, goal in LOADS:
        atom, peer = runs["atom"][label], runs["litserve"][label]
        a = {k: statistics.median(r[k] for r in atom) for k in KEYS}
        p = {k: statistics.median(r[k] for r in peer) for k in KEYS}
        ratio = statistics.median(x["rps"] / y["rps"] for x, y in zip(atom, peer, strict=True))
        errors = sum(r["errors"] + r["socket_errors"] for r in atom + peer)
        verdict = "met" if ratio >= goal else "not met"
        print(
            f"| {label} | {connections} | {a['rps']:.1f} | {p['rps']:.1f} | {ratio:.2f}x"
            f" | {a['p50']:.2f} / {a['p99']:.2f} | {p['p50']:.2f} / {p['p99']:.2f}"
            f" | >= {goal:.1f}x: {verdict}{'' if not errors else f' ({errors:.0f} errors)'} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
