"""The launcher's pure parts: the nginx config it renders, finding nginx, the restart backoff.

The launcher itself runs with real nginx in the template's nginx lane.
"""

import io
import json
import os
import pwd
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.control.runtime_dir import RuntimeDir
from {{ cookiecutter.package_name }}.deploy import launcher, privileges
from {{ cookiecutter.package_name }}.deploy.nginx import (
    NGINX_ERRORS,
    SMALL_BODY_BYTES,
    V2_ROOT,
    BodyDiskError,
    WorkerUser,
    body_limits,
    nginx_config,
    render,
    unreachable_folder,
    worker_user,
    write_config,
)


def config(tmp_path: Path) -> str:
    """A config for two workers."""
    return nginx_config(
        runtime=RuntimeDir(tmp_path),
        listen_port=8123,
        worker_ports=[9100, 9101],
        max_body_bytes=5_000_000,
        read_timeout=300,
        v2_root="/p" + V2_ROOT,
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
    assert "client_body_buffer_size 16k;" in text  # bodies beyond it go to a temp file
    assert "client_header_timeout 10s;" in text
    assert "client_body_timeout 30s;" in text
    assert "limit_conn atom_per_client 64;" in text
    assert "proxy_max_temp_file_size 0;" in text  # replies never go to disk
    assert "@" not in text


def envelopes(text: str, v2: bool = False) -> dict[int, tuple[int, dict]]:
    """nginx's own errors in a config: caught status -> (status sent, JSON body); with
    ``v2``, the body sent under the v2 routes."""
    pages = re.findall(r"error_page (\d+) =(\d+) (/__atom/error/\d+);", text)
    found = {}
    for caught, sent, path in pages:
        block = re.search("location = " + path + r" \{\n(.*?)\n        \}\n", text, re.S)[1]
        v2_reply, reply = re.findall(r"return (\d+) '(.*)';", block)
        assert "if ($atom_v2) {" in block
        status, body = v2_reply if v2 else reply
        assert status == sent
        assert "internal;" in block
        assert "add_header X-Request-ID $atom_request_id always;" in block
        assert "default_type application/json;" in block
        found[int(caught)] = (int(status), json.loads(body))
    return found


def test_every_error_nginx_makes_is_the_envelope(tmp_path: Path) -> None:
    """Every status nginx itself answers (400 to 505, 405 for TRACE, 501 for an unknown
    Transfer-Encoding, 505 for HTTP/2.0 in a request line) is the envelope, v2's error
    body under the v2 routes."""
    text = config(tmp_path)
    found = envelopes(text)
    sent = {caught: status for caught, (status, _) in found.items()}
    same = (400, 403, 404, 405, 408, 411, 413, 414, 429, 500, 501, 502, 504, 505)
    assert sent == {
        **{status: status for status in same},
        494: 431,  # nginx's "request header too large"
        503: 502,  # no worker to connect to
    }
    for status, body in found.values():
        assert body["code"] == status and body["data"] is None and body["msg"]
    assert len(NGINX_ERRORS) == len(found)
    for caught, (status, body) in envelopes(text, v2=True).items():
        assert (status, body) == (found[caught][0], {"error": found[caught][1]["msg"]})
    block = text.split("map $request_uri $atom_v2 {", 1)[1].split("\n    }", 1)[0]
    assert '"~^/p/v2(/|[?]|$)" 1;' in block
    assert "add_header Retry-After 1 always;" in text.split("/__atom/error/429 {", 1)[1]


def test_v2_root_matches_the_routes() -> None:
    """The root nginx recognises is the v2 routes' own."""
    from {{ cookiecutter.package_name }}.api.v2.routes import ROOT

    assert V2_ROOT == ROOT


def test_bodies_on_disk_stay_within_the_budget(tmp_path: Path) -> None:
    """Every class full at its largest size fits ATOM_BODY_DISK_BYTES, a client gets half,
    and a budget without room for one body of the largest size is refused."""
    mib = 1 << 20
    limits = body_limits(64 * mib, 1024 * mib)
    assert limits == (268, 134, 12, 6)
    assert limits.worst_bytes(64 * mib) <= 1024 * mib
    assert 268 * SMALL_BODY_BYTES + 12 * 64 * mib == limits.worst_bytes(64 * mib)
    assert body_limits(64 * mib, 1024 * mib, 64 * mib) == (268, 16, 12, 1)
    assert body_limits(4096, 64 * mib).worst_bytes(4096) <= 64 * mib
    with pytest.raises(BodyDiskError, match=r"ATOM_BODY_DISK_BYTES=.* at least 89478486"):
        body_limits(64 * mib, 80 * mib)
    text = nginx_config(
        runtime=RuntimeDir(tmp_path),
        listen_port=1,
        worker_ports=[2],
        max_body_bytes=64 * mib,
        read_timeout=1,
        bodies=limits,
    )
    for zone, count in (
        ("atom_small_bodies", 268),
        ("atom_small_bodies_per_client", 134),
        ("atom_large_bodies", 12),
        ("atom_large_bodies_per_client", 6),
    ):
        assert f"        limit_conn {zone} {count};\n" in text
        assert f"zone={zone}:" in text


def test_only_plain_request_ids_are_echoed(tmp_path: Path) -> None:
    """nginx keeps a caller's X-Request-ID only when it matches the atom's own rule."""
    text = config(tmp_path)
    block = text.split("map $http_x_request_id $atom_request_id {", 1)[1].split("\n    }", 1)[0]
    assert "default $request_id;" in block
    assert '"~^[A-Za-z0-9._:-]{1,128}$" $http_x_request_id;' in block


def test_metrics_on_their_own_port(tmp_path: Path) -> None:
    """With a metrics port, the public server answers 404 at the metrics path."""
    text = nginx_config(
        runtime=RuntimeDir(tmp_path),
        listen_port=8123,
        worker_ports=[9100],
        max_body_bytes=5_000_000,
        read_timeout=300,
        metrics_path="/p/metrics",
        metrics_port=9400,
    )
    public, metrics = text.split("listen 0.0.0.0:9400;", 1)
    assert "location = /p/metrics {" in public
    assert 'return 404 \'{"code":404,"msg":"Not Found","data":null}\';' in public
    assert "location = /p/metrics {\n            proxy_pass http://atom_workers;" in metrics
    assert "listen 0.0.0.0:9400;" not in config(tmp_path)


def test_workers_user_only_as_root(tmp_path: Path) -> None:
    """The user directive is written when the launcher runs as root, for nobody."""
    user = worker_user()
    if os.geteuid() == 0:
        assert user is not None and user.name == "nobody"
    else:
        assert user is None
    text = nginx_config(
        runtime=RuntimeDir(tmp_path),
        listen_port=1,
        worker_ports=[2],
        max_body_bytes=1024,
        read_timeout=1,
        user=WorkerUser("nobody", "nogroup", 65534, 65534),
    )
    assert "\nuser nobody nogroup;\n" in text
    assert "\nuser " not in config(tmp_path)


def test_a_folder_the_workers_cannot_pass_is_named() -> None:
    """A runtime directory inside a private folder is reported, naming that folder."""
    stranger = WorkerUser("stranger", "strangers", os.getuid() + 4242, os.getgid() + 4242)
    # Under /tmp itself: pytest's folders, and TMPDIR under the template's tests, are private.
    base = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        private = base / "private"
        runtime = private / "run"
        runtime.mkdir(parents=True)
        base.chmod(0o755)
        private.chmod(0o700)
        runtime.chmod(0o711)
        assert unreachable_folder(runtime, stranger) == private
        private.chmod(0o711)
        assert unreachable_folder(runtime, stranger) is None
    finally:
        shutil.rmtree(base)


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


def test_nginx_lines_hide_url_credentials() -> None:
    """nginx's lines quote the request line: its credentials are hidden before it is copied."""
    target = io.BytesIO()
    line = b'limiting connections, request: "POST /p/detect?jwt=s1&w=2&pass=a"b HTTP/1.1"\n'
    launcher.PrefixedOutput("[nginx] ", target, redact=True).follow(io.BytesIO(line)).join(5)
    assert target.getvalue() == (
        b'[nginx] limiting connections, request: "POST /p/detect?jwt=***&w=2&pass=*** HTTP/1.1"\n'
    )


def test_the_workers_user_is_resolved_only_as_root() -> None:
    """ATOM_WORKER_USER: a name or uid[:gid] when the launcher is root, root keeps root,
    an unknown name is an error; not root, the user does not change."""
    if os.geteuid() != 0:
        assert privileges.resolve("nobody") is None
        return
    nobody = pwd.getpwnam("nobody")
    assert privileges.resolve("nobody") == WorkerUser(
        "nobody", str(nobody.pw_gid), nobody.pw_uid, nobody.pw_gid
    )
    assert privileges.resolve(" 45001 ") == WorkerUser("45001", "45001", 45001, 45001)
    assert privileges.resolve("45001:7") == WorkerUser("45001", "7", 45001, 7)
    assert privileges.resolve("root") is None and privileges.resolve("0") is None
    with pytest.raises(privileges.WorkerUserError, match="no such user"):
        privileges.resolve("no-such-user-here")


def test_the_check_names_what_the_workers_user_cannot_use(tmp_path: Path) -> None:
    """The access check runs as the workers' user and names the first path out of its
    reach (or the interpreter, when that user cannot run it)."""
    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        folder.chmod(0o755)
        private, public = folder / "private.key", folder / "public.txt"
        private.write_text("k")
        public.write_text("p")
        private.chmod(0)
        public.chmod(0o644)
        if os.geteuid() == 0:
            entry = pwd.getpwnam("nobody")
            user = WorkerUser("nobody", "nogroup", entry.pw_uid, entry.pw_gid)
        else:
            user = WorkerUser("me", "mine", os.getuid(), os.getgid())
        with pytest.raises(privileges.WorkerUserError) as refused:
            privileges.check(user, [(public, os.R_OK), (private, os.R_OK)])
        message = str(refused.value)
        assert f"cannot use {private}:" in message or f"cannot run {sys.executable}" in message
        assert "ATOM_WORKER_USER" in message
    finally:
        shutil.rmtree(folder)
