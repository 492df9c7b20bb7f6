"""make test: every lane of tests/ in a pytest process of its own, several lanes at once.

The lanes are the markers of tests/conftest.py's LANES (a test without one is in the
"template" lane). The longest lanes start first (LANES' estimates); ``--jobs`` lanes run at
a time. Each lane writes build/gate/<lane>.log and gets its own temporary folder, so no two
lanes share a folder; ports are picked free by each test. At the end: the time of each
lane, the slowest tests, the failures, and one closing line `gate: N passed, N failed`.

    scripts/gate.py                 every lane
    scripts/gate.py nginx soak      those lanes only
    scripts/gate.py --jobs 2 -- -x  two at a time; -x passed on to each pytest
    scripts/gate.py -m "not slow"   the tests make check runs, its lanes side by side
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import LANES, LaneTime, lane_times  # noqa: E402 - after the path is set

OUT = ROOT / "build" / "gate"
SLOWEST = 25  # test phases listed at the end
FAILURE_LINES = 150  # lines of a failing lane's log shown at the end
# Two cores: a third lane fills the time the others spend waiting (on servers, downloads,
# sleeps); more would only slow the timing-sensitive lanes down.
JOBS = int(os.environ.get("ATOM_GATE_JOBS", "3"))


@dataclass
class Run:
    """One lane's pytest process."""

    lane: str
    files: list[str]
    log: Path
    record: Path
    basetemp: Path
    marks: str = ""  # a marker expression the lane's tests must also match
    process: subprocess.Popen | None = None
    started: float = 0.0
    ended: float = 0.0
    cpu: float = 0.0
    phases: list[dict] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """The process exited with a failure."""
        return self.process is not None and self.process.returncode != 0


