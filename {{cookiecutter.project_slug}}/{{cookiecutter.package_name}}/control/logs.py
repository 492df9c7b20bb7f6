"""Logging set-up: one line format, every line stamped with its request id, two handlers.

``configure_logging`` installs the console and the shared rotating file handlers
(``log_handlers.py``) on the root logger, once per process at start; nothing here
installs a handler at import. The request id of the call being served lives in
``request_id_ctx`` (the request-context middleware sets it); ``RequestIdFilter`` on each
handler is the one place that copies it, and the SkyWalking trace id when tracing is on,
into the records.
"""

import contextvars
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .log_handlers import (
    BatchedHandler,
    ConsoleHandler,
    SharedRotatingFileHandler,
    register_fork_hooks,
)
from .log_safety import escape_for_log

# The id of the request being served ("-" outside a request). Set by the request-context
# middleware; asyncio tasks, ``run_in_threadpool`` and the image loading threads inherit it.
request_id_ctx: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

LOG_FORMAT = (
    "%(asctime)s.%(msecs)03d %(levelname)s %(process)d [%(request_id)s] %(name)s: %(message)s"
)
# With SkyWalking on, the bracket also holds the trace id: [request-id tid=trace-id].
TRACED_LOG_FORMAT = LOG_FORMAT.replace("[%(request_id)s]", "[%(request_id)s tid=%(trace_id)s]")
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_OWNED = "_atom_handler"  # marks the handlers configure_logging installed
CONTINUATION = "\n  "  # how the second and later lines of one record start


def ms_since(started: float) -> float:
    """Milliseconds elapsed since a ``time.perf_counter()`` reading (log lines give
    durations in milliseconds)."""
    return (time.perf_counter() - started) * 1000


def one_record(text: str) -> str:
    """A formatted record that cannot pass for several: control characters escaped, and
    each line after the first (a traceback, a multi-line message) indented."""
    if text.isprintable():  # else a text without anything unsafe comes out the same
        return text
    return CONTINUATION.join(escape_for_log(line) for line in text.split("\n"))


def _no_trace() -> str:
    return "-"


class RequestIdFilter(logging.Filter):
    """Stamp each record with the current request id and trace id (whoever created it)."""

    def __init__(self, trace_id: Callable[[], str] | None = None) -> None:
        super().__init__()
        self.trace_id = trace_id or _no_trace

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_ctx.get()
        record.trace_id = self.trace_id()
        return True


class LineFormatter(logging.Formatter):
    """The line format, made once per record for every handler that shares this formatter,
    with the date text made once per second (both show in the cost of a logged call).

    No record can forge another: control characters are escaped and continuation lines
    indented (``one_record``), so every line that starts at column 0 starts a record.
    """

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

    def line(self, levelno: int, name: str, message: str) -> str:
        """The line ``format`` makes of a record of ``message`` logged now by ``name``
        (the untraced format, escaped the same way), without making the record."""
        now = time.time()
        second = int(now)
        cached = self._date
        if cached[0] != second:
            cached = (second, time.strftime(self.datefmt or DATE_FORMAT, self.converter(second)))
            self._date = cached
        return one_record(
            f"{cached[1]}.{int((now - second) * 1000):03d} {logging.getLevelName(levelno)}"
            f" {os.getpid()} [{request_id_ctx.get()}] {name}: {message}"
        )

    def format(self, record: logging.LogRecord) -> str:
        cached = record.__dict__.get("_atom_line")
        if cached is not None and cached[0] is self:
            return cached[1]
        text = one_record(super().format(record))
        record._atom_line = (self, text)
        return text


class _Direct:
    """The handlers and formatter configure_logging installed, to queue finished lines into."""

    def __init__(self, handlers: list[BatchedHandler], formatter: LineFormatter) -> None:
        self.handlers = handlers
        self.formatter = formatter
        # What a change of our handlers' filters, formatter or level would change.
        self.configured = [(h, h.filters[:], h.formatter, h.level) for h in handlers]

    def reaches_only_ours(self, logger: logging.Logger, level: int) -> bool:
        """True when a record of ``logger`` at ``level`` would reach our handlers alone, as
        configured: no other handler or filter on the way, nothing changed since."""
        node: logging.Logger | None = logger
        while node is not None:
            if node.filters or node.disabled:
                return False
            if node.parent is None:  # the root logger (a Handler equals only itself)
                if node.handlers != self.handlers:
                    return False
                for handler, filters, formatter, handler_level in self.configured:
                    if (
                        handler.filters != filters
                        or handler.formatter is not formatter
                        or handler.level != handler_level
                    ):
                        return False
                return True
            if node.handlers or not node.propagate:
                return False
            node = node.parent
        return False


_direct: _Direct | None = None


def log_line(logger: logging.Logger, level: int, message: str) -> None:
    """Log ``message`` (already formatted) at ``level``: the routes' call lines.

    When the record would reach only the handlers that configure_logging installed (no
    other handler or filter on the way, SkyWalking off), the line is made here as their
    formatter makes it and queued directly: creating the LogRecord and running
    the format are most of the cost of a logged call. Otherwise it goes through
    ``logger.log`` like any record. The two give the same line (tests/test_log.py).
    """
    direct = _direct
    if direct is not None and direct.reaches_only_ours(logger, level):
        line = direct.formatter.line(level, logger.name, message)
        for handler in direct.handlers:
            handler.queue_line(line, level)
    else:
        logger.log(level, "%s", message)


def make_formatter(traced: bool = False) -> LineFormatter:
    """The one line format of console and file (with the trace id when ``traced``)."""
    return LineFormatter(TRACED_LOG_FORMAT if traced else LOG_FORMAT, DATE_FORMAT)


def configure_logging(
    *,
    level: int = logging.INFO,
    file: Path | None = None,
    max_bytes: int = 100 << 20,
    backup_count: int = 30,
    trace_id: Callable[[], str] | None = None,
    file_owner: tuple[int, int] | None = None,
) -> None:
    """Install the atom's handlers on the root logger; calling it again replaces them.

    ``file`` adds the shared rotating file (the files it creates given to ``file_owner``);
    ``trace_id`` (SkyWalking's) puts the trace id into every line.
    """
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OWNED, False)]:
        root.removeHandler(handler)
        handler.close()
    outputs: list[BatchedHandler] = [ConsoleHandler(sys.stderr)]
    if file is not None:
        outputs.append(SharedRotatingFileHandler(file, max_bytes, backup_count, file_owner))
    global _direct  # noqa: PLW0603 - logging's configuration is process-wide
    formatter = make_formatter(traced=trace_id is not None)
    stamp = RequestIdFilter(trace_id)
    for handler in outputs:  # one formatter: a record is formatted once for both
        handler.setFormatter(formatter)
        handler.addFilter(stamp)
        setattr(handler, _OWNED, True)
        root.addHandler(handler)
    root.setLevel(level)
    traced = trace_id is not None
    _direct = None if traced else _Direct(outputs, formatter)
    # The line format names no source file, line, function or process name: the logging
    # module's documented switches spare finding them for every record (a walk up the
    # stack, a lookup of the multiprocessing module). Thread ids stay (tracing uses them).
    # ``_srcfile`` is underscored but public by documentation: the Logging HOWTO's
    # "Optimization" table gives ``logging._srcfile = None`` as the way to skip it.
    logging._srcfile = None
    logging.logMultiprocessing = False
    register_fork_hooks()
    # uvicorn's own loggers go through the same handlers; its access log stays off
    # (routes log themselves, with the request id).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # HTTP client libraries log every URL at INFO, query tokens included.
    for name in ("httpx", "httpx2", "httpcore", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
