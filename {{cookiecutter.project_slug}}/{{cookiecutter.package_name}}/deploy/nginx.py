"""The nginx configuration that ``nginx_run()`` renders (template: nginx.conf.tmpl).

Every reply nginx makes itself (``NGINX_ERRORS``) is the atom's JSON envelope with the
request id, like the workers' own errors; under the v2 routes it is the protocol's
``{"error": ...}``. Started as root, nginx runs its workers as an unprivileged user
(``worker_user``), and ``write_config`` gives that user the temporary folders it writes
request bodies to.

Request bodies above 16 KiB go to temporary files, and nginx has no cap on their total:
``body_limits`` turns ATOM_BODY_DISK_BYTES into counts of bodies in progress (limit_conn),
overall and per client address, by size class (the declared Content-Length; a chunked
body counts as the largest), so that every class full at its largest size still fits.
"""

import grp
import json
import os
import pwd
import re
import stat
from importlib.resources import files
from pathlib import Path
from typing import NamedTuple

from ..control.runtime_dir import RuntimeDir

PLACEHOLDER_RE = re.compile(r"@(\w+)@")
NGINX_USER = "nobody"  # the workers' user when the launcher runs as root
# The errors nginx makes itself: (nginx's status, status sent, message). 494 is nginx's
# "request header too large", sent as 400 unless caught; the atom sends 431. Each is served
# by an internal location under ERROR_PATH (a named location cannot serve an error found
# before the request line is read, a 414 say).
ERROR_PATH = "/__atom/error/"
NGINX_ERRORS = (
    (400, 400, "Bad Request"),
    (403, 403, "Forbidden"),
    (404, 404, "Not Found"),
    (405, 405, "Method Not Allowed"),
    (408, 408, "Request Timeout"),
    (411, 411, "Length Required"),
    (413, 413, "Request Entity Too Large (limit {max_body_bytes} bytes)"),
    (414, 414, "URI Too Long"),
    (429, 429, "Too Many Requests (ATOM_CONNECTIONS_PER_CLIENT, ATOM_BODY_DISK_BYTES)"),
    (494, 431, "Request Header Fields Too Large"),
    (500, 500, "Internal Server Error"),
    (501, 501, "Not Implemented (a Transfer-Encoding other than chunked)"),
    (502, 502, "Bad Gateway (no worker answered)"),
    (503, 502, "Bad Gateway (no worker answered)"),
    (504, 504, "Gateway Timeout (no reply within ATOM_PROXY_READ_TIMEOUT)"),
    (505, 505, "HTTP Version Not Supported (HTTP/1.0 and HTTP/1.1 only)"),
)
RETRY_AFTER = {429: 1}  # seconds, sent with these statuses
V2_ROOT = "/v2"  # the v2 routes' root under the prefix (api/v2/routes.py's ROOT)
# Bodies on disk. Up to client_body_buffer_size a body stays in memory; the declared length
# picks a class: up to 4 digits nothing is counted, 5 or 6 digits (below 1 MB) is "small",
# more digits or any Transfer-Encoding is "large" (up to ATOM_MAX_BODY_BYTES).
BODY_IN_MEMORY = "16k"
SMALL_BODY_BYTES = 999_999
SMALL_SHARE = 4  # the small class gets 1/4 of ATOM_BODY_DISK_BYTES, the large one the rest
NOT_FOUND = (404, "Not Found")
OPENING = "{\n"  # put into f-strings: doubled braces would be Jinja's (this file is a template)


class RuntimeDirError(Exception):
    """nginx's workers could not write their temporary files in the runtime directory."""


class BodyDiskError(ValueError):
    """ATOM_BODY_DISK_BYTES leaves no room for one body of the largest size."""


class BodyLimits(NamedTuple):
    """Bodies in progress at once, by class: overall and per client address."""

    small: int
    small_per_client: int
    large: int
    large_per_client: int

    def worst_bytes(self, max_body_bytes: int) -> int:
        """The most bytes of bodies on disk at once: every slot full at its class's largest."""
        return self.small * min(SMALL_BODY_BYTES, max_body_bytes) + self.large * max_body_bytes


