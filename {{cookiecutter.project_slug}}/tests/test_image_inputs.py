"""The detect route with every src_type: good items, and each bad input of issue 4.

Each bad case sends a good item then the bad one, expects the exact status and
envelope naming item 1, then checks that a good request of the same src_type still
succeeds (with a small blank image, to keep the suite fast).
"""

import base64
import json
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.client.shm import SharedFrame, write_mmap_frame
from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.images.fetch import BLOCKED_MSG

from .conftest import PHOTO, make_app, wait_ready
from .stub_http import Stub, serve_stub

MIB = 1024 * 1024
MAX_BYTES = 2 * MIB
PHOTO_BYTES = PHOTO.read_bytes()
RAW_SIZE = 512 * 512 * 3
SRC_TYPES = ["url", "local", "base64", "mmap", "shm"]
BLANK = np.zeros((48, 64, 3), np.uint8)  # no object, for the real model and the fake
BLANK_PNG = cv2.imencode(".png", BLANK)[1].tobytes()


def b64(raw: bytes) -> str:
    """Base64 text of bytes."""
    return base64.b64encode(raw).decode()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes(1 + 3 * 16) * 16)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@dataclass
class Inputs:
    """A ready atom client and one good source of the sample photo per src_type."""

    client: TestClient
    prefix: str
    stub: Stub
    local_root: Path
    mmap_descriptor: dict[str, Any]
    shared: SharedFrame
    small_block: SharedFrame
    blanks: dict[str, Any]

    def good(self, src_type: str) -> Any:
        """The sample photo as an item of ``src_type``."""
        return {
            "url": lambda: self.stub.url("/photo.jpg"),
            "local": lambda: str(self.local_root / "photo.jpg"),
            "base64": lambda: b64(PHOTO_BYTES),
            "mmap": lambda: self.mmap_descriptor,
            "shm": lambda: self.shared.descriptor,
        }[src_type]()

    def detect(self, src_type: str, data: list) -> tuple[int, dict]:
        """POST to detect; return status and JSON body."""
        response = self.client.post(
            f"{self.prefix}/detect", json={"data": data, "src_type": src_type}
        )
        return response.status_code, response.json()

    def assert_still_serves(self, src_type: str) -> None:
        """A good request of ``src_type`` (a blank image) succeeds."""
        status, body = self.detect(src_type, [self.blanks[src_type]])
        assert (status, body["code"], body["msg"], body["objects"]) == (200, 200, "", [[]])


@pytest.fixture
def inputs(tmp_path: Path, make_settings: Callable[..., Settings]) -> Iterator[Inputs]:
    """An atom that may read loopback URLs, files under two roots, and shared memory."""
    local_root, mmap_root, outside = (tmp_path / name for name in ("images", "frames", "out"))
    for folder in (local_root, mmap_root, outside):
        folder.mkdir()
    shutil.copy(PHOTO, local_root / "photo.jpg")
    (local_root / "blank.png").write_bytes(BLANK_PNG)
    shutil.copy(PHOTO, outside / "secret.jpg")
    (local_root / "escape.jpg").symlink_to(outside / "secret.jpg")
    frame = cv2.imread(str(PHOTO))
    settings = make_settings(
        image_local_roots=str(local_root),
        image_mmap_roots=str(mmap_root),
        image_url_allowed_networks="127.0.0.1/32",
        image_url_timeout=1,
        image_max_bytes=MAX_BYTES,
    )
    with (
        serve_stub() as stub,
        SharedFrame.publish(frame) as shared,
        SharedFrame(4096) as small_block,
        SharedFrame.publish(BLANK) as blank_block,
        TestClient(make_app(settings)) as client,
    ):
        wait_ready(client, settings.atom_api_prefix)
        blanks = {
            "url": stub.url("/blank.png"),
            "local": str(local_root / "blank.png"),
            "base64": b64(BLANK_PNG),
            "mmap": write_mmap_frame(mmap_root / "blank.bgr", BLANK),
            "shm": blank_block.descriptor,
        }
        yield Inputs(
            client=client,
            prefix=settings.atom_api_prefix,
            stub=stub,
            local_root=local_root,
            mmap_descriptor=write_mmap_frame(mmap_root / "frame.bgr", frame),
            shared=shared,
            small_block=small_block,
            blanks=blanks,
        )


def mmap_with(inputs: Inputs, **changes: Any) -> dict[str, Any]:
    """The good mmap descriptor with some fields changed or removed (value None)."""
    descriptor = {**inputs.mmap_descriptor, **changes}
    return {key: value for key, value in descriptor.items() if value is not None}


def shm_with(inputs: Inputs, **changes: Any) -> dict[str, Any]:
    """The good shm descriptor with some fields changed."""
    return {**inputs.shared.descriptor, **changes}


