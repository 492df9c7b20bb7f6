"""``linker_atom``'s ``lib.share_memory``: frames passed between processes of one host.

The atom's side (reading ``mmap`` and ``shm`` descriptors) is in ``images/frames.py``;
the producer's side (``SharedFrame``, ``publish_frame``, ``write_mmap_frame``,
``ShmClient``) in ``client/shm.py``. Both are importable from here.

``MmapManager(path).read(position, size)`` is ``linker_atom``'s raw read. Each call makes
its own object: the original's was a process-wide singleton whose ``path`` the last
caller set, so two threads reading two files could read each other's. The file must be
under IMAGE_MMAP_ROOTS (none by default: set it first) and the bytes inside it, as for
``mmap`` items. ``CacheManager`` and ``FileManager`` are its small expiring cache.
"""

import mmap
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..client.shm import Reply, SharedFrame, ShmClient, publish_frame, write_mmap_frame
from ..images.frames import MmapReader, ShmReader, check_bytes, open_frame, parse_shm_descriptor
from ..images.loader import default_loader
from ..images.local_files import open_under_roots, pread_into
from .exception import VqlError

__all__ = [
    "CacheManager",
    "FileManager",
    "MmapManager",
    "MmapReader",
    "Reply",
    "SharedFrame",
    "ShmClient",
    "ShmReader",
    "open_frame",
    "parse_shm_descriptor",
    "publish_frame",
    "write_mmap_frame",
]


class MmapManager:
    """Reads raw bytes of a file under IMAGE_MMAP_ROOTS (``linker_atom``'s signature).

    ``length`` (0: the whole file) bounds the readable bytes; ``flags``, ``prot`` and
    ``period`` are accepted and unused (the bytes are read with ``pread``, so a file cut
    short meanwhile gives an error instead of a SIGBUS).
    """

    def __init__(
        self,
        path: str,
        length: int = 0,
        flags: int = mmap.MAP_SHARED,
        prot: int = mmap.PROT_READ,
        period: int = 60 * 10,
    ) -> None:
        self.path = path
        self.length = length
        self.flags = flags
        self.prot = prot
        self.period = period

    def read(self, position: int, size: int) -> bytes:
        """``size`` bytes from ``position``; a ``VqlError`` (501) outside the file or its roots."""
        loader = default_loader()
        if position < 0 or size < 0:
            raise VqlError(501, "position and size must be >= 0")
        check_bytes(size, loader.max_bytes)
        fd, file_size = open_under_roots(self.path, loader.mmap_reader.roots, "IMAGE_MMAP_ROOTS")
        try:
            end = min(file_size, self.length) if self.length else file_size
            if position + size > end:
                raise VqlError(501, f"bytes {position}..{position + size} are outside the file")
            buffer = bytearray(size)
            pread_into(fd, buffer, position)
        finally:
            os.close(fd)
        return bytes(buffer)


@dataclass
class FileManager:
    """A cached value and when it was stored (``time.time()``)."""

    connect_time: float
    fn: Any


class CacheManager:
    """Values that expire ``period`` seconds after they were stored (thread-safe)."""

    def __init__(self, period: float = 60) -> None:
        self.period = period
        self.cache: OrderedDict[Any, FileManager] = OrderedDict()
        self._lock = threading.Lock()

    def set(self, name: Any, value: Any) -> None:
        """Store ``value`` under ``name``."""
        with self._lock:
            self._expire()
            self.cache[name] = FileManager(connect_time=time.time(), fn=value)

    def get(self, name: Any, default: Any = None) -> Any:
        """The value stored under ``name`` if it has not expired, else ``default``."""
        with self._lock:
            self._expire()
            entry = self.cache.get(name)
            return default if entry is None else entry.fn

    def expire(self) -> None:
        """Drop the expired values."""
        with self._lock:
            self._expire()

    def _expire(self) -> None:
        now = time.time()
        expired = [
            name for name, entry in self.cache.items() if now - entry.connect_time > self.period
        ]
        for name in expired:
            del self.cache[name]
