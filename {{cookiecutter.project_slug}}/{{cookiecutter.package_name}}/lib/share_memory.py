"""Frames passed between processes of one host without copying them through HTTP.

The request carries a small descriptor instead of the image:

- ``mmap`` (``linker_atom``'s form): raw BGR bytes at ``position`` in a file, e.g. under
  /dev/shm: ``{"path", "position", "size", "height", "width"}``. ``MmapReader`` reads
  them, bounds-checked, from any number of threads (it holds no per-call state), with
  ``pread`` rather than a mapping, so a file cut short meanwhile gives an error, not a
  SIGBUS. ``write_mmap_frame`` is the producer's side.
- ``shm``: a named POSIX shared-memory block (``multiprocessing.shared_memory``):
  ``{"name", "shape", "dtype", "order"}`` (``order``, "bgr" or "rgb", is optional and
  "bgr" by default). The producer calls ``publish_frame(frame)``, sends ``.descriptor``
  and calls ``close()`` once the reply is in (or uses ``with``). The consumer calls
  ``open_frame(descriptor)``: a read-only array mapped on the block, no copy
  (``ShmMapper``, one per ``ImageLoader``, also keeps recent mappings for reuse).
  ``ShmClient`` sends frames to an atom route this way, swapping BGR to RGB while it
  copies them in, so that the atom's RGB load needs no copy at all.

Lifecycle: the producer owns its blocks; ``SharedFrame.close()``, garbage collection or
the end of the interpreter unlinks them. The consumer maps ``/dev/shm/<name>`` with a
plain read-only ``mmap`` instead of ``SharedMemory(name)``: on Python 3.11 and 3.12
attaching with ``SharedMemory`` registers the block with the consumer's resource
tracker, which unlinks it when the consumer exits (pulling it from under its producer)
and warns about a "leaked" object. The mapping lasts as long as the array that uses it;
the producer may unlink the block meanwhile. The producer must not shrink a block
while a consumer reads it.
"""

import contextlib
import http.client
import json
import math
import mmap
import os
import re
import stat
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import cv2
import numpy as np

from .exception import VqlError
from .image_header import check_pixels
from .local_files import OPEN_FLAGS, open_under_roots, pread_into, resolve_roots

SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "atom_"
SHM_NAME_RE = re.compile(r"^/?([A-Za-z0-9_][A-Za-z0-9_.-]{0,199})$")
MMAP_KEYS = ("path", "position", "size", "height", "width")
SHM_KEYS = ("name", "shape", "dtype")
ORDERS = ("bgr", "rgb")
# Map every page at once: cheaper than a fault per page for a frame that is read whole.
SHM_MAP_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
MAX_DESCRIPTOR_CHARS = 4096
MAX_DIMENSIONS = 4
MAX_INT = 2**53  # larger numbers in a descriptor are mistakes (and long to echo)


def parse_descriptor(item: object, keys: Sequence[str], kind: str) -> dict[str, Any]:
    """A descriptor given as a dict or a JSON string, with every key of ``keys``."""
    if isinstance(item, str):
        if len(item) > MAX_DESCRIPTOR_CHARS:
            raise VqlError(501, f"the {kind} descriptor is longer than {MAX_DESCRIPTOR_CHARS}")
        try:
            item = json.loads(item)
        except ValueError:
            raise VqlError(501, f"the {kind} descriptor is not valid JSON") from None
    if not isinstance(item, dict):
        raise VqlError(501, f"a {kind} item must be an object with {', '.join(keys)}")
    for key in keys:
        if key not in item:
            raise VqlError(505, f"the {kind} descriptor lacks {key!r}")
    return item


