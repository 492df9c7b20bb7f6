"""The worker's memory account (memory.py): images per request, every door per worker,
checked before allocating."""

import base64
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator

import anyio
import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.api import Router
from {{ cookiecutter.package_name }}.api.calls import predict
from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.errors import VqlError
from {{ cookiecutter.package_name }}.images import loader as loader_module
from {{ cookiecutter.package_name }}.images.limits import ImageLimits
from {{ cookiecutter.package_name }}.images.loader import ImageLoader
from {{ cookiecutter.package_name }}.images.video import FRAMES_HELD, open_video
from {{ cookiecutter.package_name }}.memory import MemoryAccount

from .conftest import make_app, wait_ready
from .videos import shaded_frames, write_video

MIB = 1 << 20


def png(width: int, height: int) -> str:
    """A black PNG of that size, base64: a few KB that decode to width x height x 3 bytes."""
    ok, data = cv2.imencode(".png", np.zeros((height, width, 3), np.uint8))
    assert ok
    return base64.b64encode(data.tobytes()).decode()


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Records the number of decodes in flight at each decode (cv2.imdecode, slowed)."""
    seen: list[int] = []
    running = [0]
    lock = threading.Lock()
    real = cv2.imdecode

    def counted(*args: object) -> np.ndarray:
        with lock:
            running[0] += 1
            seen.append(running[0])
        try:
            time.sleep(0.02)
            return real(*args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(loader_module.cv2, "imdecode", counted)
    yield seen


def test_the_request_of_the_issue_is_refused_before_decoding(decodes: list[int]) -> None:
    """Eight 16-megapixel PNGs (384 MiB once decoded) are refused at once with the defaults."""
    items = [png(4000, 4000)] * 8
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(VqlError) as error:
            ImageLoader().load("base64", items)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (error.value.code, error.value.status) == (501, 413)
    assert error.value.msg == (
        "the images decode to 366.2 MiB, above the limit of 256.0 MiB per request"
        " (IMAGE_MAX_DECODED_BYTES)"
    )
    assert decodes == []
    assert time.monotonic() - started < 1.0
    assert peak < 8 * MIB


def test_the_sum_counts_every_source(make_settings: Callable[..., Settings], tmp_path) -> None:
    """Frames from files count like encoded images: 3 frames of 1 MiB do not fit in 2 MiB."""
    settings = make_settings(image_max_decoded_bytes=2 * MIB, image_mmap_roots=str(tmp_path))
    frame = np.zeros((512, 682, 3), np.uint8)  # 1 MiB
    path = tmp_path / "frames.bgr"
    path.write_bytes(frame.tobytes())
    item = {"path": str(path), "position": 0, "size": frame.nbytes, "height": 512, "width": 682}
    loader = ImageLoader(settings.image_limits())
    assert len(loader.load("mmap", [item, item])) == 2
    with pytest.raises(VqlError, match="IMAGE_MAX_DECODED_BYTES") as error:
        loader.load("mmap", [item] * 3)
    assert error.value.status == 413


def test_a_full_worker_waits_then_answers_503() -> None:
    """Images held by one request leave no room: the next waits, then gets 503 (code 511)."""
    loader = ImageLoader(ImageLimits(max_decoded_bytes=MIB), MemoryAccount(MIB, wait=0.3))
    item = png(500, 500)  # 750,000 bytes decoded
    (held,) = loader.load("base64", [item])
    started = time.monotonic()
    with pytest.raises(VqlError) as error:
        loader.load("base64", [item])
    took = time.monotonic() - started
    assert 0.3 <= took < 3.0
    assert (error.value.code, error.value.status) == (511, 503)
    assert error.value.headers == {"Retry-After": "1"}
    assert "ATOM_MEMORY_BYTES" in error.value.msg
    del held  # its share goes back when the array is freed
    assert loader.account.in_use == 0
    assert loader.load("base64", [item])[0].shape == (500, 500, 3)


def test_a_waiting_request_goes_on_when_room_is_made() -> None:
    """A request waiting for room is served as soon as another request's images are freed."""
    loader = ImageLoader(ImageLimits(max_decoded_bytes=MIB), MemoryAccount(MIB, wait=5))
    item = png(500, 500)
    held = loader.load("base64", [item])
    threading.Timer(0.2, held.clear).start()
    started = time.monotonic()
    assert loader.load("base64", [item])[0].shape == (500, 500, 3)
    assert 0.1 < time.monotonic() - started < 2.0


