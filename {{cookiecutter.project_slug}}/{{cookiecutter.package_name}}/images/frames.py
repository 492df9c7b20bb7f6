"""Frames that other processes of the host pass by reference: the atom's (consumer's) side.

The request carries a small descriptor instead of the image:

- ``mmap`` (``linker_atom``'s form): raw BGR bytes at ``position`` in a file under
  IMAGE_MMAP_ROOTS: ``{"path", "position", "size", "height", "width"}``.
- ``shm``: a named POSIX shared-memory block: ``{"name", "shape", "dtype", "order"}``
  (``order``, "bgr" or "rgb", is optional and "bgr" by default). Only blocks named like
  the client's (``atom_...``, ``SHM_PREFIX``) and owned by the worker's own user are
  read: any other file of /dev/shm is refused without a word about it.

Both are read the same way: checked (``check``: shape, pixels and bytes, before any
memory is taken), then copied with ``pread`` into a new array (``read``). A copy, not a
mapping: a producer that shrinks a file or block while the atom reads it then causes a
short read, hence a 400, where a mapped view would kill the worker with SIGBUS. The
copy costs about a millisecond per 1080p frame (the template's BENCHMARKS.md).
``MmapReader`` and ``ShmReader`` hold no per-call state: any number of threads use them.

The producer's side (``SharedFrame``, ``publish_frame``, ``write_mmap_frame``,
``ShmClient``) is in ``client/shm.py``.
"""

import json
import math
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import VqlError
from .header import check_pixels
from .local_files import OPEN_FLAGS, open_under_roots, pread_into, resolve_roots

SHM_DIR = Path("/dev/shm")
SHM_PREFIX = "atom_"  # the names the client gives its blocks; the only ones read
SHM_NAME_RE = re.compile("/?(" + SHM_PREFIX + r"[A-Za-z0-9_.-]{1,200})")  # fullmatch
MMAP_KEYS = ("path", "position", "size", "height", "width")
SHM_KEYS = ("name", "shape", "dtype")
ORDERS = ("bgr", "rgb")
MAX_DESCRIPTOR_CHARS = 4096
MAX_DIMENSIONS = 4
MAX_INT = 2**53  # larger numbers in a descriptor are mistakes (and long to echo)
NOT_OURS_MSG = "no shared memory block of the atom's user by that name"


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


class MmapFrame(NamedTuple):
    """A checked mmap descriptor."""

    path: object
    position: int
    height: int
    width: int

    @property
    def nbytes(self) -> int:
        return self.height * self.width * 3


class MmapReader:
    """Reads ``linker_atom``'s mmap descriptors: raw BGR frames in files under ``roots``."""

    def __init__(self, roots: Sequence[str], *, max_bytes: int, max_pixels: int) -> None:
        self.roots = resolve_roots(roots)
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels

    def check(self, item: object) -> MmapFrame:
        """The descriptor, checked against the limits (the file is not opened yet)."""
        descriptor = parse_descriptor(item, MMAP_KEYS, "mmap")
        height = as_int(descriptor["height"], "height", 1)
        width = as_int(descriptor["width"], "width", 1)
        position = as_int(descriptor["position"], "position", 0)
        size = as_int(descriptor["size"], "size", 1)
        check_pixels(width, height, self.max_pixels)
        if size != height * width * 3:
            raise VqlError(501, f"size {size} is not height x width x 3 = {height * width * 3}")
        check_bytes(size, self.max_bytes)
        return MmapFrame(descriptor["path"], position, height, width)

    def read(self, item: object) -> np.ndarray:
        """The frame of a descriptor, as a new BGR ``uint8`` array (height x width x 3)."""
        frame = item if isinstance(item, MmapFrame) else self.check(item)
        fd, file_size = open_under_roots(frame.path, self.roots, "IMAGE_MMAP_ROOTS")
        try:
            end = frame.position + frame.nbytes
            if end > file_size:  # the file's own size is not told: it may not be ours
                raise VqlError(501, f"bytes {frame.position}..{end} are outside the file")
            image = np.empty((frame.height, frame.width, 3), np.uint8)
            pread_into(fd, image.data, frame.position)
        finally:
            os.close(fd)
        return image


class ShmFrame(NamedTuple):
    """A checked shm descriptor."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    order: str

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def parse_shm_descriptor(item: object) -> tuple[str, tuple[int, ...], np.dtype, str]:
    """(block name, shape, dtype, channel order) of a shm descriptor."""
    descriptor = parse_descriptor(item, SHM_KEYS, "shm")
    order = descriptor.get("order", "bgr")
    if order not in ORDERS:
        raise VqlError(501, "order must be 'bgr' or 'rgb'")
    name = descriptor["name"]
    match = SHM_NAME_RE.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise VqlError(501, f"invalid shared memory block name (it must start with {SHM_PREFIX})")
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
    """The frame of a shm descriptor, copied into a new array."""
    return ShmReader().read(item, max_bytes=max_bytes)[0]


def _open_block(name: str, nbytes: int) -> int:
    """A read-only descriptor of the block ``name``: the atom user's, holding ``nbytes``."""
    try:
        fd = os.open(SHM_DIR / name, OPEN_FLAGS)
    except OSError:
        raise VqlError(501, NOT_OURS_MSG) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise VqlError(501, NOT_OURS_MSG)
        if info.st_size < nbytes:
            raise VqlError(
                501, f"the shared memory block holds {info.st_size} bytes, its shape needs {nbytes}"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


class ShmReader:
    """Copies frames out of shared-memory blocks (see the module docstring)."""

    def check(self, item: object, *, max_bytes: int | None = None) -> ShmFrame:
        """The descriptor, checked (the block is not opened yet)."""
        frame = ShmFrame(*parse_shm_descriptor(item))
        check_bytes(frame.nbytes, max_bytes)
        return frame

    def read(self, item: object, *, max_bytes: int | None = None) -> tuple[np.ndarray, str]:
        """A copy of the frame of a descriptor, and its channel order."""
        frame = item if isinstance(item, ShmFrame) else self.check(item, max_bytes=max_bytes)
        fd = _open_block(frame.name, frame.nbytes)
        try:
            array = np.empty(frame.shape, frame.dtype)
            pread_into(fd, array.data, 0)
        finally:
            os.close(fd)
        return array, frame.order
