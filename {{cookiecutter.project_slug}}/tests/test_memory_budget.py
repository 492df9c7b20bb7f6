"""The worker's memory account (memory.py): images per request, every door per worker,
checked before allocating."""

import base64
import gc
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.errors import VqlError
from {{ cookiecutter.package_name }}.images import loader as loader_module
from {{ cookiecutter.package_name }}.images.limits import ImageLimits
from {{ cookiecutter.package_name }}.images.loader import ImageLoader
from {{ cookiecutter.package_name }}.memory import MemoryAccount

from .conftest import make_app, wait_ready

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
    # The wait ends with one gc.collect(), whose cost grows with every object of this test
    # process (the whole suite's modules: 0.6 s of CPU, seconds on a loaded machine), not
    # a worker's: frozen objects are left out of it.
    gc.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(VqlError) as error:
            loader.load("base64", [item])
        took = time.monotonic() - started
    finally:
        gc.unfreeze()
    assert 0.3 <= took < 3.0  # the wait, then one gc.collect()
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
