"""The background scheduler of a server process (APScheduler), and jobs run once per atom.

Jobs are listed in ``<package>/jobs.py``. A job with ``once_per_atom=True`` (the default)
runs in one process of the atom only: under ``nginx_run`` the workers elect a leader with
a lock file in the runtime directory, and when the leader dies another worker takes over
within a few seconds; a lone ``server.py`` is its own leader. ``once_per_atom=False``
runs the job in every worker. Jobs run in daemon threads: stopping the server never
waits for a job that is stuck.
"""

import concurrent.futures
import fcntl
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import BasePoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from .runtime_dir import RuntimeDir

logger = logging.getLogger(__name__)

ELECTION_EVERY = 5.0  # seconds between two attempts of a follower to become the leader


@dataclass(frozen=True)
class Job:
    """A function to run every ``seconds``/``minutes``/``hours``, or on a ``cron`` schedule."""

    func: Any
    seconds: float = 0
    minutes: float = 0
    hours: float = 0
    cron: dict[str, Any] = field(default_factory=dict)  # APScheduler cron: {"minute": "*/5"}
    once_per_atom: bool = True

    def trigger(self) -> tuple[str, dict[str, Any]]:
        """APScheduler's trigger name and arguments."""
        if self.cron:
            return "cron", dict(self.cron)
        return "interval", {"seconds": self.seconds, "minutes": self.minutes, "hours": self.hours}

    @property
    def name(self) -> str:
        return getattr(self.func, "__qualname__", repr(self.func))


class DaemonThreads(concurrent.futures.Executor):
    """A ``concurrent.futures`` executor that runs each call in a new daemon thread and
    never waits for one (``shutdown`` returns at once)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()

        def target() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the future's reader
                future.set_exception(exc)
            else:
                future.set_result(result)

        name = f"job-{getattr(args[0], 'id', 'call')}" if args else "job"
        threading.Thread(target=target, name=name, daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to wait for: a stuck job must not hold up the exit."""


class DaemonThreadExecutor(BasePoolExecutor):
    """APScheduler's pool executor over ``DaemonThreads``: each job in a new daemon thread,
    so a stuck job never holds up the exit."""

    def __init__(self) -> None:
        super().__init__(DaemonThreads())


class LeaderLock:
    """An exclusive lock on ``<runtime>/leader.lock``; the process holding it is the leader."""

    def __init__(self, runtime_dir: str) -> None:
        self.runtime = RuntimeDir(Path(runtime_dir)) if runtime_dir else None
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Become the leader if nobody is (always true without a runtime directory)."""
        if self._fd is not None:
            return True
        if self.runtime is None:
            self._fd = -1
            return True
        if self.runtime.stopping.exists():
            return False
        fd = os.open(self.runtime.leader_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        """Stop being the leader."""
        if self._fd is not None and self._fd >= 0:
            os.close(self._fd)
        self._fd = None


class AtomScheduler:
    """A BackgroundScheduler with the atom's jobs; the once-per-atom ones only in the leader."""

    def __init__(self, jobs: list[Job], runtime_dir: str) -> None:
        self.jobs = list(jobs)
        self.leader = LeaderLock(runtime_dir)
        self.scheduler = BackgroundScheduler(
            executors={"default": DaemonThreadExecutor()},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30},
        )

    def start(self) -> None:
        """Schedule the jobs of this process and start the scheduler thread."""
        for job in self.jobs:
            if not job.once_per_atom:
                self._add(job)
        if any(job.once_per_atom for job in self.jobs) and not self._elect():
            self.scheduler.add_job(
                self._elect, "interval", seconds=ELECTION_EVERY, id="atom-election"
            )
        self.scheduler.start()

    def shutdown(self) -> None:
        """Stop scheduling; jobs still running are left to finish or die with the process."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self.leader.release()

    def _elect(self) -> bool:
        """Try to become the leader; once leader, schedule the once-per-atom jobs."""
        if not self.leader.try_acquire():
            return False
        logger.info("this process runs the once-per-atom jobs (pid %d)", os.getpid())
        for job in self.jobs:
            if job.once_per_atom:
                self._add(job)
        if self.scheduler.get_job("atom-election"):
            self.scheduler.remove_job("atom-election")
        return True

    def _add(self, job: Job) -> None:
        trigger, args = job.trigger()
        self.scheduler.add_job(job.func, trigger, name=job.name, **args)
