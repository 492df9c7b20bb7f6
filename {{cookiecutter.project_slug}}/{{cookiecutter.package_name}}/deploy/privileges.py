"""Root dropped for nginx_run's server processes, as nginx drops it for its own workers.

Started as root, the launcher starts every ``server.py`` as ATOM_WORKER_USER (``nobody`` by
default; a user name or ``uid[:gid]``), with that user's group and no supplementary group;
``root`` keeps them root (with a warning). Before the first start it checks, as that user,
that the interpreter runs and that a worker can read what it reads (the server script,
the models, the model key) and write its log folder, and stops with a message naming the
first path it cannot (``WorkerUserError``). What the launcher makes for its workers is
theirs: the log folders it creates, the log files (``configure_logging``'s owner), the
metrics folder and the leader lock of the runtime directory.

Shared-memory frames are read only from blocks the worker's own user owns: producers run
as ATOM_WORKER_USER (or give it their blocks).
"""

import json
import os
import pwd
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from ..config import Settings
from ..control.runtime_dir import RuntimeDir
from .nginx import WorkerUser

KEEP_ROOT = frozenset({"root", "0", "0:0"})
# Run as the worker user with the isolated interpreter: the first path it cannot use.
CHECK = """
import json, os, sys
for path, mode in json.loads(sys.argv[1]):
    if not os.access(path, mode):
        print(path)
        raise SystemExit(1)
"""
CHECK_TIMEOUT = 30.0


class WorkerUserError(Exception):
    """ATOM_WORKER_USER is unknown, or cannot run a worker."""


def keeps_root(spec: str) -> bool:
    """Whether ATOM_WORKER_USER asks to keep the workers root."""
    return spec.strip() in KEEP_ROOT


def resolve(spec: str) -> WorkerUser | None:
    """The workers' user when this process is root, else None (no change of user).

    ``spec`` is a user name or ``uid[:gid]`` (a uid without a passwd entry takes its own
    number as gid); ``root`` gives None.
    """
    spec = spec.strip()
    if os.geteuid() != 0 or keeps_root(spec):
        return None
    name, _, group = spec.partition(":")
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        if not name.isdigit():
            raise WorkerUserError(f"ATOM_WORKER_USER={spec}: no such user") from None
        uid = int(name)
        gid = int(group) if group.isdigit() else uid
        return WorkerUser(name, str(gid), uid, gid)
    gid = int(group) if group.isdigit() else entry.pw_gid
    return WorkerUser(entry.pw_name, str(gid), entry.pw_uid, gid)


def home_of(user: WorkerUser) -> str | None:
    """The user's home folder from its passwd entry, if it has one."""
    try:
        return pwd.getpwuid(user.uid).pw_dir
    except KeyError:
        return None


def give(path: Path, user: WorkerUser, mode: int) -> None:
    """``path`` to ``user``, with ``mode``."""
    os.chown(path, user.uid, user.gid)
    path.chmod(mode)


def make_folders(folder: Path, user: WorkerUser) -> None:
    """Create ``folder`` and its missing parents, each new one given to ``user``."""
    missing = [path for path in [*reversed(folder.parents), folder] if not path.exists()]
    for path in missing:
        path.mkdir(exist_ok=True)
        give(path, user, 0o755)


def key_file(settings: Settings) -> Path | None:
    """The model key file a worker will read (``protection/keys.py``'s order), if any."""
    from ..protection.keys import PROJECT_KEY_FILE  # noqa: PLC0415 - only when dropping root

    if "atom_model_key_file" in settings.model_fields_set:
        return Path(settings.atom_model_key_file)
    if settings.atom_model_key.get_secret_value():
        return None
    candidates = (Path(settings.atom_model_key_file), PROJECT_KEY_FILE)
    return next((path for path in candidates if path.is_file()), None)


def needs(settings: Settings, server_script: Path) -> list[tuple[Path, int]]:
    """What a worker reads or writes, with the access it needs."""
    from ..protection.keys import model_path  # noqa: PLC0415 - only when dropping root

    wants = [(server_script, os.R_OK), (server_script.parent, os.R_OK | os.X_OK)]
    models = model_path(settings, "")
    if models.is_dir():
        wants.append((models, os.R_OK | os.X_OK))
        wants += [(path, os.R_OK) for path in sorted(models.iterdir()) if path.is_file()]
    key = key_file(settings)
    if key is not None:
        wants.append((key, os.R_OK))
    if settings.log_file is not None:
        wants.append((settings.log_file.parent, os.W_OK | os.X_OK))
    return wants


def check(user: WorkerUser, wants: Iterable[tuple[Path, int]]) -> None:
    """Run the interpreter as ``user`` and try each access; ``WorkerUserError`` naming the
    first that fails."""
    told = f"the workers run as {user.name} (ATOM_WORKER_USER; the launcher runs as root)"
    listed = json.dumps([[str(path), mode] for path, mode in wants])
    try:
        result = subprocess.run(
            [sys.executable, "-I", "-c", CHECK, listed],
            user=user.uid,
            group=user.gid,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT,
            check=False,
        )
    except PermissionError:
        raise WorkerUserError(
            f"{told} and cannot run {sys.executable}: install Python where that user can "
            "run it, or choose another ATOM_WORKER_USER"
        ) from None
    if result.returncode != 0:
        where = result.stdout.strip() or result.stderr.strip()[-300:]
        raise WorkerUserError(
            f"{told} and cannot use {where}: give that user access (chgrp/chmod, or chown "
            "a folder of the atom's), or choose another ATOM_WORKER_USER"
        )


def prepare(runtime: RuntimeDir, settings: Settings, server_script: Path, user: WorkerUser) -> None:
    """Before the first server starts as ``user``: its files in the runtime directory given
    to it, and what it needs checked as that user (``WorkerUserError``)."""
    runtime.root.chmod(runtime.root.stat().st_mode & 0o7777 | 0o011)  # may pass through
    if settings.metrics_switch:
        give(runtime.metrics, user, 0o700)
    runtime.leader_lock.touch()
    give(runtime.leader_lock, user, 0o600)
    check(user, [*needs(settings, server_script), (runtime.root, os.X_OK)])
