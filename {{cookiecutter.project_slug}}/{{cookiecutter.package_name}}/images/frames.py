"""Frames that other processes of the host pass by reference: the atom's (consumer's) side.

The request carries a small descriptor instead of the image:

- ``mmap`` (``linker_atom``'s form): raw BGR bytes at ``position`` in a file, e.g. under
  /dev/shm: ``{"path", "position", "size", "height", "width"}``. ``MmapReader`` reads
  them, bounds-checked, from any number of threads (it holds no per-call state), with
  ``pread`` rather than a mapping, so a file cut short meanwhile gives an error, not a
  SIGBUS.
- ``shm``: a named POSIX shared-memory block: ``{"name", "shape", "dtype", "order"}``
  (``order``, "bgr" or "rgb", is optional and "bgr" by default). ``open_frame`` and
  ``ShmMapper`` (one per ``ImageLoader``, which keeps recent mappings for reuse) give a
  read-only array mapped on the block, without a copy.

The producer's side (``SharedFrame``, ``publish_frame``, ``write_mmap_frame``,
``ShmClient``) is in ``client/shm.py``.

The consumer maps ``/dev/shm/<name>`` with a plain read-only ``mmap`` instead of
``SharedMemory(name)``: on Python 3.11 and 3.12 attaching with ``SharedMemory`` registers
the block with the consumer's resource tracker, which unlinks it when the consumer exits
(pulling it from under its producer) and warns about a "leaked" object. The mapping
lasts as long as the array that uses it; the producer may unlink the block meanwhile.
The producer must not shrink a block while a consumer reads it.
"""

import json
import math
import mmap
import os
import re
import stat
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..lib.exception import VqlError
from .header import check_pixels
from .local_files import OPEN_FLAGS, open_under_roots, pread_into, resolve_roots

SHM_DIR = Path("/dev/shm")
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
            pread_into(fd, frame.data, position)
        finally:
            os.close(fd)
        return frame


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
