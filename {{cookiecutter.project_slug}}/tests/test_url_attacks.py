"""URL items an attacker would send: parser tricks, slow servers, slow DNS, SSRF forms."""

import base64
import socket
import threading
import time
from collections.abc import Callable, Iterator

import cv2
import numpy as np
import pytest

from {{ cookiecutter.package_name }}.config import Settings
from {{ cookiecutter.package_name }}.errors import VqlError
from {{ cookiecutter.package_name }}.images.loader import ImageLoader

from .stub_http import PHOTO, Stub, serve_stub

BLANK_PNG = cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))[1].tobytes()


@pytest.fixture
def stub() -> Iterator[Stub]:
    """The stub image server on 127.0.0.1."""
    with serve_stub() as running:
        yield running


@pytest.fixture
def make_loader(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., ImageLoader]]:
    """Loaders built from settings overrides, closed after the test."""
    made: list[ImageLoader] = []

    def make(**overrides: object) -> ImageLoader:
        made.append(ImageLoader(make_settings(**overrides).image_limits()))
        return made[-1]

    yield make
    for loader in made:
        loader.close()


def test_backslash_at_does_not_bypass_the_host_list(
    make_loader: Callable[..., ImageLoader], stub: Stub
) -> None:
    """http://127.0.0.1:P\\@allowed.test/ is refused: the host checked is the host reached."""
    loader = make_loader(image_url_hosts="allowed.test", image_url_block_private=False)
    port = stub.base.rsplit(":", 1)[1]
    for url in (
        f"http://127.0.0.1:{port}\\@allowed.test/photo.jpg",
        f"http://127.0.0.1:{port}\\\\@allowed.test/photo.jpg",
        f"http://127.0.0.1:{port}/\\@allowed.test/photo.jpg",
        f"http://allowed.test@127.0.0.1:{port}/photo.jpg",
    ):
        with pytest.raises(VqlError) as error:
            loader.load("url", [url])
        assert error.value.status == 400, url
    assert stub.hits == {}


def test_slow_headers_are_cut_at_the_deadline(
    make_loader: Callable[..., ImageLoader], stub: Stub
) -> None:
    """A server trickling its headers a byte at a time holds a fetch no longer than the timeout."""
    loader = make_loader(image_url_allowed_networks="127.0.0.1/32", image_url_timeout=1)
    started = time.monotonic()
    with pytest.raises(VqlError) as error:
        loader.load("url", [stub.url("/slow-headers")])
    assert time.monotonic() - started < 3.0  # the server would trickle for 30 s
    assert error.value.msg == "image 0: the download took more than 1 s (IMAGE_URL_TIMEOUT)"


def test_slow_dns_is_cut_at_the_deadline(
    make_loader: Callable[..., ImageLoader], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host name that takes 3 s to resolve fails at the 0.5 s deadline."""
    real = socket.getaddrinfo

    def slow(host: str, *args: object, **kwargs: object) -> list:
        if host == "slow-dns.test":
            time.sleep(3)
            raise socket.gaierror("no such host")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    for block_private in (True, False):
        loader = make_loader(image_url_timeout=0.5, image_url_block_private=block_private)
        started = time.monotonic()
        with pytest.raises(VqlError) as error:
            loader.load("url", ["http://slow-dns.test/a.jpg"])
        assert time.monotonic() - started < 2.0  # the lookup takes 3 s
        assert "IMAGE_URL_TIMEOUT" in error.value.msg


def test_slow_downloads_do_not_hold_up_other_inputs(
    make_loader: Callable[..., ImageLoader], stub: Stub
) -> None:
    """While 16 slow downloads are in flight, a two-image base64 request is served at once."""
    loader = make_loader(image_url_allowed_networks="127.0.0.1/32", image_url_timeout=3)
    url = stub.url("/slow-headers")

    def slow_request() -> None:
        with pytest.raises(VqlError):
            loader.load("url", [url] * 4)

    callers = [threading.Thread(target=slow_request) for _ in range(4)]
    for caller in callers:
        caller.start()
    time.sleep(0.3)
    item = base64.b64encode(BLANK_PNG).decode()
    started = time.monotonic()
    images = loader.load("base64", [item, item])
    elapsed = time.monotonic() - started
    for caller in callers:
        caller.join(10)
    assert [image.shape for image in images] == [(48, 64, 3)] * 2
    assert elapsed < 2.0  # the downloads hold their threads for 3 s


def test_one_request_cannot_take_every_download_thread(
    make_loader: Callable[..., ImageLoader], stub: Stub
) -> None:
    """A request of 16 slow URLs downloads 4 at a time: another request's URL is fetched at
    once, not after the slow ones."""
    loader = make_loader(image_url_allowed_networks="127.0.0.1/32", image_url_timeout=3)

    def slow_request() -> None:
        with pytest.raises(VqlError):
            loader.load("url", [stub.url("/slow-headers")] * 16)

    slow = threading.Thread(target=slow_request)
    slow.start()
    time.sleep(0.3)
    started = time.monotonic()
    (image,) = loader.load("url", [stub.url("/blank.png")])
    elapsed = time.monotonic() - started
    slow.join(10)
    assert image.shape == (48, 64, 3)
    assert elapsed < 2.0  # the slow downloads hold their threads for 3 s
    assert stub.hits["/slow-headers"] == 4  # the deadline ended the request's first four


def test_a_request_downloads_no_more_than_its_body_could_carry(
    make_loader: Callable[..., ImageLoader], stub: Stub
) -> None:
    """The downloads of one request count together against ATOM_MAX_BODY_BYTES."""
    size = len(PHOTO.read_bytes())
    loader = make_loader(
        image_url_allowed_networks="127.0.0.1/32", atom_max_body_bytes=2 * size + 1
    )
    assert len(loader.load("url", [stub.url("/photo.jpg")] * 2)) == 2
    with pytest.raises(VqlError) as error:
        loader.load("url", [stub.url("/photo.jpg")] * 3)
    assert (error.value.code, error.value.status) == (501, 413)
    assert "the request's images take more than" in error.value.msg