BOMB = f"30000 x 30000 pixels is above the limit of {4096 * 4096} (IMAGE_MAX_PIXELS)"
BAD_CASES: dict[str, tuple[str, Callable[[Inputs], Any], tuple[int, int, str]]] = {
    "base64-invalid": ("base64", lambda _: "%%%not base64%%%", (400, 501, "invalid base64")),
    "base64-not-an-image": (
        "base64",
        lambda _: b64(b"plain text"),
        (400, 502, "not a JPEG, PNG, WebP or BMP image (10 bytes)"),
    ),
    "base64-truncated-jpeg": (
        "base64",
        lambda _: b64(PHOTO_BYTES[: len(PHOTO_BYTES) // 2]),
        (400, 502, f"corrupt or truncated JPEG image ({len(PHOTO_BYTES) // 2} bytes)"),
    ),
    "base64-zero-bytes": ("base64", lambda _: "", (400, 501, "empty image")),
    "base64-png-bomb": ("base64", lambda _: b64(png_declaring(30000, 30000)), (413, 501, BOMB)),
    "url-404": ("url", lambda i: i.stub.url("/missing"), (400, 503, "the URL answered HTTP 404")),
    "url-html": (
        "url",
        lambda i: i.stub.url("/page.html"),
        (400, 503, "the URL answered text/html, not an image"),
    ),
    "url-slow": (
        "url",
        lambda i: i.stub.url("/slow"),
        (400, 503, "the download took more than 1 s (IMAGE_URL_TIMEOUT)"),
    ),
    "url-oversized-stream": (
        "url",
        lambda i: i.stub.url("/endless"),
        (413, 503, f"the URL's body is above {MAX_BYTES} bytes (IMAGE_MAX_BYTES)"),
    ),
    "url-oversized-declared": (
        "url",
        lambda i: i.stub.url("/huge"),
        (413, 503, f"the URL's body is above {MAX_BYTES} bytes (IMAGE_MAX_BYTES)"),
    ),
    "url-redirect-to-private": (
        "url",
        lambda i: i.stub.url("/to-private"),
        (400, 503, BLOCKED_MSG),
    ),
    "url-redirect-to-file": (
        "url",
        lambda i: i.stub.url("/to-file"),
        (400, 503, "redirected to a 'file' URL, refused"),
    ),
    "url-file-scheme": (
        "url",
        lambda _: "file:///etc/passwd",
        (415, 504, "URL scheme 'file' is not supported (http, https)"),
    ),
    "local-traversal": (
        "local",
        lambda i: f"{i.local_root}/../out/secret.jpg",
        (400, 501, "the path is outside IMAGE_LOCAL_ROOTS"),
    ),
    "local-symlink-escape": (
        "local",
        lambda i: str(i.local_root / "escape.jpg"),
        (400, 501, "the path is outside IMAGE_LOCAL_ROOTS"),
    ),
    "local-missing": (
        "local",
        lambda i: str(i.local_root / "nope.jpg"),
        (400, 501, "no such file"),
    ),
    "local-relative": ("local", lambda _: "photo.jpg", (400, 501, "the path must be absolute")),
    "mmap-out-of-bounds": (
        "mmap",
        lambda i: mmap_with(i, position=16),
        (400, 501, f"bytes 16..{16 + RAW_SIZE} are outside the file"),
    ),
    "mmap-size-mismatch": (
        "mmap",
        lambda i: mmap_with(i, size=100),
        (400, 501, f"size 100 is not height x width x 3 = {RAW_SIZE}"),
    ),
    "mmap-missing-key": (
        "mmap",
        lambda i: mmap_with(i, width=None),
        (400, 505, "the mmap descriptor lacks 'width'"),
    ),
    "mmap-outside-roots": (
        "mmap",
        lambda i: mmap_with(i, path="/etc/passwd"),
        (400, 501, "the path is outside IMAGE_MMAP_ROOTS"),
    ),
    "mmap-bad-json": (
        "mmap",
        lambda _: "{path:",
        (400, 501, "the mmap descriptor is not valid JSON"),
    ),
    "shm-missing-block": (
        "shm",
        lambda i: shm_with(i, name="atom_no_such_block"),
        (400, 501, "no shared memory block of the atom's user by that name"),
    ),
    "shm-block-smaller-than-shape": (
        "shm",
        lambda i: shm_with(i, name=i.small_block.name),
        (400, 501, f"the shared memory block holds 4096 bytes, its shape needs {RAW_SIZE}"),
    ),
    "shm-name-traversal": (
        "shm",
        lambda i: shm_with(i, name="../etc/passwd"),
        (400, 501, "invalid shared memory block name (it must start with atom_)"),
    ),
    "shm-not-the-clients": (
        "shm",
        lambda i: shm_with(i, name="other_service_block"),
        (400, 501, "invalid shared memory block name (it must start with atom_)"),
    ),
    "shm-object-dtype": (
        "shm",
        lambda i: shm_with(i, dtype="object"),
        (415, 504, "dtype object is not supported"),
    ),
    "shm-float-frame": (
        "shm",
        lambda i: shm_with(i, dtype="float32", shape=[256, 256, 3]),
        (415, 504, "frames must be uint8 height x width x 3, not float32 256x256x3"),
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input(inputs: Inputs, case: str) -> None:
    """A bad item gets its exact status and envelope naming it, and the atom keeps serving."""
    src_type, make_item, (status, code, msg) = BAD_CASES[case]
    reply = inputs.detect(src_type, [inputs.good(src_type), make_item(inputs)])
    assert reply == (status, {"code": code, "msg": f"image 1: {msg}", "data": None})
    inputs.assert_still_serves(src_type)


def test_redirect_to_private_never_connects(inputs: Inputs) -> None:
    """The refused redirect target is not contacted, and a redirect inside the rules works."""
    status, _ = inputs.detect("url", [inputs.stub.url("/to-private")])
    assert status == 400
    assert inputs.stub.hits == {"/to-private": 1}
    status, body = inputs.detect("url", [inputs.stub.url("/to-photo")])
    assert (status, [len(objects) for objects in body["objects"]]) == (200, [1])


def test_same_photo_same_pixels(inputs: Inputs) -> None:
    """The photo sent as url, local, base64, mmap or shm reaches the model as the same RGB image."""
    replies = {src_type: inputs.detect(src_type, [inputs.good(src_type)]) for src_type in SRC_TYPES}
    assert {src_type: status for src_type, (status, _) in replies.items()} == dict.fromkeys(
        SRC_TYPES, 200
    )
    objects = [body["objects"] for _, body in replies.values()]
    assert all(found == objects[0] for found in objects)
    assert [len(faces) for faces in objects[0]] == [1]


def test_descriptors_as_json_text(inputs: Inputs) -> None:
    """mmap and shm descriptors may also be sent as JSON strings (linker_atom's form)."""
    for src_type in ("mmap", "shm"):
        status, body = inputs.detect(src_type, [json.dumps(inputs.blanks[src_type])])
        assert (status, body["objects"]) == (200, [[]])


def test_body_above_the_limit(make_settings: Callable[..., Settings]) -> None:
    """A body above ATOM_MAX_BODY_BYTES is 413 with the envelope; a small one still works."""
    settings = make_settings(atom_max_body_bytes=64 * 1024)
    prefix = settings.atom_api_prefix
    with TestClient(make_app(settings)) as client:
        wait_ready(client, prefix)
        big = {"data": [b64(bytes(100 * 1024))], "src_type": "base64"}
        response = client.post(f"{prefix}/detect", json=big)
        assert (response.status_code, response.json()) == (
            413,
            {"code": 413, "msg": "Request Entity Too Large (limit 65536 bytes)", "data": None},
        )
        good = {"data": [b64(BLANK_PNG)], "src_type": "base64"}
        assert client.post(f"{prefix}/detect", json=good).json()["objects"] == [[]]


def test_private_address_refused_when_blocked(make_settings: Callable[..., Settings]) -> None:
    """With the default settings a loopback URL is refused before any connection is made."""
    settings = make_settings()
    prefix = settings.atom_api_prefix
    with serve_stub() as stub, TestClient(make_app(settings)) as client:
        wait_ready(client, prefix)
        for url in (
            stub.url("/photo.jpg"),
            stub.url("/photo.jpg").replace("127.0.0.1", "localhost"),
        ):
            response = client.post(f"{prefix}/detect", json={"data": [url], "src_type": "url"})
            assert (response.status_code, response.json()) == (
                400,
                {"code": 503, "msg": f"image 0: {BLOCKED_MSG}", "data": None},
            )
        assert stub.hits == {}
        good = {"data": [b64(BLANK_PNG)], "src_type": "base64"}
        assert client.post(f"{prefix}/detect", json=good).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"image_url_block_private": False}, (200, "")),
        (
            {"image_url_block_private": False, "image_url_hosts": "images.example,*.cdn.example"},
            (400, "image 0: the URL's host is not in IMAGE_URL_HOSTS"),
        ),
        (
            {"image_url_block_private": False, "image_url_hosts": "127.0.0.1"},
            (200, ""),
        ),
    ],
)
def test_url_switches(
    make_settings: Callable[..., Settings], overrides: dict, expected: tuple
) -> None:
    """The block switch turned off allows loopback; the host allow-list applies on its own."""
    settings = make_settings(**overrides)
    prefix = settings.atom_api_prefix
    with serve_stub() as stub, TestClient(make_app(settings)) as client:
        wait_ready(client, prefix)
        body = {"data": [stub.url("/blank.png")], "src_type": "url"}
        response = client.post(f"{prefix}/detect", json=body)
    assert (response.status_code, response.json()["msg"]) == expected


def test_local_is_off_without_roots(client: TestClient, prefix: str) -> None:
    """With IMAGE_LOCAL_ROOTS unset, local items are refused (415, code 504)."""
    body = {"data": [str(PHOTO)], "src_type": "local"}
    response = client.post(f"{prefix}/detect", json=body)
    assert (response.status_code, response.json()) == (
        415,
        {
            "code": 504,
            "msg": "image 0: reading files is disabled on this atom (set IMAGE_LOCAL_ROOTS)",
            "data": None,
        },
    )


def test_stream_loads_nothing(client: TestClient, prefix: str) -> None:
    """src_type stream loads no image and answers an empty list."""
    response = client.post(f"{prefix}/detect", json={"data": ["x"], "src_type": "stream"})
    assert (response.status_code, response.json()["objects"]) == (200, [])