def body_limits(max_body_bytes: int, disk_bytes: int, per_client_bytes: int = 0) -> BodyLimits:
    """The counts that keep bodies on disk within ``disk_bytes`` (and one client within
    ``per_client_bytes``, half of ``disk_bytes`` when 0); ``BodyDiskError`` when a class
    would get no slot."""
    small_size = min(SMALL_BODY_BYTES, max_body_bytes)

    def slots(budget: int) -> tuple[int, int]:
        small_budget = budget // SMALL_SHARE
        return small_budget // small_size, (budget - small_budget) // max_body_bytes

    small, large = slots(disk_bytes)
    if not small or not large:
        least = max(SMALL_SHARE * small_size, -(-max_body_bytes * SMALL_SHARE // (SMALL_SHARE - 1)))
        raise BodyDiskError(
            f"ATOM_BODY_DISK_BYTES={disk_bytes} has no room for one body of "
            f"ATOM_MAX_BODY_BYTES={max_body_bytes}: set it to at least {least}"
        )
    client_small, client_large = slots(per_client_bytes or disk_bytes // 2)
    return BodyLimits(
        small, min(small, max(1, client_small)), large, min(large, max(1, client_large))
    )


def disk_room_warning(folder: Path, worst: int) -> str | None:
    """A warning when ``folder``'s file system has less room than the bodies may take (an
    emptyDir's sizeLimit is not visible here: keep it and ATOM_BODY_DISK_BYTES agreeing)."""
    info = os.statvfs(folder)
    free = info.f_bavail * info.f_frsize
    if free >= worst:
        return None
    return (
        f"request bodies may take {worst} bytes on disk but {folder} has {free} free: "
        "lower ATOM_BODY_DISK_BYTES or give the runtime directory more room"
    )


def body_limit_directives(limits: BodyLimits) -> str:
    """The limit_conn lines of the server: each class overall and per client address."""
    return "".join(
        f"        limit_conn {zone} {count};\n"
        for zone, count in (
            ("atom_small_bodies", limits.small),
            ("atom_small_bodies_per_client", limits.small_per_client),
            ("atom_large_bodies", limits.large),
            ("atom_large_bodies_per_client", limits.large_per_client),
        )
    )


class WorkerUser(NamedTuple):
    """The user nginx's worker processes run as."""

    name: str
    group: str
    uid: int
    gid: int


def worker_user() -> WorkerUser | None:
    """The unprivileged user for nginx's workers when this process is root, else None (nginx
    then keeps the workers as the launcher's own user)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam(NGINX_USER)
    group = grp.getgrgid(entry.pw_gid).gr_name
    return WorkerUser(NGINX_USER, group, entry.pw_uid, entry.pw_gid)


def render(template: str, values: dict[str, object]) -> str:
    """Replace every @name@; a placeholder without a value is an error."""

    def value(match: re.Match[str]) -> str:
        name = match[1]
        if name not in values:
            raise KeyError(f"nginx template: no value for @{name}@")
        return str(values[name])

    return PLACEHOLDER_RE.sub(value, template)


def compact(value: object) -> str:
    """JSON without spaces (a body inside an nginx string: no quote of ours to escape)."""
    return json.dumps(value, separators=(",", ":"))


def envelope_location(match: str, status: int, msg: str, *, internal: bool = False) -> str:
    """A location answering ``status`` with the envelope (and the request id); an internal
    one (an error page) answers v2's ``{"error": ...}`` under the v2 routes."""
    body = compact({"code": status, "msg": msg, "data": None})
    retry = RETRY_AFTER.get(status)
    return (
        f"        location {match} {OPENING}"
        + ("            internal;\n" if internal else "")
        + "            default_type application/json;\n"
        "            add_header X-Request-ID $atom_request_id always;\n"
        + (f"            add_header Retry-After {retry} always;\n" if retry else "")
        + (
            f"            if ($atom_v2) {OPENING}"
            f"                return {status} '{compact({'error': msg})}';\n"
            "            }\n"
            if internal
            else ""
        )
        + f"            return {status} '{body}';\n"
        "        }\n"
    )


def error_pages(max_body_bytes: int) -> str:
    """error_page directives and their locations for every error of NGINX_ERRORS."""
    parts = []
    for caught, status, msg in NGINX_ERRORS:
        path = f"{ERROR_PATH}{caught}"
        text = msg.format(max_body_bytes=max_body_bytes)
        parts.append(f"        error_page {caught} ={status} {path};\n")
        parts.append(envelope_location(f"= {path}", status, text, internal=True))
    return "".join(parts)


def not_found_at(path: str) -> str:
    """A location answering the atom's 404 at exactly ``path``."""
    status, msg = NOT_FOUND
    return envelope_location(f"= {path}", status, msg)


def metrics_server(listen: str, path: str, max_body_bytes: int) -> str:
    """A second server that serves only the metrics route (ATOM_METRICS_PORT)."""
    status, msg = NOT_FOUND
    return (
        "\n    server {\n"
        f"        listen {listen};\n"
        f"        location = {path} {OPENING}"
        "            proxy_pass http://atom_workers;\n"
        "            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";\n'
        "            proxy_set_header X-Request-ID $atom_request_id;\n"
        "            proxy_connect_timeout 2s;\n"
        "            proxy_read_timeout 30s;\n"
        "        }\n"
        + envelope_location("/", status, msg)
        + error_pages(max_body_bytes)
        + "    }\n"
    )


def nginx_config(
    *,
    runtime: RuntimeDir,
    listen_port: int,
    worker_ports: list[int],
    max_body_bytes: int,
    read_timeout: float,
    listen_host: str = "0.0.0.0",
    nginx_workers: int | str = "auto",
    client_timeout: float = 30,
    header_timeout: float = 10,
    connections_per_client: int = 64,
    metrics_path: str | None = None,
    metrics_port: int = 0,
    user: WorkerUser | None = None,
    bodies: BodyLimits | None = None,
    v2_root: str = "/v2",
) -> str:
    """The nginx.conf text for these workers and limits.

    ``metrics_path`` with a ``metrics_port`` serves the metrics route on that port only
    (the public port answers 404 there); ``user`` is the workers' user (None: nginx's own
    choice, which is the launcher's user unless it is root); ``bodies`` bounds the request
    bodies on disk (default: ``body_limits`` of 1 GiB); nginx's errors under ``v2_root``
    (the prefix and ``V2_ROOT``; "" for none) are v2's.
    """
    bodies = bodies or body_limits(max_body_bytes, 1 << 30)
    v2_uri = f'        "~^{re.escape(v2_root)}(/|[?]|$)" 1;\n' if v2_root else ""
    servers = "\n".join(f"        server 127.0.0.1:{port} max_fails=0;" for port in worker_ports)
    template = files(__package__).joinpath("nginx.conf.tmpl").read_text(encoding="utf-8")
    separate_metrics = metrics_path is not None and metrics_port > 0
    return render(
        template,
        {
            "pid_file": runtime.nginx_pid,
            **{f"{kind}_temp": path for kind, path in runtime.nginx_temp_dirs.items()},
            "user_directive": f"user {user.name} {user.group};" if user else "",
            "listen": f"{listen_host}:{listen_port}",
            "upstream_servers": servers,
            "workers": len(worker_ports),
            "max_body_bytes": max_body_bytes,
            "read_timeout": int(read_timeout),
            "client_timeout": max(1, int(client_timeout)),
            "header_timeout": max(1, int(header_timeout)),
            "nginx_workers": nginx_workers,
            "limit_conn": (
                f"        limit_conn atom_per_client {connections_per_client};\n"
                if connections_per_client > 0
                else ""
            )
            + body_limit_directives(bodies),
            "body_in_memory": BODY_IN_MEMORY,
            "v2_uri": v2_uri,
            "hide_metrics": not_found_at(str(metrics_path)) if separate_metrics else "",
            "error_pages": error_pages(max_body_bytes),
            "metrics_server": (
                metrics_server(f"{listen_host}:{metrics_port}", str(metrics_path), max_body_bytes)
                if separate_metrics
                else ""
            ),
        },
    )


def unreachable_folder(path: Path, user: WorkerUser) -> Path | None:
    """The first folder on the way to ``path`` (itself included) that ``user`` may not pass
    through, or None."""
    for folder in [*reversed(path.parents), path]:
        info = folder.stat()
        if info.st_uid == user.uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid == user.gid:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return folder
    return None


def write_config(runtime: RuntimeDir, text: str, user: WorkerUser | None = None) -> Path:
    """Write nginx.conf and create the temp directories nginx needs; return the file.

    With a ``user`` (the launcher is root), that user owns the temp directories and may
    pass through the runtime directory to reach them, and nothing more;
    ``RuntimeDirError`` when a parent folder keeps it out.
    """
    for folder in runtime.nginx_temp_dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
        if user is not None:
            os.chown(folder, user.uid, user.gid)
            folder.chmod(0o700)
    if user is not None:
        runtime.root.chmod(runtime.root.stat().st_mode & 0o7777 | 0o011)
        blocked = unreachable_folder(runtime.root, user)
        if blocked is not None:
            raise RuntimeDirError(
                f"nginx's workers run as {user.name} (the launcher runs as root) and cannot "
                f"pass through {blocked} to write request bodies in {runtime.root}: set "
                "ATOM_RUNTIME_DIR to a folder whose parents all allow it (chmod o+x), or "
                "leave it empty"
            )
    runtime.nginx_conf.write_text(text, encoding="utf-8")
    return runtime.nginx_conf
