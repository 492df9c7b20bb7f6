"""The nginx configuration that ``nginx_run()`` renders (template: nginx.conf.tmpl)."""

import re
from importlib.resources import files
from pathlib import Path

PLACEHOLDER_RE = re.compile(r"@(\w+)@")
TEMP_DIRS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def render(template: str, values: dict[str, object]) -> str:
    """Replace every @name@; a placeholder without a value is an error."""

    def value(match: re.Match[str]) -> str:
        name = match[1]
        if name not in values:
            raise KeyError(f"nginx template: no value for @{name}@")
        return str(values[name])

    return PLACEHOLDER_RE.sub(value, template)


def nginx_config(
    *,
    runtime: Path,
    listen_port: int,
    worker_ports: list[int],
    max_body_bytes: int,
    read_timeout: float,
    listen_host: str = "0.0.0.0",
    nginx_workers: int | str = "auto",
) -> str:
    """The nginx.conf text for these workers and limits."""
    servers = "\n".join(f"        server 127.0.0.1:{port} max_fails=0;" for port in worker_ports)
    template = files(__package__).joinpath("nginx.conf.tmpl").read_text(encoding="utf-8")
    return render(
        template,
        {
            "runtime": runtime,
            "listen": f"{listen_host}:{listen_port}",
            "upstream_servers": servers,
            "workers": len(worker_ports),
            "max_body_bytes": max_body_bytes,
            "read_timeout": int(read_timeout),
            "nginx_workers": nginx_workers,
        },
    )


def write_config(runtime: Path, text: str) -> Path:
    """Write nginx.conf and create the temp directories nginx needs; return the file."""
    for name in TEMP_DIRS:
        (runtime / name).mkdir(parents=True, exist_ok=True)
    path = runtime / "nginx.conf"
    path.write_text(text, encoding="utf-8")
    return path
