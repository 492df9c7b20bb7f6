"""The hostile-input lane, whoever starts nginx_run: root (its servers then run as nobody)
or a plain user. Each start runs 2 workers and gets nginx's own errors (JSON, v2's under
/v2), the disk taken by stalled uploads (bounded by ATOM_BODY_DISK_BYTES), credentials in
URLs (never logged), shared memory and a 60 MB body through nginx's temporary file.
"""

import contextlib
import json
import os
import pwd
import shutil
import socket
import subprocess
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np
import pytest

from scripts.atomctl import AtomLauncher

from .test_hostile_input import PREFIX, envelope, ping_request, process_uid, raw_exchange
from .test_nginx import nginx_binary, process_group

pytestmark = pytest.mark.hostile_input

MIB = 1 << 20
# ATOM_BODY_DISK_BYTES of these runs: 3 bodies above 1 MB at once, 1 per client address.
DISK_BYTES = 256 * MIB
LARGE_SLOTS = 3
UPLOAD_BYTES = 62 * MIB  # the attack: 34 stalled uploads of 62 MiB
UPLOADS = 34
ADDRESSES = [f"127.0.0.{n}" for n in range(20, 24)]
SECRETS = ("jsecret1", "csecret2", "psecret3", "fsecret4", "usecret5", "qsecret6")


class SystemPythonLauncher(AtomLauncher):
    """nginx_run.py with the system's python3 and this venv's packages: pyenv's Python is
    under /root, out of an unprivileged user's reach."""

    def __init__(self, project: Path, **kwargs: object) -> None:
        super().__init__(project, python="/usr/bin/python3", **kwargs)
        self.env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]


class UserLauncher(SystemPythonLauncher):
    """nginx_run.py started by another user (setpriv)."""

    def __init__(self, project: Path, uid: int, gid: int, **kwargs: object) -> None:
        super().__init__(project, **kwargs)
        self.uid, self.gid = uid, gid

    def command(self) -> list[str]:
        switch = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]
        return [*switch, "--", *super().command()]


def unused_uid() -> int:
    """A throw-away uid (and gid) that owns nothing on this machine and has no passwd entry."""
    assert shutil.which("setpriv"), "setpriv is missing: apt-get install util-linux"
    taken = {entry.split(":")[2] for entry in Path("/etc/passwd").read_text().splitlines()}
    return next(n for n in range(45000, 46000) if str(n) not in taken)


def copy_for(project: Path, uid: int, gid: int) -> Path:
    """The baked atom copied where another user may read it, its key readable by that user."""
    base = Path(tempfile.mkdtemp(prefix="atom-user-", dir="/tmp"))
    base.chmod(0o755)
    copy = base / project.name
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns("*.log", "__pycache__"))
    for path in copy.rglob("*"):
        executable = path.is_dir() or os.access(path, os.X_OK)
        path.chmod(0o755 if executable else 0o644)
    key = copy / "secrets" / "model.key"
    os.chown(key, uid, gid)
    key.chmod(0o400)
    copy.chmod(0o777)  # the launcher's output file is written there
    return copy


@dataclass
class Started:
    """nginx_run started by ``who``, the uid its servers run as, its folders."""

    who: str
    launcher: AtomLauncher
    worker_uid: int
    worker_gid: int
    runtime: Path
    logs: Path

    @property
    def port(self) -> int:
        return self.launcher.port

    def nginx_pids(self) -> tuple[int, list[int]]:
        """nginx's master and its workers."""
        master = int((self.runtime / "nginx.pid").read_text())
        return master, [pid for pid in process_group(master) if pid != master]

    def log(self) -> str:
        """The atom's log file and the launcher's output."""
        return (self.logs / "atom" / "atom.log").read_text() + self.launcher.output.read_text()


@pytest.fixture(scope="module", params=["root", "plain user"])
def started(request: pytest.FixtureRequest, default_atom: Path) -> Iterator[Started]:
    """nginx_run.py with 2 workers, started as root (servers as ATOM_WORKER_USER's default,
    nobody) or as a plain user, 256 MiB of bodies on disk at most."""
    nginx_binary()
    assert os.geteuid() == 0, "this lane starts the launcher as root and as another user"
    runtime = Path(tempfile.mkdtemp(prefix="atom-run-", dir="/tmp"))
    logs = Path(tempfile.mkdtemp(prefix="atom-logs-", dir="/tmp"))
    logs.chmod(0o777)
    env = {
        "LOG_ROOT": str(logs),
        "ATOM_RUNTIME_DIR": str(runtime),
        "ATOM_BODY_DISK_BYTES": str(DISK_BYTES),
    }
    if request.param == "root":
        nobody = pwd.getpwnam("nobody")
        uid, gid = nobody.pw_uid, nobody.pw_gid
        copy = copy_for(default_atom, uid, gid)
        launcher: AtomLauncher = SystemPythonLauncher(copy, workers=2, env=env)
    else:
        uid = gid = unused_uid()
        os.chown(runtime, uid, gid)
        copy = copy_for(default_atom, uid, gid)
        launcher = UserLauncher(copy, uid, gid, workers=2, env=env)
    try:
        with launcher:
            yield Started(request.param, launcher, uid, gid, runtime, logs)
    finally:
        for folder in (runtime, logs, copy.parent):
            shutil.rmtree(folder, ignore_errors=True)