def test_a_failed_request_gives_its_share_back() -> None:
    """When an item fails to decode, the shares of the request's other items are returned."""
    loader = ImageLoader()
    corrupt = base64.b64encode(base64.b64decode(png(300, 300))[:-40]).decode()
    with pytest.raises(VqlError, match=r"^image 1: corrupt or truncated PNG"):
        loader.load("base64", [png(300, 300), corrupt, png(300, 300)])
    assert loader.account.in_use == 0


def test_decodes_at_once_are_bounded(decodes: list[int]) -> None:
    """With IMAGE_MAX_DECODES=1, eight items and two requests decode one at a time."""
    loader = ImageLoader(ImageLimits(max_decodes=1))
    items = [png(64, 48)] * 8
    other = threading.Thread(target=loader.load, args=("base64", items))
    other.start()
    loader.load("base64", items)
    other.join(10)
    assert len(decodes) == 16
    assert max(decodes) == 1


def test_detect_answers_413_and_keeps_serving(settings: Settings) -> None:
    """Through the route: the over-budget request gets the envelope, the next one is served."""
    prefix = settings.atom_api_prefix
    with TestClient(make_app(settings)) as client:
        wait_ready(client, prefix)
        big = {"data": [png(4000, 4000)] * 8, "src_type": "base64"}
        reply = client.post(f"{prefix}/detect", json=big)
        assert (reply.status_code, reply.json()["code"]) == (413, 501)
        small = {"data": [png(64, 48)], "src_type": "base64"}
        assert client.post(f"{prefix}/detect", json=small).json()["objects"] == [[]]


def settles_to_zero(account: MemoryAccount, timeout: float = 5.0) -> bool:
    """True once nothing is held (the reply can reach the client a moment before the
    request's last frames, and its images, are gone)."""
    deadline = time.monotonic() + timeout
    while account.in_use and time.monotonic() < deadline:
        time.sleep(0.01)
    return account.in_use == 0


def test_a_body_above_the_account_is_413_and_a_busy_worker_503(
    make_settings: Callable[..., Settings],
) -> None:
    """A body is held from the account (twice its size) before it is read: above the whole
    account 413, above what is free now 503 with Retry-After; nothing stays held after."""
    settings = make_settings(atom_memory_bytes=16 * MIB)
    prefix = settings.atom_api_prefix
    with TestClient(make_app(settings)) as client:
        wait_ready(client, prefix)
        account = client.app.state.memory
        body = {"data": [png(64, 48)], "src_type": "base64", "pad": "x" * (9 * MIB)}
        reply = client.post(f"{prefix}/detect", json=body)
        assert (reply.status_code, reply.json()["code"]) == (413, 501)
        assert "ATOM_MEMORY_BYTES" in reply.json()["msg"]
        with account.take(12 * MIB, "another request"):
            body["pad"] = "x" * (3 * MIB)
            reply = client.post(f"{prefix}/detect", json=body)
            assert (reply.status_code, reply.json()["code"]) == (503, 511)
            assert reply.headers["retry-after"] == "1"
        del body["pad"]
        assert client.post(f"{prefix}/detect", json=body).json()["objects"] == [[]]
        assert settles_to_zero(account)


def test_a_body_is_held_while_its_route_runs(make_settings: Callable[..., Settings]) -> None:
    """The body's share (twice its length) is held from before the route runs until the
    request ends, then given back."""
    seen: list[int] = []
    router = Router()

    @router.post("/held")
    async def held(body: dict) -> dict:
        seen.append(client.app.state.memory.in_use)
        return {}

    settings = make_settings()
    app = make_app(settings)
    app.include_router(router, prefix="/m")
    payload = b'{"pad": "' + b"x" * 100_000 + b'"}'
    with TestClient(app) as client:
        headers = {"Content-Type": "application/json"}
        reply = client.post("/m/held", content=payload, headers=headers)
        assert reply.status_code == 200
        assert seen[0] >= 2 * len(payload)
        assert settles_to_zero(client.app.state.memory)


