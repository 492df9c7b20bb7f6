"""Logging set-up from the settings: console plus a shared rotating file, every line with
its request id (the pieces are in ``control/logs.py``). ``LoggerConfig`` is
``linker_atom``'s (``lib/settings.py``)."""

from collections.abc import Callable
from typing import Any

from ..control.logs import configure_logging as configure
from . import Settings

__all__ = ["configure_logging"]


def configure_logging(settings: Settings, file_owner: tuple[int, int] | None = None) -> None:
    """Install the atom's log handlers as the settings say; calling it again replaces them.

    ``file_owner`` (uid, gid) gets the log files this process creates (nginx_run as root).
    """
    trace_id: Callable[[], str] | None = None
    if settings.sw_switch:
        from .skywalking import trace_id  # noqa: PLC0415 - only with SW_SWITCH on
    configure(
        level=settings.log_level_number,
        file=settings.log_file,
        max_bytes=settings.log_file_max_bytes,
        backup_count=settings.log_backup_count,
        trace_id=trace_id,
        file_owner=file_owner,
    )


def __getattr__(name: str) -> Any:
    """``LoggerConfig``: ``linker_atom``'s, from the compatibility package on first use."""
    if name == "LoggerConfig":
        from ..lib.settings import LoggerConfig  # noqa: PLC0415 - the core never imports lib

        return LoggerConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
