"""``nginx_run()``: nginx in front of ATOM_WORKERS server processes, supervised.

The launcher is a supervisor in the shape of uvicorn's multiprocess manager: signals
are queued by their handlers and handled in one loop, which also pings the workers and
restarts the ones that died or stopped answering. It:

1. renders the nginx config into a runtime directory (ATOM_RUNTIME_DIR, or a new
   temporary one): pid file, temp paths and logs included, nothing under /etc; started
   as root, nginx's workers run as ``nobody``, who gets its temporary folders there;
2. starts ATOM_WORKERS servers (``python server.py --port P``, P from
   ATOM_INNER_START_PORT, and ATOM_HOST=127.0.0.1 in their environment: a ``server.py``
   written for ``linker_atom`` knows ``--port`` only) with the current interpreter, any
   count, each in its own session so a terminal's Ctrl-C reaches only the launcher; their
   output is prefixed with their port; started as root, they run as ATOM_WORKER_USER,
   checked first (``privileges.py``);
3. starts nginx on ATOM_PORT once the workers answer their health route;
4. registers the atom with Serving (META), once for the whole container, when the
   public ready route answers, and keeps the heartbeats going (``control/serving.py``);
5. restarts a crashed or hung worker with exponential backoff, loudly if it keeps
   crashing; exits non-zero if nginx dies;
6. on SIGTERM or SIGINT: unRegister, nginx stops accepting and finishes the requests in
   flight (within ATOM_GRACE_PERIOD), the workers stop, the runtime directory goes, exit 0.

Metrics: the workers and the launcher write to ``<runtime>/metrics``
(PROMETHEUS_MULTIPROC_DIR), so a scrape through nginx shows the whole atom.
"""

import contextlib
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import IO, Any, BinaryIO

from ..config import Settings, SettingsError, get_settings
from ..config.logger import configure_logging
from ..control.backoff import delay
from ..control.health import METRICS_PATH, PING_PATH, answers_ok
from ..control.log_safety import redact_url_secrets
from ..control.runtime_dir import METRICS_DIR_ENV, RUNTIME_DIR_ENV, RuntimeDir
from ..control.threads import library_env
from . import privileges
from .nginx import (
    V2_ROOT,
    BodyDiskError,
    RuntimeDirError,
    WorkerUser,
    body_limits,
    disk_room_warning,
    nginx_config,
    worker_user,
    write_config,
)

logger = logging.getLogger(__name__)

TICK = 0.5  # seconds between two supervision rounds
PING_EVERY = 5.0  # seconds between two health pings of a worker
PING_TIMEOUT = 2.0
HUNG_AFTER = 3  # failed pings in a row before a worker is restarted
RESTART_BASE, BACKOFF_MAX = 0.5, 30.0  # seconds before a restart: 0.5, 1, 2... up to 30
STABLE_AFTER = 60.0  # a worker that ran this long starts its backoff again from zero
CRASH_WINDOW, CRASH_ALARM = 300.0, 5  # this many crashes in the window: log an error
WORKER_STOP_TIMEOUT = 15.0
EXIT_NGINX_DIED, EXIT_NO_NGINX, EXIT_BAD_SETTINGS = 1, 2, 2


def find_nginx(configured: str, fallback: str = "/usr/sbin/nginx") -> str:
    """The nginx binary: NGINX_BIN if set, else nginx on PATH, else ``fallback``.

    Raises FileNotFoundError with a message saying what to do.
    """
    if configured:
        if os.access(configured, os.X_OK):
            return configured
        raise FileNotFoundError(f"NGINX_BIN={configured} is not an executable file")
    for candidate in (shutil.which("nginx"), fallback):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        f"nginx not found on PATH nor at {fallback}; install it "
        "(Debian: apt-get install nginx) or set NGINX_BIN"
    )


class PrefixedOutput:
    """Copies a child's output line by line to ours, each line prefixed (one thread per child);
    with ``redact``, URL credentials hidden (nginx's lines quote the request line)."""

    _lock = threading.Lock()

    def __init__(self, prefix: str, target: BinaryIO, *, redact: bool = False) -> None:
        self.prefix = prefix.encode()
        self.target = target
        self.redact = redact

    def follow(self, stream: IO[bytes]) -> threading.Thread:
        """Start copying ``stream`` until it closes."""
        thread = threading.Thread(target=self._copy, args=(stream,), daemon=True)
        thread.start()
        return thread

    def _copy(self, stream: IO[bytes]) -> None:
        for line in iter(stream.readline, b""):
            shown = self._redacted(line) if self.redact else line
            with self._lock:
                self.target.write(self.prefix + shown)
                self.target.flush()
        stream.close()

    @staticmethod
    def _redacted(line: bytes) -> bytes:
        text = redact_url_secrets(line.decode("utf-8", "backslashreplace"))
        return text.encode("utf-8", "backslashreplace")


