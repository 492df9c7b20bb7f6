"""Shared frames: the mmap reader and shared-memory mapping (images/frames.py), the
producer's frames, their lifecycle and ShmClient (client/shm.py)."""

import gc
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import uvicorn

from {{ cookiecutter.package_name }}.api.interface import detect
from {{ cookiecutter.package_name }}.client.shm import (
    SHM_PREFIX,
    SharedFrame,
    ShmClient,
    publish_frame,
    write_mmap_frame,
)
from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.errors import VqlError
from {{ cookiecutter.package_name }}.images.frames import (
    SHM_DIR,
    MmapReader,
    ShmReader,
    open_frame,
)

from .conftest import PHOTO, make_app

ROOT = Path(__file__).parent.parent
TRACKER_WORDS = ("resource_tracker", "leaked", "Warning", "Traceback")


def our_blocks() -> set[str]:
    """Names of the shared-memory blocks this package's producers made, now in /dev/shm."""
    return {path.name for path in SHM_DIR.glob(f"{SHM_PREFIX}*")}


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python code in a fresh interpreter of the project, bounded in time."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_mmap_reader_is_thread_safe(tmp_path: Path) -> None:
    """Eight threads reading different frames of one file at once each get their own frame."""
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 255, (30 + i, 40, 3), dtype=np.uint8) for i in range(4)]
    path, position, descriptors = tmp_path / "frames.bgr", 0, []
    for frame in frames:
        descriptors.append(write_mmap_frame(path, frame, position))
        position += frame.nbytes + 7
    reader = MmapReader([str(tmp_path)], max_bytes=1 << 20, max_pixels=1 << 20)
    failures: list[int] = []

    def work(worker: int) -> None:
        for step in range(25):
            which = (worker + step) % len(frames)
            if not np.array_equal(reader.read(descriptors[which]), frames[which]):
                failures.append(which)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"position": -1}, "position must be an integer >= 0"),
        ({"height": True}, "height must be an integer >= 1"),
        ({"width": 2.5}, "width must be an integer >= 1"),
        ({"size": 0}, "size must be an integer >= 1"),
        (
            {"height": 1000, "size": 1000 * 40 * 3},
            "bytes 0..120000 are outside the file",  # its size is not told
        ),
    ],
)
def test_mmap_reader_checks_bounds(tmp_path: Path, changes: dict, message: str) -> None:
    """Every descriptor field is checked, and no byte outside the file is read."""
    descriptor = write_mmap_frame(tmp_path / "f.bgr", np.zeros((30, 40, 3), np.uint8))
    reader = MmapReader([str(tmp_path)], max_bytes=1 << 20, max_pixels=1 << 20)
    with pytest.raises(VqlError) as error:
        reader.read({**descriptor, **changes})
    assert (error.value.code, error.value.msg) == (501, message)


def test_shared_frame_lifecycle() -> None:
    """A published frame exists until close(); closing twice is fine; GC unlinks a lost one."""
    frame = np.arange(24, dtype=np.uint8).reshape(2, 4, 3)
    shared = publish_frame(frame)
    assert shared.descriptor == {
        "name": shared.name,
        "shape": [2, 4, 3],
        "dtype": "uint8",
        "order": "bgr",
    }
    assert (SHM_DIR / shared.name).exists()
    assert np.array_equal(open_frame(shared.descriptor), frame)
    shared.close()
    shared.close()
    assert not (SHM_DIR / shared.name).exists()
    lost = publish_frame(frame)
    name = lost.name
    del lost
    gc.collect()
    assert not (SHM_DIR / name).exists()


def test_open_frame_copies_the_frame() -> None:
    """The consumer's array is its own copy of the block, of any numeric dtype."""
    frame = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    with SharedFrame.publish(frame) as shared:
        copy = open_frame(json.dumps(shared.descriptor))
        assert np.array_equal(copy, frame)
        shared.write(frame * 2)
        assert np.array_equal(copy, frame)  # the producer's later writes do not show
        copy[0, 0] = 5  # and it may be changed in place


TRUNCATING_CONSUMER = """
import json, os, sys
from {{ cookiecutter.package_name }}.images.loader import ImageLoader
descriptor = json.loads(sys.argv[1])
(image,) = ImageLoader().load("shm", [descriptor])
os.truncate("/dev/shm/" + descriptor["name"], 0)  # the producer cuts its block meanwhile
print(int(image.sum()))  # what the model does next: read every pixel
"""


def test_a_block_cut_while_in_use_cannot_kill_the_consumer() -> None:
    """A producer that truncates its block after the atom loaded a frame kills nothing."""
    frame = cv2.imread(str(PHOTO))
    with SharedFrame.publish(frame, order="rgb") as shared:  # the order the atom asks for
        result = run_python(TRUNCATING_CONSUMER, json.dumps(shared.descriptor))
    assert result.returncode == 0, f"exit {result.returncode} (-7 is SIGBUS): {result.stderr}"
    assert int(result.stdout) == int(frame.sum())


def test_a_block_cut_before_the_read_is_a_400() -> None:
    """A block shorter than its descriptor when the atom reads it is refused (code 501)."""
    reader = ShmReader()
    with SharedFrame.publish(np.ones((64, 64, 3), np.uint8)) as shared:
        checked = reader.check(shared.descriptor)
        os.truncate(SHM_DIR / shared.name, 100)
        with pytest.raises(VqlError) as error:
            reader.read(checked)
    assert (error.value.code, error.value.status) == (501, 400)


