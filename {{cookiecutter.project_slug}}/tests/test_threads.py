"""The thread budget: each server's share of the cores the container may use (threads.py)."""

import os
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.control import threads
from {{ cookiecutter.package_name }}.deploy.launcher import Launcher

from .conftest import make_app, wait_ready


def cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    """A fake /sys/fs/cgroup holding ``files``."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_cgroup_quota_v2_and_v1(tmp_path: Path) -> None:
    """cpu.max (v2) and cfs_quota_us / cfs_period_us (v1) give the quota in cores."""
    assert threads.cgroup_quota(cgroup(tmp_path / "a", {"cpu.max": "150000 100000\n"})) == 1.5
    assert threads.cgroup_quota(cgroup(tmp_path / "b", {"cpu.max": "max 100000\n"})) is None
    v1 = {"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}
    assert threads.cgroup_quota(cgroup(tmp_path / "c", v1)) == 3.0
    unlimited = {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}
    assert threads.cgroup_quota(cgroup(tmp_path / "d", unlimited)) is None
    assert threads.cgroup_quota(tmp_path / "none") is None


def test_available_cores_is_the_affinity_capped_by_the_quota(tmp_path: Path) -> None:
    """A quota of 0.5 core still gives one; a quota above the affinity does not add cores."""
    affinity = len(os.sched_getaffinity(0))
    half = cgroup(tmp_path / "half", {"cpu.max": "50000 100000"})
    assert threads.available_cores(half) == 1
    lots = cgroup(tmp_path / "lots", {"cpu.max": f"{(affinity + 8) * 100000} 100000"})
    assert threads.available_cores(lots) == affinity
    assert threads.available_cores(tmp_path / "none") == affinity


@pytest.mark.parametrize(
    ("cores", "workers", "share"), [(8, 1, 8), (8, 3, 2), (2, 4, 1), (16, 4, 4)]
)
def test_each_worker_gets_its_share(cores: int, workers: int, share: int) -> None:
    """cores // workers, at least one thread."""
    assert threads.per_worker(cores, workers) == share


def test_library_variables_keep_what_the_environment_sets() -> None:
    """The OpenMP/BLAS variables are given the budget unless already set."""
    env = threads.library_env(3, {"OMP_NUM_THREADS": "7"})
    assert "OMP_NUM_THREADS" not in env
    assert env["OPENBLAS_NUM_THREADS"] == "3"
    assert set(env) == set(threads.LIBRARY_VARS) - {"OMP_NUM_THREADS"}


def test_settings_budget(make_settings: Callable[..., Settings]) -> None:
    """ATOM_THREADS wins; otherwise the cores available divided by ATOM_WORKERS."""
    cores = threads.available_cores()
    assert make_settings(atom_threads=3).thread_budget == 3
    assert make_settings(atom_workers=1).thread_budget == cores
    assert make_settings(atom_workers=cores * 2).thread_budget == 1


def test_launcher_gives_its_workers_their_share(
    make_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nginx_run's workers get the budget in ATOM_THREADS and the OpenMP/BLAS variables."""
    monkeypatch.setenv("MKL_NUM_THREADS", "5")
    settings = make_settings(atom_threads=2, atom_runtime_dir=str(tmp_path / "run"))
    launcher = Launcher(settings, tmp_path / "server.py")
    env = launcher.workers[0].env
    assert env["ATOM_THREADS"] == "2"
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "2"
    assert env["MKL_NUM_THREADS"] == "5"


def test_the_server_holds_opencv_to_its_budget(make_settings: Callable[..., Settings]) -> None:
    """At start, the server sets OpenCV's thread count to its budget."""
    before = cv2.getNumThreads()
    try:
        settings = make_settings(atom_threads=1)
        with TestClient(make_app(settings)) as client:
            wait_ready(client, settings.atom_api_prefix)
            assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
