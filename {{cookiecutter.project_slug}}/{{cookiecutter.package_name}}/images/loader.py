"""Turn request items into images: one RGB array per item of a request.

``ImageLoader(limits).load(src_type, data)`` returns one RGB ``uint8`` array (height x
width x 3) per item, in input order, loading the items in parallel; ``bgr=True`` gives
OpenCV's BGR order without a conversion copy. The app builds one loader from its settings
(``app.state.image_loader``); ``lib.load_image.load_image`` keeps ``linker_atom``'s call.

- url: an http(s) URL (fetch.py: scheme, host and address checks, capped download);
- local: an absolute path under IMAGE_LOCAL_ROOTS;
- base64: an encoded image, plain base64 or a ``data:image/...;base64,`` URI;
- mmap: ``{"path", "position", "size", "height", "width"}``, raw BGR bytes in a file
  under IMAGE_MMAP_ROOTS (frames.py);
- shm: ``{"name", "shape", "dtype", "order"}``, a ``uint8`` frame in a shared-memory
  block of the client (``atom_...``), copied out (frames.py);
- stream: nothing to load, returns [].

Loading goes in two steps. First every item is read and sized: downloaded (in the
loader's own pool of URL threads, so slow hosts cannot hold up other inputs, each
download bounded by IMAGE_URL_TIMEOUT from the start of the load, at most
``URL_THREADS_PER_REQUEST`` of a request at a time), read from its file,
base64-decoded, or its descriptor checked; each image counts against IMAGE_MAX_BYTES and
its header against IMAGE_MAX_PIXELS, the encoded images of a request together against
ATOM_MAX_BODY_BYTES (what its body could have carried), and each is held in the worker's
memory account (``memory.py``, ATOM_MEMORY_BYTES) before it is read, until the load
ends. Then the decoded size of all the items is checked against IMAGE_MAX_DECODED_BYTES
per request and taken from the account, and only then are they decoded, at most
IMAGE_MAX_DECODES at a time: nothing is decoded for a request that would not fit. Each
image's share goes back when its array is freed, or when its request ends.

Encoded images (url, local, base64) must be JPEG, PNG, WebP or BMP. Every failure is a
``VqlError`` whose message starts with the index of the failing item ("image 3: ..."):
501 the item cannot be read, 502 the bytes are not a decodable image, 503 the URL cannot
be fetched, 504 the format, scheme or dtype is not supported, 505 a descriptor lacks a
key. Their HTTP status is 400 (415 for 504), or 413 when an image or the request is above
a limit. A worker whose memory stays taken answers 503 (code 511) with Retry-After.
"""

import binascii
import contextvars
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import cv2
import numpy as np

from ..errors import VqlError
from ..memory import Hold, MemoryAccount, default_account, mib
from .budget import ByteAllowance
from .fetch import Deadline, UrlFetcher
from .frames import MmapReader, ShmReader, check_bytes
from .header import ImageHeader, check_pixels, read_header
from .limits import ImageLimits
from .local_files import open_under_roots, pread_into, resolve_roots

DATA_URI_RE = re.compile(r"^data:[A-Za-z0-9/+.-]*(;[A-Za-z0-9=.+-]+)*;base64,")
SRC_TYPES = ("url", "local", "base64", "mmap", "shm", "stream")
URL_THREADS = 16  # downloads in flight per worker
URL_THREADS_PER_REQUEST = 4  # of those, one request's: 4 requests at least share them


class Prepared(NamedTuple):
    """An item read and sized, not decoded yet."""

    nbytes: int  # once decoded
    decode: Callable[[bool], np.ndarray]  # bgr -> the image


def decode_base64(item: object) -> bytes:
    """The bytes of a base64 item, with or without a ``data:image/...;base64,`` prefix."""
    if not isinstance(item, str):
        raise VqlError(501, "a base64 item must be a string")
    match = DATA_URI_RE.match(item)
    text = item[match.end() :] if match else item
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise VqlError(501, "invalid base64") from None
    if not raw:
        raise VqlError(501, "empty image")
    return raw


def checked_header(raw: bytes | bytearray, max_pixels: int) -> ImageHeader:
    """The header of an encoded image, its declared size checked against ``max_pixels``."""
    header = read_header(raw)
    check_pixels(header.width, header.height, max_pixels)
    return header


def decode_checked(raw: bytes | bytearray, header: ImageHeader, bgr: bool) -> np.ndarray:
    """Decode an image whose header was checked."""
    flags = cv2.IMREAD_COLOR if bgr else cv2.IMREAD_COLOR_RGB
    try:
        image = cv2.imdecode(np.frombuffer(raw, np.uint8), flags)
    except cv2.error:
        image = None
    if image is None:
        raise VqlError(502, f"corrupt or truncated {header.format} image ({len(raw)} bytes)")
    return image


def decode_image(raw: bytes | bytearray, *, max_pixels: int, bgr: bool = False) -> np.ndarray:
    """Decode a JPEG, PNG, WebP or BMP image, its declared size checked first."""
    return decode_checked(raw, checked_header(raw, max_pixels), bgr)