def as_int(value: object, name: str, minimum: int) -> int:
    """An integer field of a descriptor, at least ``minimum`` (and at most 2**53)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise VqlError(501, f"{name} must be an integer >= {minimum}")
    if value > MAX_INT:
        raise VqlError(501, f"{name} is too large")
    return value


def check_bytes(nbytes: int, max_bytes: int | None) -> None:
    """413 (code 501) when a frame is above the byte limit."""
    if max_bytes is not None and nbytes > max_bytes:
        raise VqlError(
            501, f"{nbytes} bytes is above the limit of {max_bytes} (IMAGE_MAX_BYTES)", status=413
        )


class MmapReader:
    """Reads ``linker_atom``'s mmap descriptors: raw BGR frames in files under ``roots``."""

    def __init__(self, roots: Sequence[str], *, max_bytes: int, max_pixels: int) -> None:
        self.roots = resolve_roots(roots)
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels

    def read(self, item: object) -> np.ndarray:
        """The frame of a descriptor, as a new BGR ``uint8`` array (height x width x 3)."""
        descriptor = parse_descriptor(item, MMAP_KEYS, "mmap")
        height = as_int(descriptor["height"], "height", 1)
        width = as_int(descriptor["width"], "width", 1)
        position = as_int(descriptor["position"], "position", 0)
        size = as_int(descriptor["size"], "size", 1)
        check_pixels(width, height, self.max_pixels)
        if size != height * width * 3:
            raise VqlError(501, f"size {size} is not height x width x 3 = {height * width * 3}")
        check_bytes(size, self.max_bytes)
        fd, file_size = open_under_roots(descriptor["path"], self.roots, "IMAGE_MMAP_ROOTS")
        try:
            if position + size > file_size:
                raise VqlError(
                    501,
                    f"bytes {position}..{position + size} are outside the file ({file_size} bytes)",
                )
            frame = np.empty((height, width, 3), np.uint8)
            pread_into(fd, frame, position)
        finally:
            os.close(fd)
        return frame


def write_mmap_frame(path: str | os.PathLike[str], frame: np.ndarray, position: int = 0) -> dict:
    """Write a BGR ``uint8`` frame at ``position`` of a file (created if missing).

    Returns its mmap descriptor. The producer's side of ``MmapReader``.
    """
    frame = np.ascontiguousarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError("an mmap frame is uint8 height x width x 3 (BGR)")
    data = memoryview(frame).cast("B")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], position + done)
    finally:
        os.close(fd)
    height, width = frame.shape[:2]
    return {
        "path": os.fspath(path),
        "position": position,
        "size": len(data),
        "height": height,
        "width": width,
    }


def parse_shm_descriptor(item: object) -> tuple[str, tuple[int, ...], np.dtype, str]:
    """(block name, shape, dtype, channel order) of a shm descriptor."""
    descriptor = parse_descriptor(item, SHM_KEYS, "shm")
    order = descriptor.get("order", "bgr")
    if order not in ORDERS:
        raise VqlError(501, "order must be 'bgr' or 'rgb'")
    name = descriptor["name"]
    match = SHM_NAME_RE.match(name) if isinstance(name, str) else None
    if match is None:
        raise VqlError(501, "invalid shared memory block name")
    shape = descriptor["shape"]
    if not isinstance(shape, list | tuple) or not 1 <= len(shape) <= MAX_DIMENSIONS:
        raise VqlError(501, f"shape must be a list of 1 to {MAX_DIMENSIONS} integers")
    dims = tuple(as_int(dim, "each dimension", 1) for dim in shape)
    try:
        dtype = np.dtype(descriptor["dtype"])
    except (TypeError, ValueError):
        raise VqlError(504, "unknown dtype") from None
    if dtype.kind not in "biuf" or dtype.hasobject:  # never object or structured arrays
        raise VqlError(504, f"dtype {dtype.name} is not supported")
    return match.group(1), dims, dtype, order


def open_frame(item: object, *, max_bytes: int | None = None) -> np.ndarray:
    """The frame of a shm descriptor: a read-only array on the block itself (no copy)."""
    return ShmMapper(max_blocks=0).open(item, max_bytes=max_bytes)[0]


