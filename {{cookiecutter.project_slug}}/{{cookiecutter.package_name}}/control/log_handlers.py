"""The two log handlers: console, and a rotating file that several processes share.

Both write in batches: a line waits at most ``FLUSH_INTERVAL`` seconds, or none at all
when it is a WARNING or worse (earlier lines go first, so the order is kept). Lines are
flushed at exit (``logging.shutdown``) and, once ``register_fork_hooks()`` ran (logging
set-up does it), before ``os.fork``. Batching saves most of the cost of a logged call:
one write, and one lock of the shared file, per batch instead of per line.
"""

import collections
import contextlib
import fcntl
import logging
import os
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import TextIO

FLUSH_INTERVAL = 0.05  # seconds a line below WARNING may wait before it is written
MAX_PENDING = 512  # lines a handler holds before it writes them whatever the time


class BatchedHandler(logging.Handler):
    """A handler that formats each record at once and writes the lines in batches.

    Subclasses implement ``write_lines``. A background thread (one per process, started
    with the first pending line) flushes every handler ``FLUSH_INTERVAL`` seconds after
    a line is pending; a WARNING or worse, or ``MAX_PENDING`` lines, flush at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self._pending: list[str] = []
        # Batches taken from _pending, written in order by whoever holds _write_lock. The
        # handler's lock is never held while writing: a route queuing its line never waits
        # for a slow disk or console pipe, only for the swap of a list.
        self._batches: collections.deque[list[str]] = collections.deque()
        self._write_lock = threading.Lock()
        _BATCHED.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - a log handler must never raise
            self.handleError(record)
            return
        self.queue_line(line, record.levelno or 0)  # handle() holds self.lock (an RLock)

    def queue_line(self, line: str, levelno: int) -> None:
        """Queue a formatted line (``emit``, and ``control.logs.log_line`` directly)."""
        lock = self.lock
        assert lock is not None  # Handler.__init__ creates it
        with lock:
            pending = self._pending
            pending.append(line)
            if levelno >= logging.WARNING or len(pending) >= MAX_PENDING:
                self.flush()
            elif len(pending) == 1:
                _FLUSHER.wake()

    def flush(self) -> None:
        """Write the pending lines now (when this returns, every line queued before the call
        is written, by this thread or by one that was writing already)."""
        lock = self.lock
        assert lock is not None  # Handler.__init__ creates it
        with lock:
            if self._pending:
                self._batches.append(self._pending)
                self._pending = []
        # Taken even with nothing left to take: another thread may be writing the batch
        # this call put in the deque. Never the handler's lock while holding this one (a
        # WARNING flushes from inside the handler's lock): the deque needs no lock.
        with self._write_lock:
            while self._batches:
                self._write_batch(self._batches.popleft())

    def _write_batch(self, lines: list[str]) -> None:
        try:
            self.write_lines(lines)
        except ValueError:  # a closed stream (at exit): nowhere to write
            pass
        except Exception as exc:  # noqa: BLE001 - a log handler must never raise
            stream = sys.__stderr__
            if logging.raiseExceptions and stream is not None:
                with contextlib.suppress(Exception):
                    stream.write(f"--- logging: {len(lines)} lines lost: {exc!r}\n")

    def write_lines(self, lines: list[str]) -> None:
        """Write formatted lines (without their newlines), in order."""
        raise NotImplementedError

    def close(self) -> None:
        self.flush()
        super().close()

    def _forget_pending(self) -> None:
        """In a forked child: the parent writes its own lines."""
        self._pending = []
        self._batches.clear()
        self._write_lock = threading.Lock()  # a thread of the parent may have held it


class _Flusher:
    """The daemon thread that flushes the batched handlers of this process."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._pid = -1
        self._lock = threading.Lock()

    def wake(self) -> None:
        """A line is pending: flush within FLUSH_INTERVAL."""
        if self._pid != os.getpid():
            self._start()
        self._event.set()

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._event = threading.Event()
            threading.Thread(
                target=self._run, args=(self._event,), name="log-flush", daemon=True
            ).start()
            self._pid = os.getpid()

    @staticmethod
    def _run(event: threading.Event) -> None:
        while True:
            event.wait()
            time.sleep(FLUSH_INTERVAL)
            event.clear()
            with contextlib.suppress(Exception):  # the thread must outlive any error
                flush_all()