def shared_frame(frame: np.ndarray, order: str, *, max_pixels: int, bgr: bool) -> np.ndarray:
    """A ``uint8`` frame read from shared memory, in the order asked for (swapped in place)."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        shown = "x".join(str(dim) for dim in frame.shape)
        raise VqlError(504, f"frames must be uint8 height x width x 3, not {frame.dtype} {shown}")
    check_pixels(frame.shape[1], frame.shape[0], max_pixels)
    if order == ("bgr" if bgr else "rgb"):
        return frame
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=frame)  # the same swap either way


def _named(index: int, exc: VqlError) -> VqlError:
    """The error of item ``index``, named ("image 3: ...")."""
    return VqlError(exc.code, f"image {index}: {exc.msg}", status=exc.status)


class ImageLoader:
    """Loads the items of a request under ``limits`` (the defaults when not given).

    Safe to share between threads; build one per app (``app.state.image_loader``) with
    the app's memory account (``default_account()`` when not given): its thread pools are
    the worker's.
    """

    def __init__(
        self, limits: ImageLimits | None = None, account: MemoryAccount | None = None
    ) -> None:
        limits = limits or ImageLimits()
        self.limits = limits
        self.account = account or default_account()
        self.max_bytes = limits.max_bytes
        self.max_pixels = limits.max_pixels
        self.local_roots = resolve_roots(limits.local_roots)
        self.mmap_reader = MmapReader(
            limits.mmap_roots, max_bytes=self.max_bytes, max_pixels=self.max_pixels
        )
        self.shm_reader = ShmReader()
        self.fetcher = UrlFetcher(
            max_bytes=self.max_bytes,
            timeout=limits.url_timeout,
            retries=limits.url_retries,
            schemes=limits.url_schemes,
            hosts=limits.url_hosts,
            block_private=limits.url_block_private,
            allowed_networks=limits.url_allowed_networks,
        )
        self._decodes = threading.BoundedSemaphore(limits.max_decodes)
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._pools_lock = threading.Lock()
        self._preparers: dict[str, Callable[[Any, ByteAllowance], Prepared]] = {
            "local": self._prepare_local,
            "base64": self._prepare_base64,
            "mmap": self._prepare_mmap,
            "shm": self._prepare_shm,
            "encoded": self._prepare_encoded,  # load_encoded
        }

    def load(self, src_type: str, data: Sequence[Any], *, bgr: bool = False) -> list[np.ndarray]:
        """One array per item of ``data``, in order; RGB unless ``bgr=True``."""
        if src_type == "stream":
            return []
        if src_type != "url" and src_type not in self._preparers:
            raise VqlError(504, f"unknown src_type {str(src_type)[:20]!r}")
        if isinstance(data, str | bytes | dict):
            raise TypeError("data must be a sequence of items")
        if not data:
            return []
        allowance = ByteAllowance(self.limits.max_request_bytes, self.account)
        try:
            if src_type == "url":
                prepared = self._prepare_urls(data, allowance)
            else:
                prepared = [
                    self._prepare(src_type, item, index, allowance)
                    for index, item in enumerate(data)
                ]
            holds = self._reserve([item.nbytes for item in prepared])
            try:
                images = self._decode_all(prepared, bgr)
            except BaseException:
                for hold in holds:
                    hold.release()
                raise
            return [hold.attach(image) for hold, image in zip(holds, images, strict=True)]
        finally:
            allowance.release()

    def _reserve(self, sizes: list[int]) -> list[Hold]:
        """Take the decoded size of every item from the account, one hold per item."""
        total = sum(sizes)
        if total > self.limits.max_decoded_bytes:
            raise VqlError(
                501,
                f"the images decode to {mib(total)}, above the limit of"
                f" {mib(self.limits.max_decoded_bytes)} per request (IMAGE_MAX_DECODED_BYTES)",
                status=413,
            )
        return self.account.take(total, "the decoded images").split(sizes)

    def load_encoded(self, items: Sequence[Any], *, bgr: bool = False) -> list[np.ndarray]:
        """Images from encoded files given as bytes (held by the caller already) or as
        base64 text, like ``load``'s items."""
        return self.load("encoded", items, bgr=bgr)

    def load_one(self, src_type: str, item: Any, bgr: bool = False) -> np.ndarray:
        """One item (a failure names it "image 0")."""
        return self.load(src_type, [item], bgr=bgr)[0]

    def close(self) -> None:
        """Close the pooled HTTP connections and the thread pools (made again if needed)."""
        self.fetcher.close()
        with self._pools_lock:
            pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

    # Reading and sizing -----------------------------------------------------------

    def _prepare(self, src_type: str, item: Any, index: int, allowance: ByteAllowance) -> Prepared:
        try:
            return self._preparers[src_type](item, allowance)
        except VqlError as exc:
            raise _named(index, exc) from None

    def _prepare_urls(self, urls: Sequence[Any], allowance: ByteAllowance) -> list[Prepared]:
        """Download every URL in the URL pool, each within IMAGE_URL_TIMEOUT from now, at
        most URL_THREADS_PER_REQUEST at a time: slow URLs of one request cannot take every
        thread of the pool from the others."""
        deadlines = [Deadline(self.limits.url_timeout) for _ in urls]
        prepared: list[Any] = [None] * len(urls)
        lanes = min(len(urls), URL_THREADS_PER_REQUEST)

        def lane(first: int) -> None:
            for index in range(first, len(urls), lanes):
                url, deadline = urls[index], deadlines[index]
                prepared[index] = self._prepare_url(index, url, deadline, allowance)

        futures = [self._submit("url", URL_THREADS, lane, first) for first in range(lanes)]
        try:
            _results(futures)
        except BaseException:
            for deadline in deadlines:
                deadline.expire()  # the other downloads stop now
            raise
        return prepared

    def _prepare_url(
        self, index: int, url: Any, deadline: Deadline, allowance: ByteAllowance
    ) -> Prepared:
        try:
            raw = self.fetcher.fetch(url, deadline, allowance)
            return self._encoded(raw)
        except VqlError as exc:
            raise _named(index, exc) from None

    def _prepare_base64(self, item: Any, allowance: ByteAllowance) -> Prepared:
        if isinstance(item, str):
            allowance.take(len(item) // 4 * 3)  # held before decoding, at most that
        return self._encoded(decode_base64(item))

    def _prepare_encoded(self, item: Any, allowance: ByteAllowance) -> Prepared:
        if isinstance(item, bytes | bytearray | memoryview):
            return self._encoded(item if isinstance(item, bytes | bytearray) else bytes(item))
        return self._prepare_base64(item, allowance)

    def _prepare_local(self, item: Any, allowance: ByteAllowance) -> Prepared:
        fd, size = open_under_roots(item, self.local_roots, "IMAGE_LOCAL_ROOTS")
        try:
            if size == 0:
                raise VqlError(501, "empty file")
            check_bytes(size, self.max_bytes)
            allowance.take(size)
            raw = bytearray(size)
            pread_into(fd, raw, 0)
        finally:
            os.close(fd)
        return self._encoded(raw)

    def _encoded(self, raw: bytes | bytearray) -> Prepared:
        """An encoded image (its bytes counted and held already), sized from its header."""
        check_bytes(len(raw), self.max_bytes)
        header = checked_header(raw, self.max_pixels)
        return Prepared(header.pixels * 3, lambda bgr: decode_checked(raw, header, bgr))

    def _prepare_mmap(self, item: Any, allowance: ByteAllowance) -> Prepared:
        frame = self.mmap_reader.check(item)

        def read(bgr: bool) -> np.ndarray:
            image = self.mmap_reader.read(frame)
            return image if bgr else cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)

        return Prepared(frame.nbytes, read)

    def _prepare_shm(self, item: Any, allowance: ByteAllowance) -> Prepared:
        frame = self.shm_reader.check(item, max_bytes=self.max_bytes)

        def read(bgr: bool) -> np.ndarray:
            image, order = self.shm_reader.read(frame)
            return shared_frame(image, order, max_pixels=self.max_pixels, bgr=bgr)

        return Prepared(frame.nbytes, read)

    # Decoding ---------------------------------------------------------------------

    def _decode_all(self, prepared: list[Prepared], bgr: bool) -> list[np.ndarray]:
        """Decode the items, in the decode pool when there are several."""
        if len(prepared) == 1:
            return [self._decode(0, prepared[0], bgr)]
        decodes = self.limits.max_decodes
        futures = [
            self._submit("decode", decodes, self._decode, index, item, bgr)
            for index, item in enumerate(prepared)
        ]
        return _results(futures)

    def _decode(self, index: int, item: Prepared, bgr: bool) -> np.ndarray:
        try:
            with self._decodes:
                return item.decode(bgr)
        except VqlError as exc:
            raise _named(index, exc) from None

    def _submit(self, kind: str, threads: int, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run ``fn(*args)`` in the loader's pool of ``kind``, in a copy of this context
        (its log lines keep the request id)."""
        with self._pools_lock:
            pool = self._pools.get(kind)
            if pool is None:
                prefix = f"image-{kind}"
                pool = self._pools[kind] = ThreadPoolExecutor(threads, thread_name_prefix=prefix)
        return pool.submit(contextvars.copy_context().run, fn, *args)


def _results(futures: list[Future[Any]]) -> list[Any]:
    """The results in order; on the first failure the others are cancelled, it is raised."""
    try:
        return [future.result() for future in futures]
    except BaseException:
        for future in futures:
            future.cancel()
        raise


_default: list[ImageLoader] = []


def set_default_loader(loader: ImageLoader) -> None:
    """Make ``loader`` the one ``default_loader()`` returns (``get_app`` passes the app's)."""
    _default[:] = [loader]


def default_loader() -> ImageLoader:
    """The loader of the last app built in this process, else one with the default limits."""
    if not _default:
        _default.append(ImageLoader())
    return _default[0]
