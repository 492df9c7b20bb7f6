"""Turn request items into images (DESIGN.md section 6).

``load_image(src_type, data)`` returns one RGB ``uint8`` array (height x width x 3) per
item, in order; items are decoded in parallel. Every failure is a ``VqlError`` with an
image code naming the failing item, never a library error. This version reads
``base64`` (plain or a ``data:`` URI) and ``stream`` (nothing to load).
"""

import base64
import binascii
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from .exception import VqlError

DATA_URI_RE = re.compile(r"^data:[A-Za-z0-9/+.-]*(;[A-Za-z0-9=.+-]+)*;base64,")
SUPPORTED = ("base64", "stream")
KNOWN = ("url", "local", "base64", "mmap", "shm", "stream")


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    """The decoding threads, created on first use (OpenCV releases the GIL)."""
    return ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="image")


def decode_base64(item: Any, index: int) -> bytes:
    """The bytes of a base64 item, with or without a ``data:image/...;base64,`` prefix."""
    if not isinstance(item, str):
        raise VqlError(501, f"image {index}: a base64 item must be a string")
    match = DATA_URI_RE.match(item)
    text = item[match.end() :] if match else item
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise VqlError(501, f"image {index}: invalid base64") from None
    if not raw:
        raise VqlError(501, f"image {index}: empty image")
    return raw


def decode_image(raw: bytes, index: int, *, bgr: bool = False) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, ...) to a 3-channel array."""
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise VqlError(502, f"image {index}: not a decodable image ({len(raw)} bytes)")
    return image if bgr else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _load_one(src_type: str, item: Any, index: int, bgr: bool) -> np.ndarray:
    return decode_image(decode_base64(item, index), index, bgr=bgr)


def load_image(src_type: str, data: Sequence[Any], *, bgr: bool = False) -> list[np.ndarray]:
    """Load every item of ``data`` as ``src_type``; RGB unless ``bgr=True`` (no conversion copy)."""
    if src_type not in KNOWN:
        raise VqlError(504, f"unknown src_type {src_type!r}")
    if src_type not in SUPPORTED:
        raise VqlError(504, f"src_type {src_type!r} is not supported by this atom yet")
    if src_type == "stream":
        return []
    if len(data) <= 1:
        return [_load_one(src_type, item, index, bgr) for index, item in enumerate(data)]
    futures = [
        _pool().submit(_load_one, src_type, item, index, bgr) for index, item in enumerate(data)
    ]
    return [future.result() for future in futures]
