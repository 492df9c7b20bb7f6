"""The image pipeline (images/, and lib.load_image's call): same pixels from every source,
formats, limits, memory."""

import base64
import errno
import logging
import os
import struct
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from {{ cookiecutter.package_name }}.client.shm import SharedFrame, write_mmap_frame
from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.errors import VqlError
from {{ cookiecutter.package_name }}.images.fetch import AddressPolicy
from {{ cookiecutter.package_name }}.images.header import read_header
from {{ cookiecutter.package_name }}.images.loader import ImageLoader
from {{ cookiecutter.package_name }}.lib.load_image import load_image

from .conftest import PHOTO
from .stub_http import Stub, serve_stub

MIB = 1024 * 1024
REQUESTS_LOGGER = "{{ cookiecutter.package_name }}.http_client"


def b64(raw: bytes) -> str:
    """Base64 text of bytes."""
    return base64.b64encode(raw).decode()


def encode(image: np.ndarray, ext: str, *params: int) -> bytes:
    """An array encoded by OpenCV."""
    ok, buffer = cv2.imencode(ext, image, list(params))
    assert ok
    return buffer.tobytes()


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """A local root holding the photo, and an mmap root."""
    local_root, mmap_root = tmp_path / "images", tmp_path / "frames"
    local_root.mkdir()
    mmap_root.mkdir()
    (local_root / "photo.jpg").write_bytes(PHOTO.read_bytes())
    return local_root, mmap_root


@pytest.fixture
def loader(
    make_settings: Callable[..., Settings], roots: tuple[Path, Path]
) -> Iterator[ImageLoader]:
    """A loader allowed to read the roots and 127.0.0.1, with a 2 MiB image limit."""
    local_root, mmap_root = roots
    settings = make_settings(
        image_local_roots=str(local_root),
        image_mmap_roots=str(mmap_root),
        image_url_allowed_networks="127.0.0.1/32",
        image_max_bytes=2 * MIB,
        image_url_timeout=2,
    )
    loader = ImageLoader(settings.image_limits())
    yield loader
    loader.close()


@pytest.fixture
def stub() -> Iterator[Stub]:
    """The stub image server on 127.0.0.1."""
    with serve_stub() as running:
        yield running


def test_same_pixels_from_every_source(
    loader: ImageLoader, roots: tuple[Path, Path], stub: Stub
) -> None:
    """The photo as url, local, base64, mmap and shm decodes to the very same RGB pixels."""
    bgr = cv2.imread(str(PHOTO))
    descriptor = write_mmap_frame(roots[1] / "frame.bgr", bgr)
    with SharedFrame.publish(bgr) as shared:
        images = {
            "url": loader.load("url", [stub.url("/photo.jpg")]),
            "local": loader.load("local", [str(roots[0] / "photo.jpg")]),
            "base64": loader.load("base64", [b64(PHOTO.read_bytes())]),
            "mmap": loader.load("mmap", [descriptor]),
            "shm": loader.load("shm", [shared.descriptor]),
        }
    expected = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    for src_type, (image,) in images.items():
        assert image.dtype == np.uint8, src_type
        assert np.array_equal(image, expected), src_type


def test_bgr_without_a_copy(loader: ImageLoader) -> None:
    """bgr=True gives OpenCV's order, decoded directly, for base64 as for mmap."""
    bgr = cv2.imread(str(PHOTO))
    (decoded,) = loader.load("base64", [b64(PHOTO.read_bytes())], bgr=True)
    assert np.array_equal(decoded, bgr)


@pytest.mark.parametrize(("stored", "bgr"), [("bgr", True), ("rgb", False)])
def test_shm_frames_are_copied(loader: ImageLoader, stored: str, bgr: bool) -> None:
    """A shm frame is the atom's own copy: the producer's later writes do not reach it."""
    frame = cv2.imread(str(PHOTO))
    with SharedFrame.publish(frame, order=stored) as shared:
        (copy,) = loader.load("shm", [shared.descriptor], bgr=bgr)
        assert np.array_equal(copy, frame)
        shared.write(np.zeros_like(frame), order=stored)
        assert np.array_equal(copy, frame)
        assert copy.flags.writeable


def test_shm_in_the_other_order_is_swapped(loader: ImageLoader) -> None:
    """A frame stored as RGB (swap_rb while copying in) loads as BGR or RGB correctly."""
    bgr = cv2.imread(str(PHOTO))
    with SharedFrame(bgr.nbytes) as shared:
        shared.write(bgr, swap_rb=True)
        assert shared.descriptor["order"] == "rgb"
        (as_bgr,) = loader.load("shm", [shared.descriptor], bgr=True)
        (as_rgb,) = loader.load("shm", [shared.descriptor])
        assert np.array_equal(as_bgr, bgr)
        assert np.array_equal(as_rgb, bgr[..., ::-1])
        del as_rgb