@pytest.mark.parametrize("name", ["other_block", "sem.atom_x", "atom_", "atom_x\n", "../atom_x"])
def test_only_blocks_named_like_the_clients_are_read(name: str) -> None:
    """A name without the client's prefix is refused before any file is opened."""
    descriptor = {"name": name, "shape": [1, 1, 3], "dtype": "uint8"}
    with pytest.raises(VqlError, match=r"invalid shared memory block name"):
        ShmReader().read(descriptor)


def test_blocks_of_another_user_are_refused_without_their_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A block owned by another user is refused like a missing one: its size is not told."""
    with SharedFrame.publish(np.ones((64, 64, 3), np.uint8)) as shared:
        descriptor = {**shared.descriptor, "shape": [128, 128, 3]}  # larger than the block
        with pytest.raises(VqlError) as mine:
            ShmReader().read(descriptor)
        assert "holds 12288 bytes" in mine.value.msg  # the worker's own block: told
        monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 1)
        with pytest.raises(VqlError) as theirs:
            ShmReader().read(descriptor)
        with pytest.raises(VqlError) as missing:
            ShmReader().read({**descriptor, "name": "atom_no_such_block"})
    assert theirs.value.msg == missing.value.msg
    assert "12288" not in theirs.value.msg


CONSUMER = """
import json, sys
from {{ cookiecutter.package_name }}.images.loader import ImageLoader
(image,) = ImageLoader().load("shm", [json.loads(sys.argv[1])])
print(int(image.sum()))
"""


def test_consumer_process_leaves_the_block_and_warns_nothing() -> None:
    """Another process reads the block, exits silently, and the block is still there after."""
    frame = cv2.imread(str(PHOTO))
    with SharedFrame.publish(frame) as shared:
        result = run_python(CONSUMER, json.dumps(shared.descriptor))
        assert (result.returncode, result.stderr) == (0, "")
        assert int(result.stdout) == int(frame.sum())
        assert (SHM_DIR / shared.name).exists()  # the consumer's exit did not unlink it
        name = shared.name
    assert not (SHM_DIR / name).exists()


PRODUCER = """
import numpy as np
from {{ cookiecutter.package_name }}.client.shm import publish_frame
shared = publish_frame(np.ones((4, 4, 3), np.uint8))
print(shared.name)
"""


def test_producer_exiting_without_close_leaks_nothing() -> None:
    """A producer that forgets close() still unlinks its block at exit, with no warning."""
    before = our_blocks()
    result = run_python(PRODUCER)
    assert result.returncode == 0
    assert not any(word in result.stderr for word in TRACKER_WORDS), result.stderr
    name = result.stdout.strip()
    assert name.startswith(SHM_PREFIX)
    assert name not in before and not (SHM_DIR / name).exists()


def wait_until_ready(url: str, timeout: float = 10.0) -> None:
    """Poll a ready route until it answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer 200")


@pytest.fixture
def live_atom(settings: Settings) -> Iterator[str]:
    """The atom served by uvicorn on 127.0.0.1 in a thread, ready; its detect URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}{settings.atom_api_prefix}"
    app = make_app(settings, real=(detect.MODEL_NAME,))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        wait_until_ready(f"{base}/v1/health/ready")
        yield f"{base}/detect"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_shm_client_sends_frames(live_atom: str) -> None:
    """ShmClient sends frames through shared memory, reuses its blocks, and frees them."""
    photo = cv2.imread(str(PHOTO))
    seen: set[str] = set()
    with ShmClient(live_atom) as client:
        reply = client.send([photo])
        assert reply.status == 200
        assert [len(faces) for faces in reply.body["objects"]] == [1]
        first = client.block_names
        assert len(first) == 1 and (SHM_DIR / first[0]).exists()
        assert client.send([photo], threshold=1.0).body["objects"] == [[]]
        assert client.block_names == first  # same size: same block
        small = np.zeros((32, 32, 3), np.uint8)
        assert client.send([small, photo]).body["objects"][0] == []
        assert len(client.block_names) == 2
        seen.update(first, client.block_names)
        reply = client.post({"data": [], "src_type": "stream"})
        assert (reply.status, reply.body["objects"]) == (200, [])
        assert client.post({"data": [], "src_type": "ftp"}).status == 422
    assert client.block_names == []
    assert not any((SHM_DIR / name).exists() for name in seen)  # every block unlinked


@pytest.mark.parametrize("page", ["docs/protocols.md", "docs/protocols.zh-CN.md"])
def test_docs_shm_example_runs(
    live_atom: str, page: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The ShmClient example of the protocol pages, pointed at a live atom, prints one face."""
    text = (ROOT / page).read_text(encoding="utf-8")
    (code,) = [
        block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "ShmClient(" in block
    ]
    code = re.sub(r"http://127\.0\.0\.1:\d+[^\"]*/detect", live_atom, code)
    monkeypatch.chdir(ROOT)
    exec(compile(code, page, "exec"), {})
    status, objects = capsys.readouterr().out.split(" ", 1)
    assert status == "200"
    assert objects.startswith("[[{") and objects.count("'label': 'face'") == 1
