"""``linker_atom``'s ``lib.log``: ``logger``, the atom's logger.

Logging is set up once at start (``config.logger.configure_logging``, from
``control/logs.py``); ``flush_all()`` writes the lines still waiting in the batched
handlers (tests call it before reading a log file). ``truncate_msg`` and
``build_current_date_str`` are ``linker_atom``'s helpers; its writer, handler, filter and
logger classes are not kept (docs/migration.md): the atom's handlers rotate one shared file.
"""

import logging
import time
from typing import Any

from ..control.log_handlers import flush_all
from ..control.logs import request_id_ctx

__all__ = ["build_current_date_str", "flush_all", "logger", "request_id_ctx", "truncate_msg"]

logger = logging.getLogger({{ cookiecutter.package_name | tojson }})


def build_current_date_str() -> str:
    """Today's date as ``YYYYMMDD`` (local time)."""
    return time.strftime("%Y%m%d")


def truncate_msg(msg: Any) -> Any:
    """A log-sized copy: strings cut to 200 characters, bytes to 20, lists to 10 items.

    Dicts and lists are walked; an object with attributes becomes its truncated
    ``__dict__``; anything else is returned as it is.
    """
    if isinstance(msg, dict):
        return {key: truncate_msg(value) for key, value in msg.items()}
    if isinstance(msg, list):
        return [truncate_msg(value) for value in msg[:10]]
    if isinstance(msg, str):
        return msg[:200]
    if isinstance(msg, bytes):
        return msg[:20]
    attributes = getattr(msg, "__dict__", None)
    if isinstance(attributes, dict):
        return truncate_msg(attributes)
    return msg
