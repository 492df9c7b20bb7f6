"""Turn request items into images (DESIGN.md section 6).

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
  block, mapped without a copy when its ``order`` ("bgr" by default, or "rgb") is the
  one asked for (the array is then a read-only view: copy it to modify it);
- stream: nothing to load, returns [].

Encoded images (url, local, base64) must be JPEG, PNG, WebP or BMP; their header is
checked against IMAGE_MAX_PIXELS before decoding. Every failure is a ``VqlError`` whose
message starts with the index of the failing item ("image 3: ..."): 501 the item cannot
be read, 502 the bytes are not a decodable image, 503 the URL cannot be fetched, 504 the
format, scheme or dtype is not supported, 505 a descriptor lacks a key. Their HTTP
status is 400 (415 for 504), or 413 when an image is above IMAGE_MAX_BYTES or
IMAGE_MAX_PIXELS.
"""

import binascii
import contextvars
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from ..lib.exception import VqlError
from .fetch import UrlFetcher
from .frames import MmapReader, ShmMapper, check_bytes
from .header import check_pixels, read_header
from .limits import ImageLimits
from .local_files import open_under_roots, pread_into, resolve_roots

DATA_URI_RE = re.compile(r"^data:[A-Za-z0-9/+.-]*(;[A-Za-z0-9=.+-]+)*;base64,")
SRC_TYPES = ("url", "local", "base64", "mmap", "shm", "stream")

Reader = Callable[[Any, bool], np.ndarray]


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    """The loading threads, created on first use (OpenCV and socket reads release the GIL)."""
    return ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="image")


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


def decode_image(raw: bytes | bytearray, *, max_pixels: int, bgr: bool = False) -> np.ndarray:
    """Decode a JPEG, PNG, WebP or BMP image, its declared size checked first."""
    header = read_header(raw)
    check_pixels(header.width, header.height, max_pixels)
    flags = cv2.IMREAD_COLOR if bgr else cv2.IMREAD_COLOR_RGB
    try:
        image = cv2.imdecode(np.frombuffer(raw, np.uint8), flags)
    except cv2.error:
        image = None
    if image is None:
        raise VqlError(502, f"corrupt or truncated {header.format} image ({len(raw)} bytes)")
    return image


def shared_frame(frame: np.ndarray, order: str, *, max_pixels: int, bgr: bool) -> np.ndarray:
    """A shared ``uint8`` frame in the order asked for: itself, or a swapped copy."""
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        shown = "x".join(str(dim) for dim in frame.shape)
        raise VqlError(504, f"frames must be uint8 height x width x 3, not {frame.dtype} {shown}")
    check_pixels(frame.shape[1], frame.shape[0], max_pixels)
    if order == ("bgr" if bgr else "rgb"):
        return frame
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)  # the same swap either way


class ImageLoader:
    """Loads the items of a request under ``limits`` (the defaults when not given).

    Safe to share between threads; build one per app (``app.state.image_loader``).
    """

    def __init__(self, limits: ImageLimits | None = None) -> None:
        limits = limits or ImageLimits()
        self.limits = limits
        self.max_bytes = limits.max_bytes
        self.max_pixels = limits.max_pixels
        self.local_roots = resolve_roots(limits.local_roots)
        self.mmap_reader = MmapReader(
            limits.mmap_roots, max_bytes=self.max_bytes, max_pixels=self.max_pixels
        )
        self.shm_mapper = ShmMapper()
        self.fetcher = UrlFetcher(
            max_bytes=self.max_bytes,
            timeout=limits.url_timeout,
            retries=limits.url_retries,
            schemes=limits.url_schemes,
            hosts=limits.url_hosts,
            block_private=limits.url_block_private,
            allowed_networks=limits.url_allowed_networks,
        )
        self._readers: dict[str, Reader] = {
            "url": self._from_url,
            "local": self._from_local,
            "base64": self._from_base64,
            "mmap": self._from_mmap,
            "shm": self._from_shm,
        }

    def load(self, src_type: str, data: Sequence[Any], *, bgr: bool = False) -> list[np.ndarray]:
        """One array per item of ``data``, in order; RGB unless ``bgr=True``."""
        if src_type == "stream":
            return []
        if src_type not in self._readers:
            raise VqlError(504, f"unknown src_type {str(src_type)[:20]!r}")
        if isinstance(data, str | bytes | dict):
            raise TypeError("data must be a sequence of items")
        if len(data) <= 1:
            return [self.load_one(src_type, item, index, bgr) for index, item in enumerate(data)]
        # Each item runs in a copy of this context: its log lines keep the request id.
        futures = [
            _pool().submit(
                contextvars.copy_context().run, self.load_one, src_type, item, index, bgr
            )
            for index, item in enumerate(data)
        ]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise

    def load_one(self, src_type: str, item: Any, index: int, bgr: bool = False) -> np.ndarray:
        """One item; a failure names it ("image 3: ...")."""
        try:
            return self._readers[src_type](item, bgr)
        except VqlError as exc:
            raise VqlError(exc.code, f"image {index}: {exc.msg}", status=exc.status) from None

    def close(self) -> None:
        """Close the pooled HTTP connections, drop the kept shared-memory mappings."""
        self.fetcher.close()
        self.shm_mapper.clear()

    def _decode(self, raw: bytes | bytearray, bgr: bool) -> np.ndarray:
        check_bytes(len(raw), self.max_bytes)
        return decode_image(raw, max_pixels=self.max_pixels, bgr=bgr)

    def _from_base64(self, item: Any, bgr: bool) -> np.ndarray:
        return self._decode(decode_base64(item), bgr)

    def _from_url(self, item: Any, bgr: bool) -> np.ndarray:
        return self._decode(self.fetcher.fetch(item), bgr)

    def _from_local(self, item: Any, bgr: bool) -> np.ndarray:
        fd, size = open_under_roots(item, self.local_roots, "IMAGE_LOCAL_ROOTS")
        try:
            if size == 0:
                raise VqlError(501, "empty file")
            check_bytes(size, self.max_bytes)
            raw = bytearray(size)
            pread_into(fd, raw, 0)
        finally:
            os.close(fd)
        return self._decode(raw, bgr)

    def _from_mmap(self, item: Any, bgr: bool) -> np.ndarray:
        frame = self.mmap_reader.read(item)
        return frame if bgr else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def _from_shm(self, item: Any, bgr: bool) -> np.ndarray:
        frame, order = self.shm_mapper.open(item, max_bytes=self.max_bytes)
        return shared_frame(frame, order, max_pixels=self.max_pixels, bgr=bgr)


_default: list[ImageLoader] = []


def set_default_loader(loader: ImageLoader) -> None:
    """Make ``loader`` the one ``default_loader()`` returns (``get_app`` passes the app's)."""
    _default[:] = [loader]


def default_loader() -> ImageLoader:
    """The loader of the last app built in this process, else one with the default limits."""
    if not _default:
        _default.append(ImageLoader())
    return _default[0]
