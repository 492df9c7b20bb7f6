"""Logging set-up: console plus a shared rotating file, every line with its request id."""

import logging
import sys
from collections.abc import Callable
from typing import Any

from ..lib.log import (
    ConsoleHandler,
    RequestIdFilter,
    SharedRotatingFileHandler,
    make_formatter,
    request_id_ctx,
)
from . import Settings

_OWNED = "_atom_handler"  # marks the handlers configure_logging installed
_original_factory = logging.getLogRecordFactory()
_trace_id: Callable[[], str] | None = None  # set when SkyWalking is on


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Create records stamped with the request id (and trace id), whichever handler gets them."""
    record = _original_factory(*args, **kwargs)
    record.request_id = request_id_ctx.get()
    record.trace_id = _trace_id() if _trace_id is not None else "-"
    return record


def configure_logging(settings: Settings) -> None:
    """Install the atom's handlers on the root logger; calling it again replaces them."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OWNED, False)]:
        root.removeHandler(handler)
        handler.close()

    handlers: list[logging.Handler] = [ConsoleHandler(sys.stderr)]
    if settings.log_file is not None:
        handlers.append(
            SharedRotatingFileHandler(
                settings.log_file, settings.log_file_max_bytes, settings.log_backup_count
            )
        )
    global _trace_id  # noqa: PLW0603 - the factory is process-wide, like logging itself
    if settings.sw_switch:
        from .skywalking import trace_id  # noqa: PLC0415 - only with SW_SWITCH on

        _trace_id = trace_id
    else:
        _trace_id = None
    formatter, request_filter = make_formatter(traced=settings.sw_switch), RequestIdFilter()
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(request_filter)
        setattr(handler, _OWNED, True)
        root.addHandler(handler)
    root.setLevel(settings.log_level_number)
    logging.setLogRecordFactory(_record_factory)
    # uvicorn's own loggers go through the same handlers; its access log stays off
    # (routes log themselves, with the request id).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    # HTTP client libraries log every URL at INFO, query tokens included.
    for name in ("httpx", "httpx2", "httpcore", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
