"""Client-side helpers: send frames to an atom of the same host without encoding them.

- ``SharedFrame`` / ``publish_frame``: a named POSIX shared-memory block holding one
  frame (``multiprocessing.shared_memory``). Send its ``.descriptor`` (src_type ``shm``)
  and ``close()`` it once the reply is in (or use ``with``).
- ``write_mmap_frame``: raw BGR bytes in a file, for ``linker_atom``'s ``mmap`` src_type.
- ``ShmClient``: posts frames to an atom route through shared memory, swapping BGR to RGB
  while it copies them in, so that the atom's RGB load needs no conversion (it copies
  the frame out with one ``pread``: a producer cannot crash it by shrinking a block).

Lifecycle: the producer owns its blocks; ``SharedFrame.close()``, garbage collection or
the end of the interpreter unlinks them. The atom's side is ``images/frames.py``.
"""

import contextlib
import http.client
import json
import os
import threading
import uuid
import weakref
from collections.abc import Sequence
from multiprocessing import shared_memory
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import cv2
import numpy as np

from ..images.frames import ORDERS, SHM_NAME_RE, SHM_PREFIX


def write_mmap_frame(path: str | os.PathLike[str], frame: np.ndarray, position: int = 0) -> dict:
    """Write a BGR ``uint8`` frame at ``position`` of a file (created if missing).

    Returns its mmap descriptor. The producer's side of ``MmapReader``.
    """
    frame = np.ascontiguousarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError("an mmap frame is uint8 height x width x 3 (BGR)")
    data = frame.data.cast("B")
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


def _release(block: shared_memory.SharedMemory) -> None:
    """Unmap and unlink a producer's block (once)."""
    block.close()
    with contextlib.suppress(FileNotFoundError):
        block.unlink()


class SharedFrame:
    """A named shared-memory block holding one frame: the producer's side.

    ``write(frame)`` copies a frame in (any later frame of at most ``capacity`` bytes
    can reuse the block); ``descriptor`` is what the consumer needs; ``close()`` unmaps
    and unlinks the block, and also happens on garbage collection or at exit. A ``name``
    must start with ``atom_`` (``SHM_PREFIX``): the atom reads no other block, and only
    blocks of its own user.
    ``order`` tells the consumer the channel order of a height x width x 3 frame.
    """

    def __init__(self, capacity: int, *, name: str | None = None) -> None:
        if capacity <= 0:
            raise ValueError("a shared frame needs at least one byte")
        name = name or f"{SHM_PREFIX}{uuid.uuid4().hex}"
        if not SHM_NAME_RE.fullmatch(name):
            raise ValueError(f"the atom reads only blocks named {SHM_PREFIX}[A-Za-z0-9_.-]")
        self.capacity = capacity
        self._block = shared_memory.SharedMemory(name=name, create=True, size=capacity)
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
    loads RGB (``load_image``'s default) reads them without converting; ``rgb=False``
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
        self._host = parts.hostname
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
            self._conn = kind(self._host, self._parts.port, timeout=self.timeout)
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

    @property
    def block_names(self) -> list[str]:
        """The names of the shared-memory blocks the client holds now, one per frame slot."""
        with self._lock:
            return [shared.name for shared in self._frames]

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
