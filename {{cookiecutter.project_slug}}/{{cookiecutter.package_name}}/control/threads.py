"""The thread budget of a server process: how many threads its numeric libraries may use.

Each of OpenCV, OpenMP/BLAS (numpy's OpenBLAS, MKL) and ONNX Runtime starts one thread
per CPU of the machine by default. With several server processes that is several threads
per core, fighting over the caches; the atom gives each process its share of the cores
the container may use instead: ``cores available / ATOM_WORKERS``, at least 1
(ATOM_THREADS overrides it).

The cores available are the fewest of the CPUs this process may run on
(``sched_getaffinity``: ``taskset``, ``--cpuset-cpus``) and the CPU quota of its cgroup
(``cpu.max`` in cgroup v2, ``cpu.cfs_quota_us`` in v1: ``--cpus``, a Kubernetes CPU
limit), rounded up.

OpenMP and BLAS read their variables when they are loaded, so ``nginx_run`` puts them in
its workers' environment (``library_env``); OpenCV is told at start (``apply``); an ONNX
Runtime session takes the number from the model loader:
``options.intra_op_num_threads = settings.thread_budget``.
"""

import math
import os
from collections.abc import Mapping
from pathlib import Path

# Variables of the OpenMP and BLAS runtimes (read when the library loads).
LIBRARY_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
CGROUP = Path("/sys/fs/cgroup")


def cgroup_quota(root: Path = CGROUP) -> float | None:
    """The CPU quota of this process's cgroup in cores, or None when it has none."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]  # cgroup v2
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cores(root: Path = CGROUP) -> int:
    """The cores this process may use: its CPU affinity, capped by its cgroup's quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = cgroup_quota(root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def per_worker(cores: int, workers: int) -> int:
    """Each worker's share of ``cores``: at least one thread."""
    return max(1, cores // max(1, workers))


def library_env(threads: int, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The OpenMP/BLAS variables for ``threads``, except those ``environ`` already sets."""
    present: Mapping[str, str] = os.environ if environ is None else environ
    return {name: str(threads) for name in LIBRARY_VARS if name not in present}


def apply(threads: int) -> None:
    """Hold OpenCV's own thread pool to ``threads`` in this process."""
    import cv2  # noqa: PLC0415 - the atom's image pipeline has it; imported when applied

    cv2.setNumThreads(threads)
