"""The nginx configuration that ``nginx_run()`` renders (template: nginx.conf.tmpl)."""

import re
from importlib.resources import files
from pathlib import Path

from ..control.runtime_dir import RuntimeDir

PLACEHOLDER_RE = re.compile(r"@(\w+)@")


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
    runtime: RuntimeDir,
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
            "pid_file": runtime.nginx_pid,
            **{f"{kind}_temp": path for kind, path in runtime.nginx_temp_dirs.items()},
            "listen": f"{listen_host}:{listen_port}",
            "upstream_servers": servers,
            "workers": len(worker_ports),
            "max_body_bytes": max_body_bytes,
            "read_timeout": int(read_timeout),
            "nginx_workers": nginx_workers,
        },
    )


def write_config(runtime: RuntimeDir, text: str) -> Path:
    """Write nginx.conf and create the temp directories nginx needs; return the file."""
    for folder in runtime.nginx_temp_dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
    runtime.nginx_conf.write_text(text, encoding="utf-8")
    return runtime.nginx_conf
