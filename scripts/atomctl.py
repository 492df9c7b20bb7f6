"""Bake atoms and run them as real processes: shared by the demo, the tests and the benchmarks."""

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def hook_scripts_contained() -> Iterator[None]:
    """Keep the scripts cookiecutter writes for its hooks out of /tmp.

    cookiecutter writes each hook it runs to a new temporary ``.py`` file and never
    deletes it (two per bake). Inside this block they go to a folder that is removed
    at the end.
    """
    previous = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="atom-hooks-") as folder:
        tempfile.tempdir = folder
        try:
            yield
        finally:
            tempfile.tempdir = previous


def bake(output_dir: Path, **context: Any) -> Path:
    """Render the template into ``output_dir`` (replacing an older bake); return the project."""
    extra = {key: str(value) for key, value in context.items()}
    with hook_scripts_contained():
        project = cookiecutter(
            str(TEMPLATE),
            no_input=True,
            extra_context=extra,
            output_dir=str(output_dir),
            overwrite_if_exists=True,
        )
    return Path(project)


def render(output_dir: Path, **context: Any) -> Path:
    """Render the template's files into ``output_dir`` without running its hooks (no answer
    checked, nothing compiled, the files of every CI choice kept); return the project."""
    extra = {key: str(value) for key, value in context.items()}
    project = cookiecutter(
        str(TEMPLATE),
        no_input=True,
        extra_context=extra,
        output_dir=str(output_dir),
        accept_hooks=False,
    )
    return Path(project)


# Bakes made once and copied: build/bakes/<key>/, the key a hash of everything a bake
# depends on (bake_key). Raise CACHE_FORMAT when what a cached entry holds changes.
BAKES = TEMPLATE / "build" / "bakes"
CACHE_FORMAT = "1"
CACHE_ENTRIES = 16  # entries kept; the least recently used beyond them are removed
# What a bake reads from the template: cookiecutter renders these, its hooks run from them.
BAKE_SOURCES = ("cookiecutter.json", "hooks", "{{cookiecutter.project_slug}}")
# The Python that runs the hooks compiles the protector with what this file installs.
BAKE_TOOLS = ("requirements-dev.txt",)


