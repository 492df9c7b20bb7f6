"""Periodic jobs of the atom: list them in ``JOBS``.

    from .control.scheduler import Job

    def refresh_labels() -> None:            # runs in a background thread
        ...

    JOBS = [
        Job(refresh_labels, minutes=10),                       # once per atom
        Job(trim_local_cache, seconds=30, once_per_atom=False),  # in every worker
        Job(nightly_report, cron={"hour": 3, "minute": 0}),
    ]

``once_per_atom=True`` (the default) runs the job in one process of the atom, whatever
ATOM_WORKERS is; see ``control/scheduler.py``.
"""

from .control.scheduler import Job

JOBS: list[Job] = []