class Worker:
    """One ``server.py`` process on one inner port, and its restart history."""

    def __init__(
        self,
        port: int,
        command: list[str],
        env: dict[str, str],
        health_url: str,
        user: WorkerUser | None = None,
    ) -> None:
        self.port = port
        self.command = command
        self.env = env
        self.health_url = health_url
        self.user = user  # the process's user when the launcher is root
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.failures = 0  # consecutive crashes, for the backoff
        self.crashes: deque[float] = deque()
        self.restart_at: float | None = None
        self.failed_pings = 0
        self.last_ping = 0.0

    def start(self, output: BinaryIO) -> None:
        """Start the server process."""
        user = self.user
        self.process = subprocess.Popen(
            [*self.command, "--port", str(self.port)],
            env={**self.env, "ATOM_HOST": "127.0.0.1"},  # linker_atom's server.py: --port only
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user.uid if user else None,
            group=user.gid if user else None,
            extra_groups=[] if user else None,  # none of root's groups
        )
        assert self.process.stdout is not None
        PrefixedOutput(f"[{self.port}] ", output).follow(self.process.stdout)
        self.started_at = self.last_ping = time.monotonic()
        self.restart_at = None
        self.failed_pings = 0
        logger.info("worker :%d started (pid %d)", self.port, self.process.pid)

    @property
    def running(self) -> bool:
        """True while the process exists."""
        return self.process is not None and self.process.poll() is None

    def schedule_restart(self, now: float, reason: str) -> None:
        """Note a crash and pick when to start again (exponential backoff)."""
        if now - self.started_at >= STABLE_AFTER:
            self.failures = 0
        self.failures += 1
        self.crashes.append(now)
        while self.crashes and now - self.crashes[0] > CRASH_WINDOW:
            self.crashes.popleft()
        wait = delay(self.failures - 1, RESTART_BASE, BACKOFF_MAX, jitter=False)
        self.restart_at = now + wait
        log = logger.error if len(self.crashes) >= CRASH_ALARM else logger.warning
        log(
            "worker :%d %s; restart in %.1f s (%d crash(es) in the last %d s)",
            self.port,
            reason,
            wait,
            len(self.crashes),
            CRASH_WINDOW,
        )

    def signal(self, signum: int) -> None:
        """Send a signal if the process runs."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signum)


class Launcher:
    """nginx plus the workers, supervised until a stop signal (see the module docstring)."""

    def __init__(
        self, settings: Settings, server_script: Path, output: BinaryIO | None = None
    ) -> None:
        self.settings = settings
        self.server_script = server_script
        # The servers' user (ATOM_WORKER_USER) when the launcher is root, else None.
        self.user = user = privileges.resolve(settings.atom_worker_user)
        self.output = output or sys.stdout.buffer
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.owns_runtime = not settings.atom_runtime_dir
        self.runtime = Path(settings.atom_runtime_dir or tempfile.mkdtemp(prefix="atom-run-"))
        self.layout = RuntimeDir(self.runtime)
        self.nginx: subprocess.Popen[bytes] | None = None
        self.serving: Any = None  # control.serving.ServingAgent, once nginx runs
        env = {**os.environ, RUNTIME_DIR_ENV: str(self.runtime), "ATOM_SUPERVISED": "1"}
        # Each worker's share of the cores for OpenMP/BLAS (read when they load; variables
        # already set are kept) and, through ATOM_THREADS, for OpenCV and ONNX Runtime.
        env.update(library_env(settings.thread_budget), ATOM_THREADS=str(settings.thread_budget))
        if settings.metrics_switch:
            env[METRICS_DIR_ENV] = str(self.layout.metrics)
        home = privileges.home_of(user) if user else None
        if home:
            env["HOME"] = home
        command = [sys.executable, str(server_script)]
        ping_path = settings.atom_api_prefix + PING_PATH
        self.workers = [
            Worker(port, command, env, f"http://127.0.0.1:{port}{ping_path}", user)
            for port in range(
                settings.atom_inner_start_port,
                settings.atom_inner_start_port + settings.atom_workers,
            )
        ]
        self._pool = ThreadPoolExecutor(max_workers=min(8, len(self.workers)))

    # Signals ------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """Queue SIGTERM and SIGINT for the main loop."""

        def queue_signal(signum: int, frame: FrameType | None) -> None:
            self.signals.put(signum)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, queue_signal)

    def stop_requested(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a queued stop signal."""
        try:
            signum = self.signals.get(timeout=timeout)
        except queue.Empty:
            return False
        logger.info("%s received: stopping", signal.Signals(signum).name)
        return True

    # Start --------------------------------------------------------------------

    def run(self, nginx_bin: str) -> int:
        """Start everything, supervise until a stop signal, stop everything; the exit status."""
        self.install_signal_handlers()
        user = worker_user()
        try:
            config = write_config(self.layout, self._config(user), user)
            self._prepare_metrics()
            if self.user is not None:
                privileges.prepare(self.layout, self.settings, self.server_script, self.user)
                logger.info("the workers run as %s (ATOM_WORKER_USER)", self.user.name)
            elif os.geteuid() == 0:
                logger.warning("the workers run as root (ATOM_WORKER_USER=root)")
        except (RuntimeDirError, BodyDiskError, privileges.WorkerUserError):
            if self.owns_runtime:
                shutil.rmtree(self.runtime, ignore_errors=True)
            raise
        try:
            for worker in self.workers:
                worker.start(self.output)
            if not self._wait_workers_healthy():
                return self.shutdown(0)
            self._start_nginx(nginx_bin, config)
            self._start_serving()
            return self.supervise()
        except BaseException:
            self.shutdown(1)
            raise

    def _config(self, user: WorkerUser | None) -> str:
        settings = self.settings
        metrics = settings.atom_api_prefix + METRICS_PATH if settings.metrics_switch else None
        bodies = body_limits(
            settings.atom_max_body_bytes,
            settings.atom_body_disk_bytes,
            settings.atom_body_disk_client_bytes,
        )
        room = disk_room_warning(self.runtime, bodies.worst_bytes(settings.atom_max_body_bytes))
        if room:
            logger.warning("%s", room)
        logger.info(
            "request bodies on disk: at most %d above 1 MB and %d below at once (%d and %d "
            "per client address), %d bytes in all (ATOM_BODY_DISK_BYTES)",
            bodies.large,
            bodies.small,
            bodies.large_per_client,
            bodies.small_per_client,
            bodies.worst_bytes(settings.atom_max_body_bytes),
        )
        return nginx_config(
            runtime=self.layout,
            listen_port=settings.atom_port,
            worker_ports=[worker.port for worker in self.workers],
            max_body_bytes=settings.atom_max_body_bytes,
            read_timeout=settings.atom_proxy_read_timeout,
            client_timeout=settings.atom_client_timeout,
            header_timeout=settings.atom_header_timeout,
            connections_per_client=settings.atom_connections_per_client,
            metrics_path=metrics,
            metrics_port=settings.atom_metrics_port,
            user=user,
            bodies=bodies,
            v2_root=settings.atom_api_prefix + V2_ROOT if settings.v2_switch else "",
        )

    def _prepare_metrics(self) -> None:
        """An empty multiprocess metrics directory, shared with the workers."""
        if not self.settings.metrics_switch:
            return
        directory = self.layout.metrics
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        os.environ[METRICS_DIR_ENV] = str(directory)  # before this process creates its metrics

    def _start_serving(self) -> None:
        """Register with Serving for the whole atom (when META names a Serving host)."""
        from ..config.serving import serving_agent  # noqa: PLC0415
        from ..control.metrics import ServingMetrics  # noqa: PLC0415 - after METRICS_DIR_ENV

        metrics = ServingMetrics() if self.settings.metrics_switch else None
        on_event = metrics.on_serving_event if metrics is not None else None
        self.serving = serving_agent(self.settings, on_event)
        if self.serving is not None:
            self.serving.start()

    def _wait_workers_healthy(self) -> bool:
        """Wait for every worker's health route (False if asked to stop meanwhile)."""
        deadline = time.monotonic() + self.settings.atom_worker_start_timeout
        pending = list(self.workers)
        while pending:
            pending = [w for w, ok in zip(pending, self._ping_all(pending), strict=True) if not ok]
            if not pending:
                return True
            if time.monotonic() > deadline:
                logger.error(
                    "workers %s did not answer in %.0f s; starting nginx anyway",
                    ", ".join(f":{w.port}" for w in pending),
                    self.settings.atom_worker_start_timeout,
                )
                return True
            if self.stop_requested(TICK):
                return False
            self._restart_dead(time.monotonic())
        return True

    def _start_nginx(self, nginx_bin: str, config: Path) -> None:
        """Start nginx in the foreground of its own session, its output prefixed."""
        self.nginx = subprocess.Popen(
            [nginx_bin, "-e", "stderr", "-p", str(self.runtime), "-c", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert self.nginx.stdout is not None
        PrefixedOutput("[nginx] ", self.output, redact=True).follow(self.nginx.stdout)
        logger.info(
            "nginx (pid %d) on port %d in front of %d worker(s); runtime %s",
            self.nginx.pid,
            self.settings.atom_port,
            len(self.workers),
            self.runtime,
        )

    # Supervision --------------------------------------------------------------

    def supervise(self) -> int:
        """The main loop: stop signals, nginx's health, the workers' health."""
        while not self.stop_requested(TICK):
            if self.nginx is not None and self.nginx.poll() is not None:
                logger.error("nginx exited with status %s: stopping", self.nginx.returncode)
                return self.shutdown(EXIT_NGINX_DIED)
            now = time.monotonic()
            self._restart_dead(now)
            self._ping_due(now)
        return self.shutdown(0)

    def _restart_dead(self, now: float) -> None:
        """Note workers that exited; start the ones whose backoff has passed."""
        for worker in self.workers:
            if worker.process is not None and not worker.running and worker.restart_at is None:
                worker.schedule_restart(now, f"exited with status {worker.process.returncode}")
                self._forget_metrics_of(worker.process.pid)
            if worker.restart_at is not None and now >= worker.restart_at:
                worker.start(self.output)

    def _ping_due(self, now: float) -> None:
        """Ping the running workers that are due; restart one that stopped answering."""
        due = [w for w in self.workers if w.running and now - w.last_ping >= PING_EVERY]
        for worker, ok in zip(due, self._ping_all(due), strict=True):
            worker.last_ping = now
            worker.failed_pings = 0 if ok else worker.failed_pings + 1
            if worker.failed_pings >= HUNG_AFTER:
                logger.error("worker :%d does not answer its health route: killing it", worker.port)
                worker.signal(signal.SIGKILL)

    def _forget_metrics_of(self, pid: int) -> None:
        """Drop a dead worker's live gauges (in flight, ready)."""
        if self.settings.metrics_switch:
            from ..control.metrics import mark_process_dead  # noqa: PLC0415 - see _start_serving

            mark_process_dead(pid)

    def _ping_all(self, workers: list[Worker]) -> list[bool]:
        return list(self._pool.map(lambda w: answers_ok(w.health_url, PING_TIMEOUT), workers))

    # Stop ---------------------------------------------------------------------

    def shutdown(self, status: int) -> int:
        """Unregister, drain nginx, stop the workers, remove the runtime directory."""
        self.layout.stopping.touch()  # no worker takes over the once-per-atom jobs
        if self.serving is not None:
            self.serving.stop(budget=2.0)
        self._stop_nginx()
        self._stop_workers()
        self._pool.shutdown(wait=False)
        if self.owns_runtime:
            shutil.rmtree(self.runtime, ignore_errors=True)
        logger.info("stopped")
        return status

    def _stop_nginx(self) -> None:
        """SIGQUIT: stop accepting and finish what is in flight; SIGTERM after the grace period.

        nginx runs in its own process group: whatever is left of it afterwards (workers
        orphaned by a master that died) is killed with the group.
        """
        if self.nginx is None:
            return
        if self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)
            try:
                self.nginx.wait(self.settings.atom_grace_period)
            except subprocess.TimeoutExpired:
                grace = self.settings.atom_grace_period
                logger.warning("requests still in flight after %.0f s: closing them", grace)
                self.nginx.terminate()
                _wait_or_kill(self.nginx, 5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.nginx.pid, signal.SIGKILL)

    def _stop_workers(self) -> None:
        """SIGTERM every worker, wait for them, SIGKILL the ones left."""
        for worker in self.workers:
            worker.restart_at = None
            worker.signal(signal.SIGTERM)
        deadline = time.monotonic() + WORKER_STOP_TIMEOUT
        for worker in self.workers:
            if worker.process is not None:
                _wait_or_kill(worker.process, max(0.1, deadline - time.monotonic()))


def _wait_or_kill(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for a process; SIGKILL it if it is still there after ``timeout`` s."""
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def nginx_run(
    server_script: str | os.PathLike[str] = "server.py",
    settings: Settings | None = None,
) -> int:
    """Run nginx and ATOM_WORKERS servers until SIGTERM/SIGINT; return the exit status.

    ``server_script`` is the script each worker runs with ``--port P`` (and ATOM_HOST set to
    127.0.0.1). ``nginx_run()`` without arguments is ``linker_atom``'s call.
    """
    try:
        settings = settings or get_settings()
    except SettingsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_SETTINGS
    try:
        user = privileges.resolve(settings.atom_worker_user)
        if user is not None and settings.log_file is not None:
            privileges.make_folders(settings.log_file.parent, user)
    except (privileges.WorkerUserError, OSError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_SETTINGS
    configure_logging(settings, (user.uid, user.gid) if user else None)
    try:
        nginx_bin = find_nginx(settings.nginx_bin)
    except FileNotFoundError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_NO_NGINX
    script = Path(server_script).resolve()
    if not script.is_file():
        sys.stderr.write(f"error: server script {script} not found\n")
        return EXIT_BAD_SETTINGS
    try:
        return Launcher(settings, script).run(nginx_bin)
    except (RuntimeDirError, BodyDiskError, privileges.WorkerUserError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_SETTINGS