_BATCHED: "weakref.WeakSet[BatchedHandler]" = weakref.WeakSet()
_FLUSHER = _Flusher()


def flush_all() -> None:
    """Write every batched handler's pending lines now (tests, and before a fork)."""
    for handler in list(_BATCHED):
        handler.flush()


def _after_fork_in_child() -> None:
    for handler in list(_BATCHED):
        handler._forget_pending()


_fork_hooks = threading.Lock()
_fork_hooks_registered = False


def register_fork_hooks() -> None:
    """Flush before ``os.fork`` and drop the copied lines in the child (once per process)."""
    global _fork_hooks_registered  # noqa: PLW0603 - fork hooks are process-wide
    with _fork_hooks:
        if not _fork_hooks_registered:
            os.register_at_fork(before=flush_all, after_in_child=_after_fork_in_child)
            _fork_hooks_registered = True


class ConsoleHandler(BatchedHandler):
    """Lines to a text stream (stderr by default), written in batches."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream if stream is not None else sys.stderr

    def write_lines(self, lines: list[str]) -> None:
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()


class SharedRotatingFileHandler(BatchedHandler):
    """A size-rotated log file that several processes append to at once.

    Each batch of lines is written with ``write`` calls on an ``O_APPEND`` descriptor
    while an exclusive ``flock`` on ``<file>.lock`` is held, so lines never interleave.
    Under the same lock the handler notices a rotation made by another process (the path
    points to a new inode), and rotates itself before a line would push the file past
    ``max_bytes``. A line longer than ``max_bytes`` is cut so no file exceeds it.
    ``backup_count`` old files are kept (``atom.log.1`` is the newest); with 0, the
    file is emptied instead. With an ``owner`` (uid, gid), the files it creates are given to
    that user: nginx_run started as root shares the file with workers that are not.
    """

    def __init__(
        self,
        filename: str | os.PathLike,
        max_bytes: int,
        backup_count: int,
        owner: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(filename)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self.owner = owner
        self._fd: int | None = None
        self._lock_fd: int | None = None
        self._pid = -1

    def write_lines(self, lines: list[str]) -> None:
        self._locked_write(lines, ("\n".join(lines) + "\n").encode("utf-8", "backslashreplace"))

    def _chunks(self, lines: list[str]) -> list[bytes]:
        """Each line as bytes, cut when longer than ``max_bytes``."""
        limit = self.max_bytes
        chunks = []
        for line in lines:
            data = (line + "\n").encode("utf-8", "backslashreplace")
            if len(data) > limit:
                data = data[: limit - 16] + b" ...(cut)\n"
            chunks.append(data)
        return chunks

    def _locked_write(self, lines: list[str], joined: bytes) -> None:
        """Append the lines while holding the cross-process lock: in one write when they fit
        in the current file, else line by line, rotating when one would not fit."""
        if self._pid != os.getpid():
            self._reopen_after_fork()
        assert self._lock_fd is not None
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            size = self._current_size()
            if size + len(joined) <= self.max_bytes:
                self._write(joined)
                return
            chunks = self._chunks(lines)
            start = 0
            for index, chunk in enumerate(chunks):
                if size and size + len(chunk) > self.max_bytes:
                    self._write(b"".join(chunks[start:index]))
                    self._rotate()
                    start, size = index, 0
                size += len(chunk)
            self._write(b"".join(chunks[start:]))
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]  # type: ignore[arg-type]

    def _reopen_after_fork(self) -> None:
        """Open our own descriptors: a lock shared with a parent would not exclude it."""
        self._close_fds()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._give(self._lock_fd)
        self._pid = os.getpid()

    def _give(self, fd: int) -> None:
        """The file of ``fd`` to ``owner``, when there is one and it is not already its."""
        if self.owner is not None and os.fstat(fd).st_uid != self.owner[0]:
            os.fchown(fd, *self.owner)

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
        self._give(self._fd)

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
        self.flush()
        with self.lock:  # type: ignore[union-attr]
            if self._pid == os.getpid():
                self._close_fds()
        super().close()
