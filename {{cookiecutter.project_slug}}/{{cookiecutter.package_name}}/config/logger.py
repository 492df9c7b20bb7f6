"""Logging set-up: console plus a shared rotating file, every line with its request id."""

import logging
import sys
from typing import Any

from ..lib.log import RequestIdFilter, SharedRotatingFileHandler, make_formatter, request_id_ctx
from . import Settings

_OWNED = "_atom_handler"  # marks the handlers configure_logging installed
_original_factory = logging.getLogRecordFactory()


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Create records stamped with the current request id, whichever handler gets them."""
    record = _original_factory(*args, **kwargs)
    record.request_id = request_id_ctx.get()
    return record


def configure_logging(settings: Settings) -> None:
    """Install the atom's handlers on the root logger; calling it again replaces them."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OWNED, False)]:
        root.removeHandler(handler)
        handler.close()

    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.log_file is not None:
        handlers.append(
            SharedRotatingFileHandler(
                settings.log_file, settings.log_file_max_bytes, settings.log_backup_count
            )
        )
    formatter, request_filter = make_formatter(), RequestIdFilter()
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