def status_ids(pid: int) -> dict[str, list[int]]:
    """The Uid, Gid and Groups lines of a process."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {
        key: [int(x) for x in rest.split()]
        for key, _, rest in (line.partition(":") for line in lines)
        if key in ("Uid", "Gid", "Groups")
    }


def test_no_worker_runs_as_root(started: Started) -> None:
    """The servers run as ATOM_WORKER_USER (nobody) under a root launcher, with no group of
    root's, and as the launcher's user otherwise; they write the log file, which is theirs."""
    pids = started.launcher.worker_pids()
    assert len(pids) == 2
    for pid in pids.values():
        ids = status_ids(pid)
        assert ids["Uid"] == [started.worker_uid] * 4, pid
        assert ids["Gid"] == [started.worker_gid] * 4, pid
        assert ids["Groups"] == []
    _, nginx_workers = started.nginx_pids()
    nobody = pwd.getpwnam("nobody").pw_uid
    expected = nobody if started.who == "root" else started.worker_uid
    assert {process_uid(pid) for pid in nginx_workers} == {expected}
    log_file = started.logs / "atom" / "atom.log"
    assert log_file.stat().st_uid == started.worker_uid
    if started.who == "root":
        assert "the workers run as nobody (ATOM_WORKER_USER)" in started.launcher.output.read_text()


def test_nginx_errors_are_json_and_v2s_under_v2(started: Started) -> None:
    """TRACE (405), an unknown Transfer-Encoding (501) and HTTP/2.0 in a request line (505)
    get the envelope; under /v2, nginx's errors are v2's {"error": ...}."""
    v2 = f"{PREFIX}/v2/models/face"
    gzip, huge = "Transfer-Encoding: gzip", f"Content-Length: {1 << 40}"
    cases = [
        (405, False, f"TRACE {PREFIX}/detect HTTP/1.1"),
        (501, False, f"POST {PREFIX}/detect HTTP/1.1\r\n{gzip}"),
        (505, False, f"GET {PREFIX}/v1/health/ping HTTP/2.0"),
        (405, True, f"TRACE {v2} HTTP/1.1"),
        (501, True, f"POST {v2}/infer HTTP/1.1\r\n{gzip}"),
        (413, True, f"POST {v2}/infer HTTP/1.1\r\n{huge}"),
    ]
    for expected, under_v2, head in cases:
        request = f"{head}\r\nHost: a\r\n\r\n"
        status, headers, body = raw_exchange(started.port, request.encode())
        assert status == expected, (request, body)
        assert headers["content-type"] == "application/json"
        assert len(headers["x-request-id"]) == 32
        if under_v2:
            reply = json.loads(body)
            assert set(reply) == {"error"} and reply["error"], body
        else:
            assert envelope(body)["code"] == expected


def temp_bytes(started: Started) -> int:
    """Bytes of the request bodies nginx's workers hold in temporary files (unlinked, open)."""
    total = 0
    for pid in started.nginx_pids()[1]:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if "/client_body/" in os.readlink(fd):
                    total += fd.stat().st_size
    return total