@pytest.mark.parametrize(
    ("ext", "params", "name", "lossless"),
    [
        (".jpg", (), "JPEG", False),
        (".png", (), "PNG", True),
        (".webp", (cv2.IMWRITE_WEBP_QUALITY, 80), "WebP", False),
        (".webp", (cv2.IMWRITE_WEBP_QUALITY, 101), "WebP", True),
        (".bmp", (), "BMP", True),
    ],
)
def test_formats(loader: ImageLoader, ext: str, params: tuple, name: str, lossless: bool) -> None:
    """Each decoded format reports its size from the header and decodes to RGB."""
    rgb = np.random.default_rng(7).integers(0, 255, (23, 37, 3), dtype=np.uint8)
    raw = encode(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), ext, *params)
    header = read_header(raw)
    assert (header.format, header.width, header.height) == (name, 37, 23)
    (image,) = loader.load("base64", [b64(raw)])
    assert image.shape == (23, 37, 3)
    if lossless:
        assert np.array_equal(image, rgb)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def jpeg_declaring(width: int, height: int) -> bytes:
    """The photo with its frame header rewritten to declare ``width`` x ``height``."""
    raw = bytearray(PHOTO.read_bytes())
    sof = raw.index(b"\xff\xc0")
    raw[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(raw)


def bmp_declaring(width: int, height: int) -> bytes:
    """A BMP header declaring ``width`` x ``height`` (top-down) and no pixels."""
    return b"BM" + bytes(12) + struct.pack("<Iii", 40, width, -height) + bytes(28)


@pytest.mark.parametrize("make", [png_declaring, jpeg_declaring, bmp_declaring])
def test_bombs_refused_from_the_header(loader: ImageLoader, make: Callable) -> None:
    """An image declaring 30000 x 30000 pixels is refused (413) before any decoding."""
    started = time.perf_counter()
    with pytest.raises(VqlError) as error:
        loader.load("base64", [b64(make(30000, 30000))])
    assert time.perf_counter() - started < 0.5
    assert (error.value.code, error.value.status) == (501, 413)
    assert error.value.msg == (
        f"image 0: 30000 x 30000 pixels is above the limit of {4096 * 4096} (IMAGE_MAX_PIXELS)"
    )


def test_items_keep_their_order(loader: ImageLoader) -> None:
    """Items loaded in parallel come back in input order; the first bad one is named."""
    sizes = [(10 + i, 20 + 3 * i) for i in range(12)]
    items = [b64(encode(np.zeros((h, w, 3), np.uint8), ".png")) for h, w in sizes]
    assert [image.shape[:2] for image in loader.load("base64", items)] == sizes
    with pytest.raises(VqlError, match=r"^image 5: invalid base64$"):
        loader.load("base64", [*items[:5], "!", *items[5:]])


def test_linker_atom_call_and_stream(photo_b64: str) -> None:
    """load_image(src_type, data) works before any app is built; stream loads nothing."""
    (image,) = load_image("base64", [photo_b64])
    assert image.shape == (512, 512, 3)
    assert load_image("stream", ["anything"]) == []
    with pytest.raises(VqlError) as error:
        load_image("ftp", ["x"])
    assert (error.value.code, error.value.status) == (504, 415)


def test_download_memory_is_bounded(
    loader: ImageLoader, stub: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    """An endless download stops at the 2 MiB limit: memory and bytes sent stay small."""
    tracemalloc.start()
    try:
        with (
            caplog.at_level(logging.INFO, logger=REQUESTS_LOGGER),  # its reply log reads nothing
            pytest.raises(VqlError) as error,
        ):
            loader.load("url", [stub.url("/endless")])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (error.value.code, error.value.status) == (503, 413)
    assert "body=<streamed, application/octet-stream>" in caplog.text
    assert peak < 8 * MIB
    assert stub.sent["/endless"] < 64 * MIB  # of the 256 MiB it would send


def test_large_local_file_is_not_read(loader: ImageLoader, roots: tuple[Path, Path]) -> None:
    """A 1 GiB (sparse) file is refused from its size, without reading it."""
    big = roots[0] / "big.jpg"
    with big.open("wb") as file:
        file.truncate(1024 * MIB)
    tracemalloc.start()
    try:
        with pytest.raises(VqlError) as error:
            loader.load("local", [str(big)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.value.msg == (
        f"image 0: {1024 * MIB} bytes is above the limit of {2 * MIB} (IMAGE_MAX_BYTES)"
    )
    assert peak < MIB


def test_local_fifo_is_refused_at_once(loader: ImageLoader, roots: tuple[Path, Path]) -> None:
    """A FIFO under the root is refused without blocking on it."""
    fifo = roots[0] / "pipe.jpg"
    os.mkfifo(fifo)
    with pytest.raises(VqlError, match=r"^image 0: not a regular file$"):
        loader.load("local", [str(fifo)])


def test_a_path_swapped_while_resolved_is_a_400(
    loader: ImageLoader, roots: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A symlink replaced by a file between its lstat and its readlink is refused, not a 500."""
    link = roots[0] / "swapped"
    link.symlink_to(roots[0])
    real_readlink = os.readlink

    def swapped(path: object, *args: object, **kwargs: object) -> str:
        if os.fspath(path) == str(link):  # it is a regular file by now
            raise OSError(errno.EINVAL, "Invalid argument", str(link))
        return real_readlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "readlink", swapped)
    with pytest.raises(VqlError) as error:
        loader.load("local", [str(link / "photo.jpg")])
    assert (error.value.code, error.value.status) == (501, 400)
    assert error.value.msg == "image 0: the path cannot be resolved"


def test_unreachable_url(loader: ImageLoader) -> None:
    """A refused connection is retried, then reported as code 503 naming the item."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(VqlError, match=r"^image 0: cannot connect to the URL's host$"):
        loader.load("url", [f"http://127.0.0.1:{port}/a.jpg"])


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1%1", False),
        ("fd00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8 (how an IPv6-only cluster reaches it)
        ("64:ff9b:1::a00:1", False),  # local-use NAT64
        ("::7f00:1", False),  # IPv4-compatible (deprecated)
        ("::808:808", False),
        ("::ffff:0:7f00:1", False),  # IPv4-translated
        ("::ffff:0:808:808", False),
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
        ("2002:808:808::1", True),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
    ],
)
def test_address_policy(address: str, allowed: bool) -> None:
    """Only public addresses pass, IPv6 forms carrying an IPv4 address judged by it, unless a
    network is allowed."""
    assert AddressPolicy().allows(address) is allowed
    assert AddressPolicy(["0.0.0.0/0", "::/0"]).allows(address) is True