def _open_block(name: str, nbytes: int) -> tuple[int, os.stat_result]:
    """A read-only descriptor of the block ``name``, checked to hold ``nbytes``."""
    try:
        fd = os.open(SHM_DIR / name, OPEN_FLAGS)
    except FileNotFoundError:
        raise VqlError(501, "no such shared memory block") from None
    except OSError:
        raise VqlError(501, "the shared memory block cannot be opened") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise VqlError(501, "not a shared memory block")
        if info.st_size < nbytes:
            raise VqlError(
                501, f"the shared memory block holds {info.st_size} bytes, its shape needs {nbytes}"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, info


class ShmMapper:
    """Maps shared-memory blocks read-only, keeping the last ``max_blocks`` mappings.

    A client that reuses its blocks frame after frame (``ShmClient`` does) then costs no
    new mapping per frame: every call still opens and checks the block, and maps it
    again when it is another block (another inode) or the mapping would reach past its
    end. A block that its producer unlinked stays in memory until its mapping leaves
    the cache (least recently used first) and its arrays are gone. Thread-safe.
    """

    def __init__(self, max_blocks: int = 8) -> None:
        self.max_blocks = max_blocks
        self._cache: OrderedDict[str, tuple[tuple[int, int], mmap.mmap]] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, item: object, *, max_bytes: int | None = None) -> tuple[np.ndarray, str]:
        """The frame of a shm descriptor (a read-only view) and its channel order."""
        name, shape, dtype, order = parse_shm_descriptor(item)
        count = math.prod(shape)
        check_bytes(count * dtype.itemsize, max_bytes)
        fd, info = _open_block(name, count * dtype.itemsize)
        try:
            mapping = self._mapping(name, fd, info, count * dtype.itemsize)
        finally:
            os.close(fd)
        return np.frombuffer(mapping, dtype, count=count).reshape(shape), order

    def _mapping(self, name: str, fd: int, info: os.stat_result, nbytes: int) -> mmap.mmap:
        """The cached mapping of this very block if it is large enough, else a new one."""
        key = (info.st_dev, info.st_ino)
        with self._lock:
            cached = self._cache.get(name)
            if cached and cached[0] == key and nbytes <= len(cached[1]) <= info.st_size:
                self._cache.move_to_end(name)
                return cached[1]
        mapping = mmap.mmap(fd, nbytes, flags=SHM_MAP_FLAGS, prot=mmap.PROT_READ)
        if self.max_blocks > 0:
            with self._lock:
                self._cache[name] = (key, mapping)
                self._cache.move_to_end(name)
                while len(self._cache) > self.max_blocks:
                    self._cache.popitem(last=False)
        return mapping

    def clear(self) -> None:
        """Drop every cached mapping (arrays still using one keep it alive)."""
        with self._lock:
            self._cache.clear()


def _release(block: shared_memory.SharedMemory) -> None:
    """Unmap and unlink a producer's block (once)."""
    block.close()
    with contextlib.suppress(FileNotFoundError):
        block.unlink()