def collect(pytest_args: list[str]) -> dict[str, list[str]]:
    """The test files of each lane (pytest --collect-only, through the conftest's record)."""
    listing = OUT / "collected.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            *pytest_args,
        ],
        cwd=ROOT,
        env={**os.environ, "ATOM_GATE_COLLECT": str(listing)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        sys.stdout.write(result.stdout[-5000:] + result.stderr[-5000:])
        raise SystemExit("gate: the tests could not be collected")
    files: dict[str, list[str]] = {}
    for nodeid, lane in json.loads(listing.read_text()).items():
        path = nodeid.split("::", 1)[0]
        if path not in files.setdefault(lane, []):
            files[lane].append(path)
    return files


def start(run: Run, pytest_args: list[str]) -> None:
    """Start the lane's pytest in its own process group."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-m",
        f"{run.lane} and ({run.marks})" if run.marks else run.lane,
        "-p",
        "no:cacheprovider",
        f"--basetemp={run.basetemp}",
        "--durations=15",
        *pytest_args,
        *run.files,
    ]
    env = {**os.environ, "ATOM_GATE_RECORD": str(run.record)}
    with run.log.open("wb") as log:
        run.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    run.started = time.monotonic()


def stop_all(runs: list[Run]) -> None:
    """SIGTERM the process group of every lane still running, then SIGKILL."""
    for run in runs:
        if run.process is not None and run.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.process.pid, signal.SIGTERM)
    for run in runs:
        if run.process is not None:
            try:
                run.process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.process.pid, signal.SIGKILL)


def schedule(runs: list[Run], jobs: int, pytest_args: list[str], began: float) -> None:
    """Run the lanes in order, ``jobs`` at a time; report each one as it ends."""
    waiting, running = list(runs), []
    while waiting or running:
        while waiting and len(running) < jobs:
            run = waiting.pop(0)
            start(run, pytest_args)
            running.append(run)
            print(f"[{run.started - began:6.1f} s] {run.lane}: started", flush=True)
        time.sleep(0.2)
        for run in [run for run in running if reaped(run)]:
            running.remove(run)
            state = "FAILED" if run.failed else "passed"
            print(
                f"[{run.ended - began:6.1f} s] {run.lane}: {state} in "
                f"{run.ended - run.started:.1f} s ({run.cpu:.0f} s of CPU)",
                flush=True,
            )


def reaped(run: Run) -> bool:
    """Whether the lane's process has ended; if so, note its status, end and CPU time (its
    own and that of the processes it waited for)."""
    pid, status, usage = os.wait4(run.process.pid, os.WNOHANG)
    if pid == 0:
        return False
    run.process.returncode = os.waitstatus_to_exitcode(status)
    run.ended = time.monotonic()
    run.cpu = usage.ru_utime + usage.ru_stime
    return True


def outcomes(runs: list[Run]) -> dict[str, str]:
    """Each test's outcome as pytest counts it: failed if its call failed, error if its
    setup or teardown did, else skipped or passed."""
    tests: dict[str, str] = {}
    for run in runs:
        for phase in run.phases:
            nodeid, outcome, when = phase["nodeid"], phase["outcome"], phase["when"]
            if outcome == "failed" and tests.get(nodeid) != "failed":
                tests[nodeid] = "failed" if when == "call" else "error"
            elif outcome == "skipped" and tests.get(nodeid) != "failed":
                tests[nodeid] = "skipped"
            else:
                tests.setdefault(nodeid, "passed")
    return tests


def report(runs: list[Run], began: float) -> int:
    """Print the lane table, the slowest phases, the failures and the closing line."""
    for run in runs:
        if run.record.exists():
            run.phases = [json.loads(line) for line in run.record.read_text().splitlines()]
    print("\n=== time per lane (process: the lane's pytest; cpu: it and what it waited for;")
    print("    wall: first test start to last test end; sum: its tests' phases) ===")
    print(f"{'lane':<16} {'start s':>7} {'process s':>9} {'cpu s':>6} {LaneTime.HEADER}")
    times = lane_times([phase for run in runs for phase in run.phases])
    for run in sorted(runs, key=lambda run: run.started - run.ended):
        row = times.get(run.lane, "(no test ran)")
        took = run.ended - run.started
        print(f"{run.lane:<16} {run.started - began:>7.1f} {took:>9.1f} {run.cpu:>6.0f} {row}")
    cpu = sum(run.cpu for run in runs)
    print(f"{'all':<16} {'':>7} {time.monotonic() - began:>9.1f} {cpu:>6.0f}")
    phases = sorted((p for r in runs for p in r.phases), key=lambda p: -p["duration"])
    print(f"\n=== slowest {SLOWEST} test phases ===")
    for phase in phases[:SLOWEST]:
        print(f"{phase['duration']:8.2f}s {phase['when']:<8} {phase['nodeid']}")
    for run in runs:
        if run.failed:
            lines = run.log.read_text(errors="replace").splitlines()
            print(f"\n=== {run.lane} FAILED (exit {run.process.returncode}): {run.log} ===")
            print("\n".join(lines[-FAILURE_LINES:]))
            print(f"(temporary files kept in {run.basetemp})")
        else:
            shutil.rmtree(run.basetemp, ignore_errors=True)
    tests = outcomes(runs)
    counts = {name: list(tests.values()).count(name) for name in ("passed", "failed", "error")}
    failed = counts["failed"] + counts["error"] + sum(run.failed and not run.phases for run in runs)
    load = " ".join(f"{n:.2f}" for n in os.getloadavg())
    print(f"\nwall time {time.monotonic() - began:.1f} s, {len(runs)} lanes; logs in {OUT}")
    print(f"load average at the end (1, 5, 15 min): {load}")
    print(f"gate: {counts['passed']} passed, {failed} failed")
    return 1 if failed or any(run.failed for run in runs) else 0


def main() -> int:
    """Collect, run the lanes, report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lanes", nargs="*", help="lanes to run (default: all)")
    parser.add_argument("--jobs", type=int, default=JOBS, help=f"lanes at once ({JOBS})")
    parser.add_argument("-m", dest="marks", default="", help="only tests matching this too")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: for pytest")
    args = parser.parse_args()
    pytest_args = [arg for arg in args.pytest_args if arg != "--"]
    unknown = set(args.lanes) - set(LANES)
    if unknown:
        parser.error(f"unknown lanes {sorted(unknown)}; the lanes are {sorted(LANES)}")
    began = time.monotonic()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    files = collect(["-m", args.marks, *pytest_args] if args.marks else pytest_args)
    temporary = Path(tempfile.mkdtemp(prefix="atom-gate-"))
    order = sorted(files, key=lambda lane: -LANES[lane].estimate)
    runs = [
        Run(
            lane,
            files[lane],
            OUT / f"{lane}.log",
            OUT / f"{lane}.jsonl",
            temporary / lane,
            args.marks,
        )
        for lane in order
        if not args.lanes or lane in args.lanes
    ]
    print(f"gate: {len(runs)} lanes, {args.jobs} at a time: {' '.join(r.lane for r in runs)}")
    print(f"load average at the start: {' '.join(f'{n:.2f}' for n in os.getloadavg())}")
    try:
        schedule(runs, args.jobs, pytest_args, began)
    finally:
        stop_all(runs)
    status = report(runs, began)
    with contextlib.suppress(OSError):
        temporary.rmdir()  # empty unless a lane failed
    return status


if __name__ == "__main__":
    raise SystemExit(main())
