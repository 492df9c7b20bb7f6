"""Open files named by a caller, only under configured roots.

Paths must be absolute; symlinks are resolved before the check, the last component is
opened without following a symlink, and the file actually opened is checked again (so
swapping a path for a symlink after the check does not escape). Only regular files are
read (a FIFO or a device would block or never end). Every refusal is a ``VqlError``,
also when the path changes while it is being resolved or read (a race, not a 500).
"""

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from ..errors import VqlError

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
PROC_FD = Path("/proc/self/fd")


def resolve_roots(roots: Iterable[str]) -> tuple[str, ...]:
    """The real paths of the configured roots."""
    return tuple(os.path.realpath(root) for root in roots)


def is_within(path: str, roots: Iterable[str]) -> bool:
    """True when ``path`` is one of ``roots`` or lies below one of them."""
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _opened_path(fd: int) -> str | None:
    """The path the kernel holds for an open descriptor (Linux), or None elsewhere."""
    try:
        return os.readlink(PROC_FD / str(fd))
    except OSError:
        return None


def _checked_path(path: object, roots: tuple[str, ...], setting: str) -> str:
    """The real path of ``path``, refused unless it is absolute and under ``roots``."""
    if not roots:
        raise VqlError(504, f"reading files is disabled on this atom (set {setting})")
    if not isinstance(path, str) or not path or "\x00" in path:
        raise VqlError(501, "the path must be a non-empty string")
    if not os.path.isabs(path):
        raise VqlError(501, "the path must be absolute")
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError):  # a component changed while it was resolved
        raise VqlError(501, "the path cannot be resolved") from None
    if not is_within(real, roots):
        raise VqlError(501, f"the path is outside {setting}")
    return real


def open_under_roots(path: object, roots: tuple[str, ...], setting: str) -> tuple[int, int]:
    """Open a regular file under ``roots`` for reading; return (descriptor, size in bytes).

    ``setting`` names the variable that holds the roots, for the error messages.
    """
    real = _checked_path(path, roots, setting)
    try:
        fd = os.open(real, OPEN_FLAGS)
    except FileNotFoundError:
        raise VqlError(501, "no such file") from None
    except OSError:
        raise VqlError(501, "the file cannot be opened") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise VqlError(501, "not a regular file")
        opened = _opened_path(fd)
        if opened is not None and not is_within(opened, roots):
            raise VqlError(501, f"the path is outside {setting}")
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def pread_into(fd: int, buffer: bytearray | memoryview, position: int) -> None:
    """Fill ``buffer`` from ``position``; ``VqlError`` 501 if the file ends first."""
    view = memoryview(buffer).cast("B")
    size, done = len(view), 0
    while done < size:
        try:
            count = os.preadv(fd, [view[done:]], position + done)
        except OSError:
            raise VqlError(501, "the file cannot be read") from None
        if count == 0:
            raise VqlError(501, f"the file ended after {position + done} bytes")
        done += count