def _git(*args: str) -> str:
    """git's output in the template checkout ('' when git fails)."""
    result = subprocess.run(
        ["git", *args], cwd=TEMPLATE, capture_output=True, text=True, timeout=30, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def bake_key(context: dict[str, Any]) -> str:
    """A hash of what a bake with ``context`` depends on: the answers; the contents of every
    file the template renders or runs (uncommitted ones included); the commit, tag and
    folder the post-gen hook records; the Python, its packages and compiler that build the
    protector."""
    digest = hashlib.sha256()

    def feed(*parts: object) -> None:
        for part in parts:
            data = part if isinstance(part, bytes) else str(part).encode()
            digest.update(len(data).to_bytes(8, "big") + data)

    answers = {key: str(value) for key, value in context.items()}
    feed(CACHE_FORMAT, json.dumps(answers, sort_keys=True, ensure_ascii=False), TEMPLATE)
    feed(sys.executable, sys.version, sys.prefix, os.environ.get("CC", ""))
    feed(_git("rev-parse", "--verify", "HEAD"), _git("describe", "--tags", "--exact-match"))
    for name in (*BAKE_SOURCES, *BAKE_TOOLS):
        root = TEMPLATE / name
        files = sorted(root.rglob("*")) if root.is_dir() else [root]
        for path in files:
            if path.is_file():
                feed(path.relative_to(TEMPLATE).as_posix(), path.stat().st_mode, path.read_bytes())
    return digest.hexdigest()[:24]


@contextlib.contextmanager
def _locked(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (made if missing) inside the block; yield whether
    it was taken (always, when ``blocking``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
        try:
            fcntl.flock(handle, flags)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _used(path: Path) -> float | None:
    """When a cached bake was last used; None once another process pruned it."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None


def _prune_bakes(keep: str) -> None:
    """Remove the cached bakes beyond CACHE_ENTRIES, least recently used first, skipping
    any that another process holds. A ``<key>.partial`` folder is a bake under way (its
    key's lock is held) and is never a cached entry; lanes prune at once, so an entry may
    vanish while this one looks."""
    found = [
        path
        for path in BAKES.iterdir()
        if path.is_dir() and path.name != keep and path.suffix != ".partial"
    ]
    used = [(at, path) for path in found if (at := _used(path)) is not None]
    for _, entry in sorted(used, reverse=True)[CACHE_ENTRIES - 1 :]:
        with _locked(BAKES / f"{entry.name}.lock", blocking=False) as taken:
            if taken:
                shutil.rmtree(entry, ignore_errors=True)
                (BAKES / f"{entry.name}.lock").unlink(missing_ok=True)


def cached_bake(output_dir: Path, **context: Any) -> Path:
    """A bake with ``context``, copied into ``output_dir``: the first call for a key bakes
    into build/bakes/<key>/ under a file lock (other processes wait for it), every call
    copies the entry, so no two users share a folder. Returns the copied project."""
    key = bake_key(context)
    entry = BAKES / key
    with _locked(BAKES / f"{key}.lock"):
        if not entry.is_dir():
            scratch = BAKES / f"{key}.partial"
            shutil.rmtree(scratch, ignore_errors=True)
            bake(scratch, **context)
            scratch.rename(entry)
            _prune_bakes(keep=key)
        os.utime(entry)  # recently used
        (project,) = [path for path in entry.iterdir() if path.is_dir()]
        target = output_dir / project.name
        shutil.copytree(project, target, symlinks=True)
    return target


def pinned(command: list[str], cpus: str | None) -> list[str]:
    """``command`` held to ``cpus`` (taskset's list, "0" or "1,2"); as it is for None."""
    if cpus is None:
        return command
    taskset = shutil.which("taskset")
    assert taskset, "taskset is missing (Debian: util-linux)"
    return [taskset, "-c", cpus, *command]


PORTS_FROM = 20000  # free ports are picked between this and the kernel's ephemeral range


def ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (Linux: 32768 by default)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32768


def free_port(count: int = 1) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the first of ``count``
    consecutive ones), below the ephemeral range: a port from that range, once released,
    can become the source port of any outgoing connection before the server binds it (a
    lane's nginx once failed so, "Address already in use", while wrk ran beside it)."""
    high = max(PORTS_FROM + count + 1, ephemeral_low()) - count
    for _ in range(200):
        first = random.randrange(PORTS_FROM, high)
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports from {PORTS_FROM} to {high}")


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], Any]:
    """One HTTP call; return status, headers (lower-case) and the JSON body (or text)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, reply_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as error:
        status, raw, reply_headers = error.code, error.read(), error.headers
    lowered = {key.lower(): value for key, value in reply_headers.items()}
    try:
        return status, lowered, json.loads(raw)
    except ValueError:
        return status, lowered, raw.decode(errors="replace")


def log_lines(path: Path, needles: set[str], timeout: float = 5) -> list[str]:
    """The lines of a log file that contain one of ``needles``, once each needle is there.

    The atom writes lines below WARNING in batches (within 0.05 s), so a test that has
    just made a request waits for its lines; after ``timeout`` s it gets what is there.
    """
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        lines = [line for line in text.splitlines() if any(n in line for n in needles)]
        if all(n in text for n in needles) or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


# The face of the sample photograph (tests/data/astronaut.jpg of a baked atom), cut out
# and scaled down: one face, found in about 8 ms of CPU, so load runs measure the stack
# rather than the model.
FACE_BOX = (130, 20, 320, 210)  # x0, y0, x1, y1 in the 512x512 photograph
FACE_SIZE = 64


def small_face(project: Path) -> str:
    """A 64x64 JPEG holding one face, base64-encoded."""
    import cv2  # only load runs need OpenCV: imported here, not by every test

    photo = cv2.imread(str(project / "tests" / "data" / "astronaut.jpg"))
    x0, y0, x1, y1 = FACE_BOX
    face = cv2.resize(photo[y0:y1, x0:x1], (FACE_SIZE, FACE_SIZE), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", face)
    assert ok
    return base64.b64encode(jpeg.tobytes()).decode()


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


class AtomServer:
    """``python server.py --port P`` in a baked project, bounded in time, stopped by pid."""

    def __init__(
        self,
        project: Path,
        *,
        env: dict[str, str] | None = None,
        python: str = sys.executable,
        prefix: str = "/d2atom",
        script: str = "server.py",
    ) -> None:
        self.project = project
        self.script = script
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.prefix = prefix
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})}
        self.python = python
        self.process: subprocess.Popen[bytes] | None = None
        self.seconds_to_ready: float | None = None
        self.output = project / f"{type(self).__name__}-{self.port}.log"

    def command(self) -> list[str]:
        """What to run in the project directory."""
        return [self.python, self.script, "--port", str(self.port), "--host", "127.0.0.1"]

    def start(self, ready_timeout: float = 60) -> "AtomServer":
        """Start the process and wait until its ready route answers 200."""
        started = time.perf_counter()
        with self.output.open("wb") as output:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.project,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = started + ready_timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command()} exited early:\n{self.output.read_text()}")
            try:
                if http("GET", self.url("/v1/health/ready"), timeout=2)[0] == 200:
                    self.seconds_to_ready = time.perf_counter() - started
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"not ready in {ready_timeout} s:\n{self.output.read_text()}")

    def url(self, path: str) -> str:
        """Absolute URL of a route under the prefix."""
        return f"{self.base}{self.prefix}{path}"

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM, wait up to ``timeout`` s (then SIGKILL); return the exit status."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the process if it still runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> "AtomServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class AtomLauncher(AtomServer):
    """``python nginx_run.py`` with ATOM_WORKERS workers on free ports; ready through nginx."""

    def __init__(
        self, project: Path, *, workers: int = 2, server: str = "server.py", **kwargs: Any
    ) -> None:
        super().__init__(project, **kwargs)
        self.inner_start = free_port(workers)
        self.workers = workers
        self.server = server
        self.env.update(
            ATOM_PORT=str(self.port),
            ATOM_INNER_START_PORT=str(self.inner_start),
            ATOM_WORKERS=str(workers),
        )
        if os.geteuid() == 0 and self.python == sys.executable:
            # This venv's Python is under /root, out of an unprivileged user's reach: the
            # workers stay root unless the caller names a user (the hostile-input lane does).
            self.env.setdefault("ATOM_WORKER_USER", "root")

    def command(self) -> list[str]:
        return [self.python, "nginx_run.py", "--server", self.server]

    def start(self, ready_timeout: float = 60) -> "AtomLauncher":
        """Start it and wait until every worker is ready, not only the one nginx asked
        (the other may still be loading its model: its detect answers 503)."""
        started = time.perf_counter()
        super().start(ready_timeout)
        assert self.process is not None
        deadline = started + ready_timeout
        waiting = list(range(self.inner_start, self.inner_start + self.workers))
        while waiting and time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.command()} exited early:\n{self.output.read_text()}")
            inner = f"http://127.0.0.1:{waiting[0]}{self.prefix}/v1/health/ready"
            try:
                if http("GET", inner, timeout=2)[0] == 200:
                    waiting.pop(0)
                    continue
            except OSError:
                pass
            time.sleep(0.05)
        if waiting:
            self.kill()
            raise RuntimeError(f"workers {waiting} not ready in {ready_timeout} s")
        self.seconds_to_ready = time.perf_counter() - started
        return self

    def worker_pids(self) -> dict[int, int]:
        """The latest pid started on each inner port, read from the launcher's output."""
        pids = {}
        for line in self.output.read_text().splitlines():
            if " started (pid " in line and "deploy.launcher: worker :" in line:
                port = int(line.split("worker :", 1)[1].split(" ", 1)[0])
                pids[port] = int(line.rsplit("(pid ", 1)[1].rstrip(")"))
        return pids


def wrk(
    url: str,
    seconds: int,
    connections: int,
    script: Path | None = None,
    threads: int = 2,
    timeout: int | None = None,
    cpus: str | None = None,
) -> dict[str, float]:
    """Load ``url`` with wrk; return requests/s, p50 and p99 latency (ms), non-2xx count.

    ``timeout`` (seconds) replaces wrk's own 2 s, past which a reply counts as a socket
    error and not in the latencies. ``cpus`` (taskset's list, "0") holds wrk to those CPUs.
    """
    binary = shutil.which("wrk")
    assert binary, "wrk is missing: run scripts/setup.sh (apt-get install wrk)"
    command = [binary, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command = pinned(command, cpus)
    if timeout is not None:
        command.append(f"--timeout={timeout}s")
    if script is not None:
        command += ["-s", str(script)]
    result = subprocess.run(
        [*command, url], capture_output=True, text=True, timeout=seconds + 60, check=True
    )
    out = result.stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]),
        "p50": _to_ms(re.search(r"50%\s+([\d.]+\w+)", out)[1]),
        "p99": _to_ms(re.search(r"99%\s+([\d.]+\w+)", out)[1]),
        "errors": float(errors[1]) if errors else 0.0,
        "socket_errors": float(sum(map(int, socket_errors.groups()))) if socket_errors else 0.0,
    }


def _to_ms(text: str) -> float:
    """wrk's '12.3ms' / '1.2s' / '900us' in milliseconds."""
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]