def test_v2_bytes_images_draw_from_the_account(make_settings: Callable[..., Settings]) -> None:
    """v2 BYTES images are decoded by the loader, within the account: 44 PNGs of 16
    megapixels in one request are refused before any is decoded, with v2's error body."""
    settings = make_settings(atom_memory_bytes=64 * MIB)
    with TestClient(make_app(settings)) as client:
        wait_ready(client, settings.atom_api_prefix)
        tensor = {
            "name": "image",
            "datatype": "BYTES",
            "shape": [44],
            "data": [png(4096, 4096)] * 44,
        }
        reply = client.post("/v2/models/face/infer", json={"inputs": [tensor]})
        assert reply.status_code == 413
        assert set(reply.json()) == {"error"}
        assert "IMAGE_MAX_DECODED_BYTES" in reply.json()["error"]
        tensor.update(shape=[3], data=[png(1600, 1600)] * 3)  # 22 MiB: within the images' limit
        reply = client.post("/v2/models/face/infer", json={"inputs": [tensor]})
        assert reply.status_code == 413
        assert "ATOM_MEMORY_BYTES" in reply.json()["error"]
        tensor.update(shape=[1], data=[png(64, 48)])
        assert client.post("/v2/models/face/infer", json={"inputs": [tensor]}).status_code == 200
        assert settles_to_zero(client.app.state.memory)


def test_the_model_working_set_is_held_while_it_runs() -> None:
    """``predict`` holds the model's declared working set from the request's account, and
    refuses a call that would not fit (413) without calling the model."""

    class Model:
        calls = 0

        def predict_batch(self, items: list, factor: int) -> list:
            Model.calls += 1
            held.append(account.in_use)
            return [item * factor for item in items]

        def memory_estimate(self, items: list) -> int:
            return len(items) * MIB

    held: list[int] = []
    account = MemoryAccount(4 * MIB)

    async def call(count: int) -> list:
        with account.request():
            return await predict(Model(), list(range(count)), 2)

    assert anyio.run(call, 3) == [0, 2, 4]
    assert held == [3 * MIB]
    with pytest.raises(VqlError) as error:
        anyio.run(call, 5)
    assert error.value.status == 413
    assert "the model's working set" in error.value.msg
    assert (Model.calls, account.in_use) == (1, 0)


def test_a_video_holds_its_frames_until_closed(tmp_path) -> None:
    """An opened video holds FRAMES_HELD decoded frames from the account until it is closed;
    one that would not fit is refused before a frame is decoded."""
    path = write_video(tmp_path / "clip.avi", shaded_frames([0, 0], size=(480, 640)))
    frames = FRAMES_HELD * 480 * 640 * 3
    loader = ImageLoader(ImageLimits(local_roots=(str(tmp_path),)), MemoryAccount(16 * MIB))
    with open_video(loader, "local", str(path)) as video:
        assert loader.account.in_use == frames
        assert len(list(video.frames())) == 2
    assert loader.account.in_use == 0
    small = ImageLoader(ImageLimits(local_roots=(str(tmp_path),)), MemoryAccount(frames - 1))
    with pytest.raises(VqlError, match=r"^video: the video's frames would take") as error:
        open_video(small, "local", str(path))
    assert error.value.status == 413


def test_an_image_kept_after_its_request_stays_counted() -> None:
    """What a request held only for its work goes back when it ends; an image still alive
    after it (a cycle, a cache) keeps its share until it is freed."""
    account = MemoryAccount(64 * MIB)
    loader = ImageLoader(ImageLimits(), account)
    with account.request():
        account.take(MIB, "a buffer")
        (image,) = loader.load("base64", [png(500, 500)])
    assert account.in_use == 500 * 500 * 3
    del image
    assert account.in_use == 0
