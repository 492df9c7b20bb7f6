"""``linker_atom``'s ``lib.load_image``: ``load_image(src_type, data)`` and its helpers.

The pipeline is in ``images/`` (``images/loader.py``). Routes use the app's loader
(``api.dependencies.Images``), which holds the limits of the settings and keeps its HTTP
connections; ``load_image`` uses that same loader once an app is built in the process,
and a loader with the default limits before.

``linker_atom``'s other names keep their calls and their results (RGB, numpy ``uint8``
height x width x 3, or PIL ``RGB`` images), with the loader's rules: size limits, no
private addresses for URLs, local files and mmap frames only under IMAGE_LOCAL_ROOTS and
IMAGE_MMAP_ROOTS, and a ``VqlError`` naming the failure instead of a library's exception
or a ``None``:

- ``url_to_np``, ``local_to_np``, ``base64_to_np``, ``mmap_to_np`` and their ``_to_pil``
  twins load one item (an mmap frame is BGR bytes: both give the same RGB picture, where
  ``linker_atom``'s ``mmap_to_pil`` read them as RGB);
- ``load_np_image`` and ``load_pil_image`` load a list; ``load_image(src_type, data,
  func_map)`` runs your own loaders by ``src_type``, in parallel, in order;
- ``async_url_to_np`` and ``async_url_to_pil`` await the loading of URLs in a thread;
- ``video_to_np`` (the first frame of a video, BGR as before), ``file_to_base64`` and
  ``chunked`` are plain helpers: they open what the service gives them, no roots checked.
"""

import asyncio
import base64
import contextvars
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..images.limits import ImageLimits
from ..images.loader import (
    SRC_TYPES,
    ImageLoader,
    decode_base64,
    decode_image,
    default_loader,
    set_default_loader,
)
from .exception import VqlError

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "FETCH_TIMEOUT",
    "SRC_TYPES",
    "SRC_TYPE_MAP",
    "ImageLimits",
    "ImageLoader",
    "async_url_to_np",
    "async_url_to_pil",
    "base64_to_np",
    "base64_to_pil",
    "chunked",
    "decode_base64",
    "decode_image",
    "default_loader",
    "file_to_base64",
    "load_image",
    "load_np_image",
    "load_pil_image",
    "local_to_np",
    "local_to_pil",
    "mmap_to_np",
    "mmap_to_pil",
    "set_default_loader",
    "url_to_np",
    "url_to_pil",
    "video_to_np",
]

FETCH_TIMEOUT = 15  # linker_atom's; the loader's URL timeout is IMAGE_URL_TIMEOUT
MAX_THREADS = 8

Loader = Callable[[Any], Any]


def load_image(
    src_type: str,
    data: Sequence[Any],
    func_map: Mapping[str, Loader] | None = None,
    *,
    bgr: bool = False,
    loader: ImageLoader | None = None,
) -> list[Any]:
    """Load every item of ``data`` as ``src_type``: one RGB array per item, in order.

    With ``func_map`` (``linker_atom``'s argument), each item goes to
    ``func_map[src_type]`` instead, in parallel: 504 for a ``src_type`` it lacks, 503 for
    an item it returns None for.
    """
    if func_map is not None:
        return _load_with(func_map, src_type, data)
    return (loader or default_loader()).load(src_type, data, bgr=bgr)


def _load_with(func_map: Mapping[str, Loader], src_type: str, data: Sequence[Any]) -> list[Any]:
    """``data`` loaded by the caller's function for ``src_type``, in parallel, in order."""
    if not data or src_type == "stream":
        return []
    function = func_map.get(src_type)
    if function is None:
        raise VqlError(504, f"unknown src_type {str(src_type)[:20]!r}")
    if len(data) == 1:
        results = [function(data[0])]
    else:
        with ThreadPoolExecutor(min(MAX_THREADS, len(data)), "load-image") as pool:
            futures = [pool.submit(contextvars.copy_context().run, function, item) for item in data]
            results = [future.result() for future in futures]
    for index, result in enumerate(results):
        if result is None:
            raise VqlError(503, f"image {index}: the loader returned nothing")
    return results


