"""The background scheduler: per-worker jobs, once-per-atom jobs with a leader, quick stop."""

import threading
import time
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.control import scheduler as scheduler_module
from {{ cookiecutter.package_name }}.control.scheduler import AtomScheduler, Job


def counter() -> tuple[list[float], Job]:
    """A list of run times and a job that appends to it every 0.1 s."""
    runs: list[float] = []
    return runs, Job(lambda: runs.append(time.monotonic()), seconds=0.1)


def test_trigger_arguments() -> None:
    """Intervals and cron schedules become APScheduler triggers."""
    assert Job(print, minutes=5).trigger() == ("interval", {"seconds": 0, "minutes": 5, "hours": 0})
    assert Job(print, cron={"hour": 3}).trigger() == ("cron", {"hour": 3})


def test_lone_server_runs_its_jobs(tmp_path: Path) -> None:
    """Without a runtime directory the process is its own leader."""
    runs, job = counter()
    scheduler = AtomScheduler([job], runtime_dir="")
    scheduler.start()
    try:
        time.sleep(0.55)
    finally:
        scheduler.shutdown()
    assert 3 <= len(runs) <= 7


def test_once_per_atom_runs_in_one_process_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers share a runtime dir: only the leader runs the job, then the other takes over."""
    monkeypatch.setattr(scheduler_module, "ELECTION_EVERY", 0.2)
    runs_a, job_a = counter()
    runs_b, job_b = counter()
    worker_a = AtomScheduler([job_a], runtime_dir=str(tmp_path))
    worker_b = AtomScheduler([job_b], runtime_dir=str(tmp_path))
    worker_a.start()
    worker_b.start()
    try:
        time.sleep(0.6)
        assert len(runs_a) >= 3
        assert runs_b == []
        worker_a.shutdown()  # the leader goes away
        time.sleep(0.8)
        assert len(runs_b) >= 2
    finally:
        worker_a.shutdown()
        worker_b.shutdown()


def test_per_worker_jobs_run_everywhere(tmp_path: Path) -> None:
    """once_per_atom=False runs the job in every worker."""
    runs_a: list[int] = []
    runs_b: list[int] = []
    job_a = Job(lambda: runs_a.append(1), seconds=0.1, once_per_atom=False)
    job_b = Job(lambda: runs_b.append(1), seconds=0.1, once_per_atom=False)
    worker_a = AtomScheduler([job_a], str(tmp_path))
    worker_b = AtomScheduler([job_b], str(tmp_path))
    worker_a.start()
    worker_b.start()
    time.sleep(0.45)
    worker_a.shutdown()
    worker_b.shutdown()
    assert runs_a and runs_b


def test_no_election_while_the_atom_stops(tmp_path: Path) -> None:
    """Once the launcher marks the atom as stopping, no worker becomes the leader."""
    (tmp_path / "stopping").touch()
    runs, job = counter()
    scheduler = AtomScheduler([job], runtime_dir=str(tmp_path))
    scheduler.start()
    time.sleep(0.3)
    scheduler.shutdown()
    assert runs == []


def test_shutdown_does_not_wait_for_a_stuck_job() -> None:
    """A job blocked forever does not hold up the shutdown."""
    entered, release = threading.Event(), threading.Event()

    def stuck() -> None:
        entered.set()
        release.wait(30)

    scheduler = AtomScheduler([Job(stuck, seconds=0.05)], runtime_dir="")
    scheduler.start()
    assert entered.wait(5)
    started = time.monotonic()
    scheduler.shutdown()
    assert time.monotonic() - started < 0.5
    release.set()
