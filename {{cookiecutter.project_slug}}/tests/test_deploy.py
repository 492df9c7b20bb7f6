"""The launcher's pure parts: the nginx config it renders, finding nginx, the restart backoff.

The launcher itself runs with real nginx in the template's nginx lane.
"""

import io
import os
import re
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.control.runtime_dir import RuntimeDir
from {{ cookiecutter.package_name }}.deploy import launcher
from {{ cookiecutter.package_name }}.deploy.nginx import nginx_config, render, write_config


def config(tmp_path: Path) -> str:
    """A config for two workers."""
    return nginx_config(
        runtime=RuntimeDir(tmp_path),
        listen_port=8123,
        worker_ports=[9100, 9101],
        max_body_bytes=5_000_000,
        read_timeout=300,
    )


def test_config_values(tmp_path: Path) -> None:
    """Port, upstream, body limit, timeouts and paths come from the arguments."""
    text = config(tmp_path)
    assert "listen 0.0.0.0:8123 backlog=4096;" in text
    assert re.findall(r"server 127\.0\.0\.1:(\d+) max_fails=0;", text) == ["9100", "9101"]
    assert "client_max_body_size 5000000;" in text
    assert "proxy_read_timeout 300s;" in text
    assert "proxy_next_upstream error;" in text
    assert "proxy_next_upstream_tries 2;" in text
    assert f"pid {tmp_path}/nginx.pid;" in text
    assert '"msg":"Request Entity Too Large (limit 5000000 bytes)"' in text
    assert "@" not in text.replace("@too_large", "").replace("@no_worker", "")


def test_config_writes_nothing_outside_the_runtime_dir(tmp_path: Path) -> None:
    """Every path in the config is inside the runtime directory."""
    text = config(tmp_path)
    paths = re.findall(r"(?:_path|pid) (/\S+);", text)
    assert len(paths) == 6
    assert all(path.startswith(str(tmp_path)) for path in paths)
    write_config(RuntimeDir(tmp_path), text)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "client_body",
        "fastcgi",
        "nginx.conf",
        "proxy",
        "scgi",
        "uwsgi",
    ]


def test_render_refuses_missing_values() -> None:
    """A placeholder without a value is an error, not an empty string."""
    with pytest.raises(KeyError, match="@port@"):
        render("listen @port@;", {})


def test_find_nginx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NGINX_BIN wins; otherwise PATH, then the fallback; missing says what to do."""
    fake = tmp_path / "nginx"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert launcher.find_nginx(str(fake)) == str(fake)
    with pytest.raises(FileNotFoundError, match="NGINX_BIN=/no/nginx is not an executable"):
        launcher.find_nginx("/no/nginx")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert launcher.find_nginx("") == str(fake)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(FileNotFoundError, match="apt-get install nginx"):
        launcher.find_nginx("", fallback="/nonexistent/nginx")


def test_backoff_grows_and_resets(caplog: pytest.LogCaptureFixture) -> None:
    """Crashes in a row wait 0.5, 1, 2... s (capped); a long run resets; 5 crashes log an error."""
    worker = launcher.Worker(9100, ["python"], dict(os.environ), "http://127.0.0.1:9100/")
    delays = []
    for now in range(1, 8):
        worker.started_at = float(now)
        worker.schedule_restart(float(now), "exited")
        delays.append(worker.restart_at - now)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert [r.levelname for r in caplog.records].count("ERROR") == 3
    worker.started_at = 0.0
    worker.schedule_restart(launcher.STABLE_AFTER + 1, "exited")
    assert worker.restart_at == launcher.STABLE_AFTER + 1.5


def test_prefixed_output() -> None:
    """Each line of a child's output is copied with its prefix."""
    target = io.BytesIO()
    launcher.PrefixedOutput("[9100] ", target).follow(io.BytesIO(b"one\ntwo\n")).join(5)
    assert target.getvalue() == b"[9100] one\n[9100] two\n"
