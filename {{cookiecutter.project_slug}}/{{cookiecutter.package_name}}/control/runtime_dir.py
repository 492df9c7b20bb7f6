"""The runtime directory of an atom under ``nginx_run``: every file in it, and who writes it.

The launcher creates the directory (ATOM_RUNTIME_DIR, or a new one under /tmp) and hands
it to its workers through ATOM_RUNTIME_DIR; it removes the directory when it stops if it
created it. A lone ``server.py`` has none (ATOM_RUNTIME_DIR empty).

    nginx.conf        the launcher renders it (deploy/nginx.py)
    nginx.pid         nginx
    client_body/ proxy/ fastcgi/ uwsgi/ scgi/
                      nginx's temporary files (the launcher creates the folders)
    metrics/          every process of the atom writes its Prometheus values there
                      (PROMETHEUS_MULTIPROC_DIR; the launcher empties it at start)
    leader.lock       the worker holding its lock runs the once-per-atom jobs (scheduler)
    stopping          the launcher creates it when it stops: no worker takes the lead then

This module imports nothing heavy: the launcher reads it before prometheus_client is
imported (that library decides its multiprocess mode at import).
"""

from dataclasses import dataclass
from pathlib import Path

RUNTIME_DIR_ENV = "ATOM_RUNTIME_DIR"
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client at import
NGINX_TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


@dataclass(frozen=True)
class RuntimeDir:
    """The paths inside one runtime directory."""

    root: Path

    @property
    def nginx_conf(self) -> Path:
        return self.root / "nginx.conf"

    @property
    def nginx_pid(self) -> Path:
        return self.root / "nginx.pid"

    @property
    def nginx_temp_dirs(self) -> dict[str, Path]:
        """nginx's temporary folders by kind (``client_body_temp_path`` and the like)."""
        return {name: self.root / name for name in NGINX_TEMP_DIRS}

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def leader_lock(self) -> Path:
        return self.root / "leader.lock"

    @property
    def stopping(self) -> Path:
        return self.root / "stopping"