def load_np_image(
    src_type: str, data: Sequence[Any], *, func_map: Mapping[str, Loader] | None = None
) -> list[np.ndarray]:
    """``load_image`` giving RGB numpy arrays (``linker_atom``'s name)."""
    return load_image(src_type, data, func_map)


def load_pil_image(
    src_type: str, data: Sequence[Any], *, func_map: Mapping[str, Loader] | None = None
) -> list["Image"]:
    """``load_image`` giving PIL ``RGB`` images."""
    if func_map is not None:
        return _load_with(func_map, src_type, data)
    return [_pil(array) for array in default_loader().load(src_type, data)]


def _one(src_type: str, item: Any) -> np.ndarray:
    """One item through the default loader."""
    return default_loader().load(src_type, [item])[0]


def _pil(array: np.ndarray) -> "Image":
    """An RGB array as a PIL image."""
    from PIL import Image  # noqa: PLC0415 - only the _pil functions need it

    return Image.fromarray(np.ascontiguousarray(array))  # uint8 height x width x 3: RGB


def url_to_np(url: str) -> np.ndarray:
    """An http(s) URL's image (checked address, capped size, retried on network errors)."""
    return _one("url", url)


def local_to_np(path: str) -> np.ndarray:
    """An absolute path's image, under IMAGE_LOCAL_ROOTS."""
    return _one("local", path)


def base64_to_np(data: str) -> np.ndarray:
    """A base64 image (with or without a ``data:image/...;base64,`` prefix)."""
    return _one("base64", data)


def mmap_to_np(value: str | dict[str, Any]) -> np.ndarray:
    """An mmap descriptor's frame (raw BGR bytes under IMAGE_MMAP_ROOTS), as RGB."""
    return _one("mmap", value)


def url_to_pil(url: str) -> "Image":
    """``url_to_np`` as a PIL image."""
    return _pil(url_to_np(url))


def local_to_pil(path: str) -> "Image":
    """``local_to_np`` as a PIL image."""
    return _pil(local_to_np(path))


def base64_to_pil(b64_str: str) -> "Image":
    """``base64_to_np`` as a PIL image."""
    return _pil(base64_to_np(b64_str))


def mmap_to_pil(value: str | dict[str, Any]) -> "Image":
    """``mmap_to_np`` as a PIL image."""
    return _pil(mmap_to_np(value))


SRC_TYPE_MAP: dict[str, Loader] = {
    "url": url_to_np,
    "local": local_to_np,
    "base64": base64_to_np,
    "mmap": mmap_to_np,
}


async def async_url_to_np(data: Sequence[str]) -> list[np.ndarray]:
    """The images of URLs, loaded in a thread (the event loop keeps serving)."""
    return await asyncio.to_thread(default_loader().load, "url", list(data))


async def async_url_to_pil(data: Sequence[str]) -> list["Image"]:
    """``async_url_to_np`` as PIL images."""
    return [_pil(array) for array in await async_url_to_np(data)]


def video_to_np(path: str) -> np.ndarray | None:
    """The first frame of a video file or stream URL, BGR as OpenCV reads it; None if none."""
    capture = cv2.VideoCapture(path)
    try:
        ok, frame = capture.read()
    finally:
        capture.release()
    return frame if ok else None


def file_to_base64(path: str, mode: str = "rb") -> bytes:
    """A file's content, base64-encoded."""
    with open(path, mode) as f:
        return base64.b64encode(f.read())


def chunked(it: Iterable[Any], n: int) -> Iterator[Iterator[Any]]:
    """The items of ``it`` in groups of ``n`` (the last one shorter), each an iterator."""
    items = iter(it)
    while batch := list(itertools.islice(items, n)):
        yield iter(batch)
