"""The hostile-input lane: attacks against nginx_run.py with real nginx and two workers.

Each attack of issue 12, and those refused before it (path traversal, redirects to private
addresses, a tampered model), is sent to a baked atom behind nginx. Afterwards: no reply
was a 5xx, no worker was restarted, the workers' peak memory stayed within the budget,
nginx's memory did not follow slow uploads, and the log holds no forged line and none of
the secrets sent.
"""

import base64
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from scripts.atomctl import AtomLauncher, http, rss_kib

from .test_nginx import nginx_binary, process_group

pytestmark = pytest.mark.hostile_input

PREFIX = "/d2atom"
# A line as the atom writes it begins with its date; a forged one would too.
FORGED = "2026-01-01 00:00:00.000 ERROR 1 [forged] my_atom.api.base: admin logged in"
SECRETS = ("usecret1", "psecret2", "asecret3", "ssecret4", "ksecret5", "tsecret6")
SIGNED_URL = (
    "https://usecret1:psecret2@images.example/a.jpg?X-Amz-Signature=asecret3&sig=ssecret4"
    "&key=ksecret5&access_token=tsecret6"
)
CLIENT_TIMEOUT = 2  # ATOM_CLIENT_TIMEOUT of the lane, for the 408
MIB = 1 << 20
ACCOUNT_MIB = 384  # ATOM_MEMORY_BYTES of the lane's workers
WORKER_PEAK_MIB = ACCOUNT_MIB + 512  # peak RSS (VmHWM): the account plus the worker's own
NGINX_MIB = 64  # nginx's RSS, all processes, with 100 uploads stalled
STALLED_UPLOADS = 100
UPLOAD_BYTES = 7_500_000


def png_b64(width: int, height: int) -> str:
    """A black PNG of that size, base64: about 100 KB for 6000 x 6000."""
    ok, data = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    assert ok
    return base64.b64encode(data.tobytes()).decode()


