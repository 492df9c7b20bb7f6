"""Run every benchmark of the template and write BENCHMARKS.md at the template root.

``make bench`` runs this. Each script prints its own tables (variants measured side by
side in the same run); this file adds the machine, the method, each script's command,
time and wall time, and puts them on one page. A script that fails is reported on the
page and makes the run exit with status 1. ``--only`` runs the scripts named and replaces
their sections of the page, keeping the others.

    .venv/bin/python benchmarks/run_all.py [--only stack,peer] [--quick] [--output BENCHMARKS.md]

``--quick`` passes ``--quick`` to the scripts that have it (bench_peer.py: one short
round), a smoke check of the page's making; its numbers are not to be trusted.
"""

import argparse
import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# (name, script, title): in the order of the page.
BENCHMARKS = (
    ("stack", "bench_stack.py", "Stack overhead: the atom against bare FastAPI"),
    ("choices", "bench_choices.py", "Runtime choices: each speed trick with and without"),
    ("boot", "bench_boot.py", "Cold start, import, bake time and footprint"),
    ("memory", "bench_memory.py", "Memory"),
    ("batching", "bench_batching.py", "Dynamic batching: a model bound by reading its weights"),
    ("workers", "bench_workers.py", "Workers that scale: a CPU-bound detect on 1..N workers"),
    ("peer", "bench_peer.py", "The peers, side by side: LitServe, BentoML, Ray Serve"),
    ("images", "bench_images.py", "Image inputs: base64, mmap and shared memory"),
    ("protector", "bench_protector.py", "Model decryption"),
    ("protocols", "bench_protocols.py", "Standard protocols: streams through nginx, v2 tensors"),
)
PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "pydantic",
    "orjson",
    "prometheus-client",
    "opencv-python-headless",
    "numpy",
    "cryptography",
    "Cython",
    "onnxruntime",
)
TIMEOUT = 1800  # seconds, per script
# The peers' first run installs three virtual environments, and Ray takes half a minute to
# start on one busy core, twice per round.
TIMEOUTS = {"bench_peer.py": 5400}
QUICK = {"bench_peer.py"}  # the scripts that take --quick
METHOD = """\
- Every table compares variants measured in the same run, alternating or one right
  after the other on the same baked atom, so the ratios hold on other machines even
  where the absolute numbers do not.
- HTTP load comes from `wrk` on the same machine (one thread), against servers started
  by the scripts on 127.0.0.1 and stopped by pid. The atom runs with its defaults: log
  file and console at INFO, request ids, error envelope, metrics on.
- "bare FastAPI" is `benchmarks/stack_servers.py bare`: the same routes in a FastAPI app
  with nothing else, run by uvicorn with the atom's `server.py` settings;
  `stack_servers.py bare-logged` runs it with uvicorn's default logging instead, its
  access log writing one line per call.
- Machines shared with other work (this one is a 2-core VM) vary by tens of percent
  from one second to the next: the scripts alternate variants over several rounds and
  report medians. Even so, a ratio here can move by about 0.1 from one run to the next.
- The peers (`bench_peer.py`) run pinned: every server on the same CPUs (`taskset`; all
  but the first by default), wrk on the others, each framework in its own virtual
  environment under `build/` with every package pinned (`benchmarks/peers/`), the same
  model code and request bodies, one worker per CPU. The model alone, measured
  in-process on the servers' CPUs in the same run (`model_limit.py`), is the limit every
  server's requests/s is held to. The MLP stands for a model on an accelerator: its runs
  have the servers' CPUs to themselves (`MLP_CPUS`, set in the model code shared by all
  servers) and the MLP servers' own work runs beside wrk. The section says how each
  framework was configured.
"""


def machine() -> list[str]:
    """Lines describing the machine and the software."""
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.1f} GiB of memory"
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return [
        f"- CPU: {cpu}, {os.cpu_count()} cores{memory}",
        f"- System: {platform.system()} {platform.release()} ({platform.machine()})",
        f"- Python {platform.python_version()} ({sys.executable})",
        f"- Packages: {', '.join(versions)}",
        f"- wrk: {_wrk_version()}",
    ]


def _wrk_version() -> str:
    try:
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def run(script: str, extra: list[str]) -> tuple[int, str, float]:
    """Run one benchmark script; return (status, its output, seconds)."""
    started = time.perf_counter()
    timeout = TIMEOUTS.get(script, TIMEOUT)
    try:
        done = subprocess.run(
            [sys.executable, str(HERE / script), *extra],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        status, out = done.returncode, done.stdout
        if status != 0:
            out += "\n" + "\n".join(done.stderr.splitlines()[-30:])
    except subprocess.TimeoutExpired:
        status, out = 1, f"timed out after {timeout} s"
    return status, out.strip(), time.perf_counter() - started


def now() -> str:
    """The time of day in UTC, as the page gives it."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def split_sections(page: str) -> tuple[list[str], dict[str, list[str]]]:
    """A page's lines before its first "## " heading, and its sections by heading."""
    head: list[str] = []
    sections: dict[str, list[str]] = {}
    current = head
    for line in page.splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        current.append(line)
    return head, sections


HEAD = [
    "# Benchmarks",
    "",
    "Written by `make bench` (`benchmarks/run_all.py`); each section says when its script",
    "ran (`benchmarks/run_all.py --only NAME` runs one again and replaces its section).",
    "Run it again to measure your own machine; every number below comes from this machine.",
    "",
]


def page(head: list[str], sections: dict[str, list[str]]) -> str:
    """The whole page: head, machine, method, then the sections in BENCHMARKS' order."""
    lines = [
        *head,
        "## Machine",
        "",
        *machine(),
        "",
        "## Method",
        "",
        METHOD,
    ]
    for _, _, title in BENCHMARKS:
        if title in sections:
            lines += sections[title]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    """Run the benchmarks and write the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", help="comma-separated names: " + ",".join(b[0] for b in BENCHMARKS)
    )
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--quick", action="store_true", help="short runs where a script has them")
    args = parser.parse_args()
    chosen = set(args.only.split(",")) if args.only else {b[0] for b in BENCHMARKS}
    unknown = chosen - {b[0] for b in BENCHMARKS}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    head, sections = HEAD, {}
    if args.only and args.output.exists():
        head, sections = split_sections(args.output.read_text())
    failed = []
    for name, script, title in BENCHMARKS:
        if name not in chosen:
            continue
        print(f"bench: {script} ...", flush=True)
        started = now()
        extra = ["--quick"] if args.quick and script in QUICK else []
        command = " ".join([Path(sys.executable).name, f"benchmarks/{script}", *extra])
        status, out, seconds = run(script, extra)
        print(out, flush=True)
        if status != 0:
            failed.append(script)
        sections[title] = [
            f"## {title}",
            "",
            f"`{command}`, started {started}, took {seconds:.0f} s"
            + ("" if status == 0 else f" and **failed** (status {status})")
            + ".",
            "",
            out,
            "",
        ]
    args.output.write_text(page(head, sections))
    print(f"bench: wrote {args.output}", flush=True)
    if failed:
        print(f"bench: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