def test_stalled_uploads_cannot_fill_the_disk(started: Started) -> None:
    """34 uploads of 62 MiB from 4 addresses, each stalled before its last byte: nginx takes
    3 (ATOM_BODY_DISK_BYTES of 256 MiB, 1 per address), refuses the 31 others at once with a
    429 envelope and Retry-After, its files stay within the budget, ping answers; nginx's
    lines about them hide the token in their URL."""
    sockets = []
    for n in range(UPLOADS):
        sock = socket.create_connection(("127.0.0.1", started.port), 10, (ADDRESSES[n % 4], 0))
        sock.sendall(
            f"POST {PREFIX}/detect?jwt=nsecret7 HTTP/1.1\r\nHost: a\r\n"
            f"Content-Type: application/json\r\nContent-Length: {UPLOAD_BYTES}\r\n\r\n".encode()
        )
        sockets.append(sock)
    try:
        time.sleep(0.5)
        taken, refused = [], []
        for sock in sockets:
            sock.setblocking(False)
            try:
                refused.append(sock.recv(65536))
            except BlockingIOError:
                taken.append(sock)
        assert len(taken) == LARGE_SLOTS
        for reply in refused:
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 429 ") and b"\r\nRetry-After: 1" in head
            assert envelope(body)["code"] == 429
        chunk = b"a" * MIB
        for sock in taken:
            sock.setblocking(True)
            for _ in range(UPLOAD_BYTES // MIB - 1):
                sock.sendall(chunk)
            sock.sendall(chunk[:-1])
        time.sleep(0.3)
        on_disk = temp_bytes(started)
        assert LARGE_SLOTS * (UPLOAD_BYTES - MIB) <= on_disk <= DISK_BYTES
        assert raw_exchange(started.port, ping_request(), timeout=5)[0] == 200
    finally:
        for sock in sockets:
            sock.close()
    output = started.launcher.output.read_text()
    assert 'limiting connections by zone "atom_large_bodies' in output
    assert "/detect?jwt=*** HTTP/1.1" in output and "nsecret7" not in output


def test_credentials_in_urls_are_never_logged(started: Started) -> None:
    """jwt, code and pass in the query (a value holding quotes and <), a fragment on the
    request line and URLs with fragments and odd passwords in the body: none in the log."""
    body = json.dumps(
        {
            "data": [
                "https://cb.example/done#access_token=fsecret4&token_type=bearer",
                "https://bob:usecret5\"'<x@images.example/a.jpg?w=1",
                "https://images.example/b.jpg?sessionToken=qsecret6",
            ],
            "src_type": "stream",
        }
    ).encode()
    target = f"{PREFIX}/detect?jwt=jsecret1&code=csecret2&pass=psecret3%22%27%3C&w=2"
    headers = (
        f"Host: a\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "X-Request-ID: creds\r\nConnection: close\r\n\r\n"
    )
    for line in (target, f"{PREFIX}/detect#access_token=fsecret4"):
        request = f"POST {line} HTTP/1.1\r\n{headers}".encode() + body
        status, _, reply = raw_exchange(started.port, request)
        assert status == 200, reply
    time.sleep(0.3)  # lines below WARNING are written within 0.05 s
    text = started.log()
    assert text.count("[creds]") >= 2
    for secret in SECRETS:
        assert secret not in text, secret


def test_shared_memory_of_the_workers_user_is_read(started: Started) -> None:
    """A block given to the servers' user is read; the same block of another user is not."""
    frame = np.full((48, 64, 3), 80, np.uint8)
    block = shared_memory.SharedMemory(f"atom_owner_{os.getpid()}", True, frame.nbytes)
    try:
        np.ndarray(frame.shape, np.uint8, buffer=block.buf)[:] = frame
        item = {"name": block.name.lstrip("/"), "shape": list(frame.shape), "dtype": "uint8"}
        request = json.dumps({"data": [item], "src_type": "shm"}).encode()
        head = (
            f"POST {PREFIX}/detect HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(request)}\r\nConnection: close\r\n\r\n"
        ).encode()
        path = Path("/dev/shm") / item["name"]
        os.chown(path, started.worker_uid, started.worker_gid)
        assert raw_exchange(started.port, head + request)[0] == 200
        os.chown(path, 0, 0)
        status, _, reply = raw_exchange(started.port, head + request)
        assert (status, envelope(reply)["code"]) == (400, 501)
    finally:
        block.close()
        block.unlink()


def test_a_60mb_body_reaches_a_worker(started: Started) -> None:
    """A 60 MB body goes through nginx's temporary file to a worker, whoever started it."""
    body = b'{"data": ["' + b"A" * 60_000_000 + b'"], "src_type": "base64"}'
    status, headers, reply = raw_exchange(
        started.port,
        f"POST {PREFIX}/detect HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body,
        timeout=60,
    )
    assert status == 400, reply[:300]  # the worker's answer: the base64 is no image
    assert envelope(reply)["code"] == 502
    assert headers["content-type"] == "application/json"


def test_a_key_the_workers_cannot_read_stops_a_root_launcher(default_atom: Path) -> None:
    """Started as root with a model key only root may read, nginx_run stops at once with a
    message naming the key and ATOM_WORKER_USER, before any server starts."""
    assert os.geteuid() == 0, "this case starts the launcher as root"
    copy = copy_for(default_atom, 0, 0)  # the key stays root's, mode 400
    runtime = Path(tempfile.mkdtemp(prefix="atom-run-", dir="/tmp"))
    try:
        launcher = SystemPythonLauncher(copy, workers=2, env={"ATOM_RUNTIME_DIR": str(runtime)})
        result = subprocess.run(
            launcher.command(),
            cwd=copy,
            env={**launcher.env, "LOG_ROOT": ""},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        key = copy / "secrets" / "model.key"
        assert "the workers run as nobody (ATOM_WORKER_USER" in result.stderr
        assert f"cannot use {key}" in result.stderr
        assert " started (pid " not in result.stdout + result.stderr
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
        shutil.rmtree(copy.parent, ignore_errors=True)
