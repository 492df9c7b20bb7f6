"""Logging pieces: the request-id context, the line format, and a rotating file handler
that several server processes can share.

``config.logger.configure_logging`` puts them together at start; nothing here installs a
handler at import. ``logger`` is the atom's logger, importable as in ``linker_atom``.
"""

import contextlib
import contextvars
import fcntl
import logging
import os
import time
from pathlib import Path

logger = logging.getLogger("{{ cookiecutter.package_name }}")

# The id of the request being served ("-" outside a request). Set by the request-id
# middleware; asyncio tasks and ``asyncio.to_thread`` inherit it.
request_id_ctx: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

LOG_FORMAT = (
    "%(asctime)s.%(msecs)03d %(levelname)s %(process)d [%(request_id)s] %(name)s: %(message)s"
)
# With SkyWalking on, the bracket also holds the trace id: [request-id tid=trace-id].
TRACED_LOG_FORMAT = LOG_FORMAT.replace("[%(request_id)s]", "[%(request_id)s tid=%(trace_id)s]")
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


class RequestIdFilter(logging.Filter):
    """Stamp a record made before logging was configured with the request and trace ids."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_ctx.get()
        if not hasattr(record, "trace_id"):
            record.trace_id = "-"
        return True


class LineFormatter(logging.Formatter):
    """The line format, made once per record for every handler that shares this formatter,
    with the date text made once per second (both show in the cost of a logged call)."""

    def __init__(self, fmt: str, datefmt: str) -> None:
        super().__init__(fmt, datefmt)
        self._date: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging's API
        second = int(record.created)
        cached = self._date
        if cached[0] != second:
            cached = (second, time.strftime(self.datefmt or DATE_FORMAT, self.converter(second)))
            self._date = cached
        return cached[1]

    def format(self, record: logging.LogRecord) -> str:
        cached = record.__dict__.get("_atom_line")
        if cached is not None and cached[0] is self:
            return cached[1]
        text = super().format(record)
        record._atom_line = (self, text)
        return text


def make_formatter(traced: bool = False) -> logging.Formatter:
    """The one line format of console and file (with the trace id when ``traced``)."""
    return LineFormatter(TRACED_LOG_FORMAT if traced else LOG_FORMAT, DATE_FORMAT)


class SharedRotatingFileHandler(logging.Handler):
    """A size-rotated log file that several processes append to at once.

    Each record is written with one ``write`` on an ``O_APPEND`` descriptor while an
    exclusive ``flock`` on ``<file>.lock`` is held, so lines never interleave. Under the
    same lock the handler notices a rotation made by another process (the path points
    to a new inode), and rotates itself before a record would push the file past
    ``max_bytes``. A record longer than ``max_bytes`` is cut so no file exceeds it.
    ``backup_count`` old files are kept (``atom.log.1`` is the newest); with 0, the
    file is emptied instead.
    """

    def __init__(self, filename: str | os.PathLike, max_bytes: int, backup_count: int) -> None:
        super().__init__()
        self.path = Path(filename)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._pid = -1

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            if len(data) > self.max_bytes:
                data = data[: self.max_bytes - 16] + b" ...(cut)\n"
            self._locked_write(data)  # handle() holds self.lock: one thread at a time
        except Exception:  # noqa: BLE001 - a log handler must never raise
            self.handleError(record)

    def _locked_write(self, data: bytes) -> None:
        """Append ``data`` while holding the cross-process lock, rotating first if needed."""
        if self._pid != os.getpid():
            self._reopen_after_fork()
        assert self._lock_fd is not None
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            size = self._current_size()
            if size and size + len(data) > self.max_bytes:
                self._rotate()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]  # type: ignore[arg-type]
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _reopen_after_fork(self) -> None:
        """Open our own descriptors: a lock shared with a parent would not exclude it."""
        self._close_fds()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._pid = os.getpid()

    def _current_size(self) -> int:
        """Size of the file at ``path``, reopening it if another process rotated it."""
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            on_disk = None
        if self._fd is not None and on_disk is not None:
            mine = os.fstat(self._fd)
            if (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino):
                return mine.st_size
        self._open_file()
        return os.fstat(self._fd).st_size  # type: ignore[arg-type]

    def _open_file(self) -> None:
        """(Re)open ``path`` for appending."""
        if self._fd is not None:
            os.close(self._fd)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        self._fd = os.open(self.path, flags, 0o644)

    def _rotate(self) -> None:
        """atom.log -> atom.log.1 -> ... -> atom.log.N; the oldest is dropped."""
        if self.backup_count > 0:
            for index in range(self.backup_count - 1, 0, -1):
                older = Path(f"{self.path}.{index}")
                if older.exists():
                    os.replace(older, f"{self.path}.{index + 1}")
            os.replace(self.path, f"{self.path}.1")
        else:
            os.unlink(self.path)
        self._open_file()

    def _close_fds(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = None

    def close(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._pid == os.getpid():
                self._close_fds()
        super().close()