def atom_module(project: Path, name: str) -> ModuleType:
    """A module of the baked atom's tests folder (its stub image server)."""
    spec = importlib.util.spec_from_file_location(f"atom_{name}", project / "tests" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def raw_exchange(
    port: int, data: bytes, timeout: float = 10, source: str = "127.0.0.1"
) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes from ``source``, read one reply: status, headers (lower case), body."""
    with socket.create_connection(("127.0.0.1", port), timeout, (source, 0)) as sock:
        sock.sendall(data)
        reply = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while not complete(reply):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def complete(reply: bytes) -> bool:
    """True once a reply's head and as many body bytes as its Content-Length are in."""
    head, separator, body = reply.partition(b"\r\n\r\n")
    found = re.search(rb"(?i)\r\ncontent-length: (\d+)", head)
    return bool(separator) and len(body) >= (int(found[1]) if found else 0)


def envelope(body: bytes) -> dict:
    """A reply body that must be the atom's JSON envelope."""
    value = json.loads(body)
    assert set(value) == {"code", "msg", "data"}, value
    return value


def wait_dead(pid: int, timeout: float = 5) -> None:
    """Wait until a process that is not our child is gone (or a zombie)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state == "Z":
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} still runs")


def process_uid(pid: int) -> int:
    """The real uid of a process."""
    line = next(
        x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("Uid:")
    )
    return int(line.split()[1])


def peak_rss_mib(pid: int) -> float:
    """The peak resident memory of a process (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


@dataclass
class Lane:
    """The running atom, its stub image server and folders, and every status it answered."""

    atom: AtomLauncher
    stub: object
    local_root: Path
    logs: Path
    statuses: list[tuple[str, int]] = field(default_factory=list)

    def post(self, attack: str, body: object, **headers: str) -> tuple[int, dict, object]:
        """POST a JSON body to detect; the status is recorded under ``attack``."""
        status, reply_headers, reply = http("POST", self.atom.url("/detect"), body, headers)
        self.statuses.append((attack, status))
        return status, reply_headers, reply

    def detect(self, attack: str, src_type: str, data: list) -> tuple[int, object]:
        """detect on these items; (status, body)."""
        status, _, reply = self.post(attack, {"data": data, "src_type": src_type})
        return status, reply

    def raw(
        self, attack: str, data: bytes, timeout: float = 10, source: str = "127.0.0.1"
    ) -> tuple[int, dict, bytes]:
        """Raw bytes to nginx from ``source``; the status is recorded."""
        status, headers, body = raw_exchange(self.atom.port, data, timeout, source)
        self.statuses.append((attack, status))
        return status, headers, body

    def log(self) -> str:
        """The atom's log file and the launcher's output (nginx's and the workers')."""
        log_file = self.logs / "atom" / "atom.log"
        return log_file.read_text() + "\n" + self.atom.output.read_text()


@pytest.fixture(scope="module")
def lane(default_atom: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lane]:
    """nginx_run.py with 2 workers, local and mmap roots, loopback URLs from allowed hosts."""
    nginx_binary()
    tmp = tmp_path_factory.mktemp("hostile")
    local_root, outside = tmp / "images", tmp / "outside"
    local_root.mkdir()
    outside.mkdir()
    shutil.copy(default_atom / "tests" / "data" / "astronaut.jpg", local_root / "photo.jpg")
    (outside / "secret.jpg").write_bytes(b"\xff\xd8\xff secret")
    (local_root / "escape.jpg").symlink_to(outside / "secret.jpg")
    runtime = Path(tempfile.mkdtemp(prefix="atom-run-", dir="/tmp"))
    stub_module = atom_module(default_atom, "stub_http")
    launcher = AtomLauncher(
        default_atom,
        workers=2,
        env={
            "LOG_ROOT": str(tmp / "logs"),
            "ATOM_RUNTIME_DIR": str(runtime),
            "ATOM_CLIENT_TIMEOUT": str(CLIENT_TIMEOUT),
            "IMAGE_LOCAL_ROOTS": str(local_root),
            "IMAGE_URL_HOSTS": "localhost,allowed.test",
            "IMAGE_URL_ALLOWED_NETWORKS": "127.0.0.1/32,::1/128",
            "IMAGE_URL_TIMEOUT": "1",
            "ATOM_MEMORY_BYTES": str(ACCOUNT_MIB * MIB),
        },
    )
    try:
        with stub_module.serve_stub() as stub, launcher:
            yield Lane(launcher, stub, local_root, tmp / "logs")
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.fixture(scope="module")
def pids(lane: Lane) -> dict[int, int]:
    """The worker pids once the atom is up (compared at the end)."""
    return dict(lane.atom.worker_pids())


def test_memory_bombs_are_refused_before_decoding(lane: Lane, pids: dict[int, int]) -> None:
    """64 PNGs of 36 megapixels in a 7 MB body, and 8 of 16 megapixels: 413 at once."""
    huge = png_b64(6000, 6000)
    started = time.monotonic()
    status, reply = lane.detect("64 x 36 MP", "base64", [huge] * 64)
    assert (status, reply["code"]) == (413, 501)
    assert "IMAGE_MAX_PIXELS" in reply["msg"]
    status, reply = lane.detect("8 x 16 MP", "base64", [png_b64(4000, 4000)] * 8)
    assert (status, reply["code"]) == (413, 501)
    assert "IMAGE_MAX_DECODED_BYTES" in reply["msg"]
    assert time.monotonic() - started < 10


def post_at_once(lane: Lane, attack: str, path: str, bodies: list[tuple[bytes, dict]]) -> list:
    """POST raw bodies at the same time; each (status, reply). A 503 must carry Retry-After
    (the worker was busy, not broken) and is not recorded; every other status is."""
    replies: list[tuple[int, object]] = []

    def one(data: bytes, headers: dict) -> None:
        request = urllib.request.Request(lane.atom.url(path), data, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                status, raw, retry = response.status, response.read(), None
        except urllib.error.HTTPError as error:
            status, raw, retry = error.code, error.read(), error.headers.get("retry-after")
        if status == 503:
            assert retry == "1", (attack, raw)
        else:
            lane.statuses.append((attack, status))
        replies.append((status, json.loads(raw)))

    threads = [threading.Thread(target=one, args=body) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return replies


def v2_body(inputs: list[dict], binary: bytes = b"") -> tuple[bytes, dict]:
    """A v2 infer body and its headers (binary tensors after the JSON part)."""
    document = json.dumps({"inputs": inputs}).encode()
    headers = {"Content-Type": "application/json"}
    if binary:
        headers["Inference-Header-Content-Length"] = str(len(document))
    return document + binary, headers


V2 = "/v2/models/face/infer"


def test_the_new_doors_stay_within_the_account(lane: Lane) -> None:
    """v2 BYTES images, v2 JSON parses, v2 binary pixels and endless downloads, alone and
    concurrent, draw from the workers' ATOM_MEMORY_BYTES: 413 or 503 + Retry-After, never a
    killed worker (test_after_the_attacks checks peaks and pids)."""
    bomb = {"name": "image", "datatype": "BYTES", "shape": [44], "data": [png_b64(4096, 4096)] * 44}
    ((status, reply),) = post_at_once(lane, "v2 44 PNGs", V2, [v2_body([bomb])])
    assert status == 413 and set(reply) == {"error"}, reply
    five = {**bomb, "shape": [5], "data": bomb["data"][:5]}  # 240 MiB decoded, model 1 GiB
    for status, reply in post_at_once(lane, "v2 5 PNGs x8", V2, [v2_body([five])] * 8):
        assert status in (413, 503) and set(reply) == {"error"}, reply
    empty = b'{"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ['
    empty += b"[]," * (16 * MIB // 3) + b'"x"]}]}'
    started = time.monotonic()
    ((status, reply),) = post_at_once(lane, "v2 empty arrays", V2, [(empty, {})])
    assert status == 413 and "ATOM_MEMORY_BYTES" in reply["error"], reply
    assert time.monotonic() - started < 10
    side = 1024
    pixels = {"name": "image", "datatype": "UINT8", "shape": [2, side, side, 3]}
    pixels["parameters"] = {"binary_data_size": 2 * side * side * 3}
    body = v2_body([pixels], bytes(2 * side * side * 3))
    # Bodies above 1 MB: nginx takes 6 at once from one address (ATOM_BODY_DISK_BYTES'
    # share per client), the others get its 429 with Retry-After before any worker reads them.
    statuses = {status for status, _ in post_at_once(lane, "v2 pixels x8", V2, [body] * 8)}
    assert statuses <= {200, 429, 503}, statuses
    port = lane.stub.base.rsplit(":", 1)[1]
    endless = json.dumps({"data": [f"http://localhost:{port}/endless"] * 16, "src_type": "url"})
    headers = {"Content-Type": "application/json"}
    for status, reply in post_at_once(
        lane, "16 endless x4", "/detect", [(endless.encode(), headers)] * 4
    ):
        assert status in (400, 413, 503), reply


def test_url_tricks_and_slow_servers(lane: Lane) -> None:
    """The backslash trick, a private redirect and a slow server are refused within the timeout,
    and a base64 request meanwhile is served at once."""
    port = lane.stub.base.rsplit(":", 1)[1]
    photo = f"http://localhost:{port}/photo.jpg"
    assert lane.detect("good URL", "url", [photo])[0] == 200
    status, reply = lane.detect("backslash", "url", [f"http://127.0.0.1:{port}\\@allowed.test/x"])
    assert (status, reply["code"]) == (400, 501)
    assert not any("allowed.test" in path for path in lane.stub.hits)
    status, reply = lane.detect("redirect", "url", [f"http://localhost:{port}/to-private"])
    assert (status, reply["code"]) == (400, 503)
    slow_reply: list[tuple[int, object]] = []
    slow = threading.Thread(
        target=lambda: slow_reply.append(
            lane.detect("slow headers", "url", [f"http://localhost:{port}/slow-headers"] * 20)
        )
    )
    started = time.monotonic()
    slow.start()
    time.sleep(0.2)
    assert lane.detect("base64 meanwhile", "base64", [png_b64(64, 48)] * 2)[0] == 200
    slow.join(10)
    assert time.monotonic() - started < 4
    assert slow_reply[0][0] == 400
    assert "IMAGE_URL_TIMEOUT" in slow_reply[0][1]["msg"]


def test_files_outside_the_roots_are_refused(lane: Lane) -> None:
    """Traversal and a symlink out of IMAGE_LOCAL_ROOTS are 400s; a file inside is read."""
    root = lane.local_root
    assert lane.detect("local", "local", [str(root / "photo.jpg")])[0] == 200
    for attack, path in (
        ("traversal", f"{root}/../outside/secret.jpg"),
        ("symlink", str(root / "escape.jpg")),
        ("outside", "/etc/passwd"),
    ):
        status, reply = lane.detect(attack, "local", [path])
        assert (status, reply["code"]) == (400, 501), attack
    item = {"path": "/dev/shm/x", "position": 0, "size": 3, "height": 1, "width": 1}
    assert lane.detect("mmap off", "mmap", [item])[0] == 415  # IMAGE_MMAP_ROOTS is empty


def test_shared_memory_cannot_kill_a_worker(lane: Lane) -> None:
    """A producer cutting its block while frames are read, and blocks that are not the
    client's, get 4xx replies; no worker dies."""
    frame = np.full((720, 1280, 3), 80, np.uint8)
    block = shared_memory.SharedMemory(f"atom_hostile_{os.getpid()}", True, frame.nbytes)
    other = shared_memory.SharedMemory(f"other_{os.getpid()}", True, frame.nbytes)
    try:
        np.ndarray(frame.shape, np.uint8, buffer=block.buf)[:] = frame
        name = block.name.lstrip("/")
        # "rgb": the order the atom asks for, which it used to map without any copy.
        item = {"name": name, "shape": list(frame.shape), "dtype": "uint8", "order": "rgb"}
        assert lane.detect("shm", "shm", [item])[0] == 200
        stop = threading.Event()

        def cut_and_restore() -> None:
            path = f"/dev/shm/{item['name']}"
            while not stop.is_set():
                os.truncate(path, 0)
                time.sleep(0.001)
                os.truncate(path, frame.nbytes)

        cutter = threading.Thread(target=cut_and_restore)
        cutter.start()
        try:
            for _ in range(40):
                assert lane.detect("shm cut", "shm", [item])[0] in (200, 400)
        finally:
            stop.set()
            cutter.join(5)
        theirs = {**item, "name": other.name.lstrip("/")}
        status, reply = lane.detect("not the client's", "shm", [theirs])
        assert (status, reply["code"]) == (400, 501)
    finally:
        for segment in (block, other):
            segment.close()
            segment.unlink()


def test_log_forging_and_secrets(lane: Lane) -> None:
    """A newline in the path, escape sequences, bad request ids and signed URLs in bodies."""
    forged_path = urllib.parse.quote(f"{PREFIX}/detect\n{FORGED}", safe="/")
    status, _, reply = raw_exchange(
        lane.atom.port,
        f"POST {forged_path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        "Content-Length: 2\r\nConnection: close\r\n\r\n{}".encode(),
    )
    lane.statuses.append(("newline in path", status))
    assert (status, envelope(reply)["code"]) == (404, 404)
    for body in (
        {"data": [SIGNED_URL], "src_type": "stream"},  # short: logged as sent before
        {"data": [SIGNED_URL, "p" * 400], "src_type": "stream"},
    ):
        status, _, _ = lane.post("signed URL", body, **{"X-Request-ID": "secrets"})
        assert status == 200
    status, headers, _ = lane.post(
        "bad request id", {"data": [], "src_type": "stream"}, **{"X-Request-ID": "a b<c>"}
    )
    assert status == 200
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])
    status, _, _ = lane.raw(
        "escape sequence",
        b"POST " + PREFIX.encode() + b"/detect HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
        b"Content-Type: text/plain\x1b[2J\x1b]0;owned\x07\r\nConnection: close\r\n\r\nxx",
    )
    assert status in (400, 422)


def test_nginx_errors_are_the_envelope(lane: Lane) -> None:
    """nginx's own 400, 413, 414 and 431 replies are the envelope with a request id."""
    cases = {
        400: b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        413: f"POST {PREFIX}/detect HTTP/1.1\r\nHost: a\r\nContent-Length: {1 << 40}\r\n\r\n",
        414: f"GET /{'a' * 20_000} HTTP/1.1\r\nHost: a\r\n\r\n",
        431: f"GET / HTTP/1.1\r\nHost: a\r\nX-Big: {'b' * 20_000}\r\n\r\n",
    }
    for expected, data in cases.items():
        raw = data if isinstance(data, bytes) else data.encode()
        status, headers, body = lane.raw(f"nginx {expected}", raw)
        assert (status, envelope(body)["code"]) == (expected, expected), body
        assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"])


def test_a_stalled_body_is_dropped_after_the_client_timeout(lane: Lane) -> None:
    """A body that stops coming is given up after ATOM_CLIENT_TIMEOUT: nginx resets the
    connection (reset_timedout_connection; its 408 would reach nobody)."""
    head = f"POST {PREFIX}/detect HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nxx"
    reply = b""
    with socket.create_connection(("127.0.0.1", lane.atom.port), CLIENT_TIMEOUT + 8) as sock:
        sock.sendall(head.encode())
        started = time.monotonic()
        with contextlib.suppress(ConnectionResetError):
            reply = sock.recv(65536)
        waited = time.monotonic() - started
    assert CLIENT_TIMEOUT - 0.5 < waited < CLIENT_TIMEOUT + 5
    assert reply == b""


def test_stalled_uploads_cost_nginx_no_memory(lane: Lane) -> None:
    """100 uploads of 7.5 MB stalled before their last byte (from two addresses): nginx stays
    small, takes as many as ATOM_BODY_DISK_BYTES holds (12 above 1 MB by default, 6 per
    address) and refuses the others at once (429), and the atom keeps answering."""
    master = int((Path(lane.atom.env["ATOM_RUNTIME_DIR"]) / "nginx.pid").read_text())
    sockets = [upload(lane, f"127.0.0.{2 + n % 2}") for n in range(STALLED_UPLOADS)]
    try:
        assert send_all_but_one_byte(sockets) == STALLED_UPLOADS - 12
        time.sleep(0.5)
        nginx_mib = sum(rss_kib(pid) for pid in process_group(master)) / 1024
        status, _, _ = lane.raw("ping meanwhile", ping_request(), timeout=5)
        assert status == 200
    finally:
        for sock in sockets:
            sock.close()
    assert nginx_mib < NGINX_MIB


def test_connections_above_the_per_client_limit_get_429(lane: Lane) -> None:
    """The 65th request in progress from one address is refused with 429 and the envelope
    (bodies of 9,999 bytes: held in memory, not counted against the disk)."""
    sockets = [upload(lane, "127.0.0.4", 9_999) for _ in range(64)]
    try:
        time.sleep(0.3)
        status, _, body = lane.raw("65th upload", ping_request(), timeout=5, source="127.0.0.4")
        assert (status, envelope(body)["code"]) == (429, 429)
        assert lane.raw("another address", ping_request(), timeout=5, source="127.0.0.5")[0] == 200
    finally:
        for sock in sockets:
            sock.close()


def upload(lane: Lane, source: str, length: int = UPLOAD_BYTES) -> socket.socket:
    """A connection from ``source`` that has sent the head of an upload (7.5 MB)."""
    sock = socket.create_connection(("127.0.0.1", lane.atom.port), 5, (source, 0))
    sock.sendall(
        f"POST {PREFIX}/detect HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n".encode()
    )
    return sock


def ping_request() -> bytes:
    """A GET of the ping route that closes its connection."""
    return f"GET {PREFIX}/v1/health/ping HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode()


def send_all_but_one_byte(sockets: list[socket.socket]) -> int:
    """Send each upload's body but its last byte; return how many got a reply (or were
    closed) instead."""
    chunk = b"a" * 65536
    sent = dict.fromkeys(sockets, 0)
    answered = 0
    for sock in sockets:
        sock.setblocking(False)
    deadline = time.monotonic() + 60
    while sent and time.monotonic() < deadline:
        for sock in list(sent):
            try:
                if replied(sock):
                    answered += 1
                    del sent[sock]
                    continue
                sent[sock] += sock.send(chunk[: UPLOAD_BYTES - 1 - sent[sock]])
            except BlockingIOError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                answered += 1
                del sent[sock]
                continue
            if sent[sock] >= UPLOAD_BYTES - 1:
                del sent[sock]
    assert not sent, "the uploads could not be sent within 60 s"
    return answered


def replied(sock: socket.socket) -> bool:
    """Whether a non-blocking socket has a reply waiting (or was closed)."""
    try:
        sock.recv(1024)
    except BlockingIOError:
        return False
    return True


def test_after_the_attacks(lane: Lane, pids: dict[int, int]) -> None:
    """No 5xx, no worker restarted, workers within their memory budget, a clean log."""
    assert lane.statuses, "the attacks ran first"
    assert [(attack, status) for attack, status in lane.statuses if status >= 500] == []
    assert lane.atom.worker_pids() == pids
    assert lane.atom.process is not None and lane.atom.process.poll() is None
    for pid in pids.values():
        assert peak_rss_mib(pid) < WORKER_PEAK_MIB, pid
    assert http("GET", lane.atom.url("/v1/health/ready"))[0] == 200
    time.sleep(0.2)  # lines below WARNING are written within 0.05 s
    text = lane.log()
    for secret in SECRETS:
        assert secret not in text, secret
    assert "\x1b" not in text and "\x07" not in text
    prefixes = r"(\[\w+\] )?"
    assert not re.search("^" + prefixes + re.escape(FORGED), text, re.M)


def test_nginx_500_502_and_504_are_the_envelope(
    default_atom: Path, tmp_path: Path, runtime_dir: Path
) -> None:
    """Temp files that cannot be written (500), no worker to connect to (502) and a worker
    that does not answer in time (504): nginx's replies are the envelope too."""
    env = {
        "LOG_ROOT": str(tmp_path / "logs"),
        "ATOM_RUNTIME_DIR": str(runtime_dir),
        "ATOM_PROXY_READ_TIMEOUT": "1",
    }
    body = json.dumps({"data": ["A" * 100_000], "src_type": "base64"}).encode()
    head = f"POST {PREFIX}/detect HTTP/1.1\r\nHost: a\r\nContent-Length: {len(body)}\r\n\r\n"
    with AtomLauncher(default_atom, workers=1, env=env) as launcher:
        (pid,) = launcher.worker_pids().values()
        temp = runtime_dir / "client_body"
        temp.chmod(0)  # the body (above 16 KiB) cannot go to a temporary file
        try:
            status, _, reply = raw_exchange(launcher.port, head.encode() + body)
        finally:
            temp.chmod(0o700)
        assert (status, envelope(reply)["code"]) == (500, 500)
        os.kill(pid, signal.SIGSTOP)
        try:
            status, _, reply = raw_exchange(launcher.port, ping_request())
        finally:
            os.kill(pid, signal.SIGCONT)
        assert (status, envelope(reply)["code"]) == (504, 504)
        os.kill(pid, signal.SIGKILL)
        wait_dead(pid)
        status, _, reply = raw_exchange(launcher.port, ping_request())  # before the restart
        assert (status, envelope(reply)["code"]) == (502, 502)


class PingLauncher(AtomLauncher):
    """An AtomLauncher that waits for ping only: with a tampered model, ready never comes."""

    def start(self, ready_timeout: float = 60) -> "PingLauncher":
        with self.output.open("wb") as output:
            self.process = subprocess.Popen(
                self.command(), cwd=self.project, env=self.env, stdout=output, stderr=output
            )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if http("GET", self.url("/v1/health/ping"), timeout=2)[0] == 200:
                    return self
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"no ping in {ready_timeout} s:\n{self.output.read_text()}")


def test_a_tampered_model_is_never_served(
    default_atom: Path, tmp_path: Path, runtime_dir: Path
) -> None:
    """A model file with one byte changed: ready stays 503, detect is 503, nothing crashes."""
    models = tmp_path / "models"
    shutil.copytree(default_atom / "models", models)
    sealed = models / "face.enc"
    data = bytearray(sealed.read_bytes())
    data[len(data) // 2] ^= 1
    sealed.write_bytes(bytes(data))
    env = {
        "LOG_ROOT": str(tmp_path / "logs"),
        "ATOM_RUNTIME_DIR": str(runtime_dir),
        "ATOM_MODEL_DIR": str(models),
    }
    with PingLauncher(default_atom, workers=2, env=env) as launcher:
        pids = launcher.worker_pids()
        time.sleep(1)  # the models have had their chance to load
        assert http("GET", launcher.url("/v1/health/ready"))[0] == 503
        body = {"data": [], "src_type": "base64"}
        status, _, reply = http("POST", launcher.url("/detect"), body)
        assert (status, reply["code"]) == (503, 503)
        assert launcher.worker_pids() == pids
    log = (tmp_path / "logs" / "atom" / "atom.log").read_text()
    assert "model 'face' failed to load: ChunkTamperedError" in log


if sys.platform != "linux":  # /proc, /dev/shm and setpriv
    raise RuntimeError("the hostile-input lane runs on Linux")