class SharedFrame:
    """A named shared-memory block holding one frame: the producer's side.

    ``write(frame)`` copies a frame in (any later frame of at most ``capacity`` bytes
    can reuse the block); ``descriptor`` is what the consumer needs; ``close()`` unmaps
    and unlinks the block, and also happens on garbage collection or at exit.
    ``order`` tells the consumer the channel order of a height x width x 3 frame.
    """

    def __init__(self, capacity: int, *, name: str | None = None) -> None:
        if capacity <= 0:
            raise ValueError("a shared frame needs at least one byte")
        self.capacity = capacity
        self._block = shared_memory.SharedMemory(
            name=name or f"{SHM_PREFIX}{uuid.uuid4().hex}", create=True, size=capacity
        )
        self._finalizer = weakref.finalize(self, _release, self._block)
        self.shape: tuple[int, ...] = ()
        self.dtype = np.dtype(np.uint8)
        self.order = "bgr"

    @classmethod
    def publish(cls, frame: np.ndarray, *, order: str = "bgr") -> "SharedFrame":
        """A new block holding a copy of ``frame`` (whose channel order is ``order``)."""
        shared = cls(np.asarray(frame).nbytes)
        shared.write(frame, order=order)
        return shared

    @property
    def name(self) -> str:
        """The block's name (without the leading slash)."""
        return self._block.name.lstrip("/")

    def write(self, frame: np.ndarray, *, order: str = "bgr", swap_rb: bool = False) -> None:
        """Copy ``frame`` (channel order ``order``) into the block.

        ``swap_rb`` swaps the red and blue channels of a ``uint8`` height x width x 3
        frame during the copy (no extra pass); the block then holds the other order.
        """
        frame = np.asarray(frame)
        if not self._finalizer.alive:
            raise ValueError("the shared frame is closed")
        if order not in ORDERS:
            raise ValueError("order must be 'bgr' or 'rgb'")
        if frame.nbytes > self.capacity or frame.nbytes == 0:
            raise ValueError(f"a frame of {frame.nbytes} bytes does not fit {self.capacity}")
        if swap_rb and (frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3):
            raise ValueError("swap_rb needs a uint8 height x width x 3 frame")
        target = np.ndarray(frame.shape, frame.dtype, buffer=self._block.buf)
        if swap_rb:
            cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=target)
            order = ORDERS[1 - ORDERS.index(order)]
        else:
            np.copyto(target, frame)
        del target  # release the buffer export, or close() could not unmap
        self.shape, self.dtype, self.order = frame.shape, frame.dtype, order

    @property
    def descriptor(self) -> dict[str, Any]:
        """``{"name", "shape", "dtype", "order"}``: the request item of src_type ``shm``."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            "order": self.order,
        }

    def close(self) -> None:
        """Unmap and unlink the block (idempotent)."""
        self._finalizer()

    def __enter__(self) -> "SharedFrame":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def publish_frame(frame: np.ndarray, *, order: str = "bgr") -> SharedFrame:
    """Publish a frame in a new block; send ``.descriptor``, then ``close()`` it."""
    return SharedFrame.publish(frame, order=order)


class Reply(NamedTuple):
    """An HTTP reply: its status and its JSON body (or its text if it is not JSON)."""

    status: int
    body: Any


class ShmClient:
    """Send frames to an atom route on the same host through shared memory.

        with ShmClient("http://127.0.0.1:8000/d2atom/detect") as client:
            reply = client.send([frame], threshold=0.5)  # reply.status, reply.body

    Frames are ``uint8`` height x width x 3 in BGR order (as OpenCV reads them). With
    ``rgb=True`` they are stored as RGB, swapped while being copied in, so an atom that
    loads RGB (``load_image``'s default) maps them without any copy; ``rgb=False``
    stores them as given. Blocks are kept between calls and reused while the frames keep
    their size; ``close()`` frees them. One HTTP connection is kept alive (the standard
    library's, the lightest); calls are serialised by a lock. The atom must see the same
    /dev/shm (same host; in containers, a shared /dev/shm or ``--ipc=host``).
    """

    def __init__(self, url: str, *, rgb: bool = True, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http(s) URL")
        self.url = url
        self.rgb = rgb
        self.timeout = timeout
        self._target = parts.path + (f"?{parts.query}" if parts.query else "")
        self._parts = parts
        self._conn: http.client.HTTPConnection | None = None
        self._frames: list[SharedFrame] = []
        self._lock = threading.Lock()

    def send(self, frames: Sequence[np.ndarray], **fields: Any) -> Reply:
        """POST ``{"data": [descriptors], "src_type": "shm", **fields}``; return the reply."""
        with self._lock:
            data = [self._slot(index, frame).descriptor for index, frame in enumerate(frames)]
            return self._post({"data": data, "src_type": "shm", **fields})

    def post(self, body: dict[str, Any]) -> Reply:
        """POST any JSON body to the URL on the client's connection."""
        with self._lock:
            return self._post(body)

    def _post(self, body: dict[str, Any]) -> Reply:
        """POST once; again on a new connection if the kept-alive one was closed."""
        payload = json.dumps(body).encode()
        headers = {"content-type": "application/json", "accept": "application/json"}
        reused = self._conn is not None
        try:
            return self._exchange(payload, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self._close_connection()
            if not reused:
                raise
        return self._exchange(payload, headers)

    def _exchange(self, payload: bytes, headers: dict[str, str]) -> Reply:
        if self._conn is None:
            https = self._parts.scheme == "https"
            kind = http.client.HTTPSConnection if https else http.client.HTTPConnection
            self._conn = kind(self._parts.hostname, self._parts.port, timeout=self.timeout)
        self._conn.request("POST", self._target, payload, headers)
        response = self._conn.getresponse()
        raw = response.read()
        try:
            return Reply(response.status, json.loads(raw))
        except ValueError:
            return Reply(response.status, raw.decode(errors="replace"))

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _slot(self, index: int, frame: np.ndarray) -> SharedFrame:
        """The block for the ``index``-th frame, holding ``frame``."""
        nbytes = np.asarray(frame).nbytes
        if index < len(self._frames) and self._frames[index].capacity == nbytes:
            shared = self._frames[index]
        else:
            shared = self._replace(index, SharedFrame(nbytes))
        shared.write(frame, swap_rb=self.rgb)
        return shared

    def _replace(self, index: int, shared: SharedFrame) -> SharedFrame:
        """Put a new block at ``index``, freeing the one it replaces."""
        if index < len(self._frames):
            self._frames[index].close()
            self._frames[index] = shared
        else:
            self._frames.append(shared)
        return shared

    def close(self) -> None:
        """Free every block and the HTTP connection."""
        with self._lock:
            for shared in self._frames:
                shared.close()
            self._frames.clear()
            self._close_connection()

    def __enter__(self) -> "ShmClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
