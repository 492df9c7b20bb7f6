"""``linker_atom``'s ``lib.common``: ``LRUCache``, ``record_duration``, ``catch_exc`` and
``format_long_val``, used by services moved in from it (the atom itself uses none).

The atom's own helpers that this module used to hold are re-exported under their old
names: log-safe values (``control/log_safety.py``), ``ms_since`` (``control/logs.py``)
and ``run_in_daemon_thread`` (``control/daemon.py``).
"""

import functools
import inspect
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from ..control.daemon import run_in_daemon_thread
from ..control.log_safety import (
    LOG_UNSAFE_RE,
    REDACTED,
    SECRET_KEY_RE,
    SECRET_WORDS,
    escape_for_log,
    format_long,
    redact_headers,
    redact_url_secrets,
    summarize,
)
from ..control.logs import ms_since

__all__ = [
    "LOG_UNSAFE_RE",
    "REDACTED",
    "SECRET_KEY_RE",
    "SECRET_WORDS",
    "LRUCache",
    "catch_exc",
    "default_sizeof",
    "escape_for_log",
    "format_long",
    "format_long_val",
    "ms_since",
    "record_duration",
    "redact_headers",
    "redact_url_secrets",
    "run_in_daemon_thread",
    "summarize",
]

logger = logging.getLogger(__name__)


def default_sizeof(value: Any) -> int:
    """Bytes a cached value holds: ``nbytes`` for arrays, length for bytes, else getsizeof."""
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if isinstance(value, bytes | bytearray):
        return len(value)
    return sys.getsizeof(value)


class LRUCache:
    """A thread-safe least-recently-used cache bounded by item count and by bytes.

    ``capacity`` is the most items it holds (``linker_atom``'s name and first argument). A
    value larger than ``max_bytes`` on its own is not stored (``put`` returns False).
    """

    def __init__(
        self,
        capacity: int = 128,
        max_bytes: int | None = None,
        sizeof: Callable[[Any], int] = default_sizeof,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be at least 1 or None")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._sizeof = sizeof
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()

    def has(self, key: Hashable) -> bool:
        """Whether ``key`` is cached (``linker_atom``'s name of ``key in cache``)."""
        return key in self._data

    def get(self, key: Hashable, default: Any = None) -> Any:
        """Return the value (marking it recently used) or ``default``."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return default
            self._data.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, value: Any) -> bool:
        """Store a value, evicting the least recently used ones to stay within bounds."""
        size = self._sizeof(value)
        if self.max_bytes is not None and size > self.max_bytes:
            self.pop(key)
            return False
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._nbytes -= old[1]
            self._data[key] = (value, size)
            self._nbytes += size
            while len(self._data) > self.capacity or (
                self.max_bytes is not None and self._nbytes > self.max_bytes
            ):
                _, (_, evicted) = self._data.popitem(last=False)
                self._nbytes -= evicted
        return True

    def pop(self, key: Hashable, default: Any = None) -> Any:
        """Remove a value and return it, or ``default``."""
        with self._lock:
            entry = self._data.pop(key, None)
            if entry is None:
                return default
            self._nbytes -= entry[1]
            return entry[0]

    def clear(self) -> None:
        """Remove everything."""
        with self._lock:
            self._data.clear()
            self._nbytes = 0

    @property
    def cache(self) -> "OrderedDict[Hashable, Any]":
        """A copy of the contents, least recently used first (``linker_atom`` exposed its dict)."""
        with self._lock:
            return OrderedDict((key, entry[0]) for key, entry in self._data.items())

    @property
    def nbytes(self) -> int:
        """Bytes currently held, as measured by ``sizeof``."""
        return self._nbytes

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data


def record_duration(func: Callable[..., Any]) -> Callable[..., Any]:
    """Log ``<name> duration: <ms>ms`` at DEBUG after each call (sync or async)."""

    def report(started: float) -> None:
        logger.debug("%s duration: %.3fms", func.__name__, ms_since(started), stacklevel=3)

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = await func(*args, **kwargs)
            report(started)
            return result

        return async_timed

    @functools.wraps(func)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = func(*args, **kwargs)
        report(started)
        return result

    return timed


def catch_exc(
    calc_time: bool = False, default_data: Any = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator that logs an ``Exception`` (with its traceback) and returns ``default_data``.

    It swallows the error, as ``linker_atom``'s did: use it where a failure may be ignored,
    never around a route (the caller would get ``default_data`` as a success). With
    ``calc_time``, the call's duration is logged at DEBUG, in seconds.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        def finish(started: float) -> None:
            if calc_time:
                seconds = time.perf_counter() - started
                logger.debug("%s duration: %.3fs", func.__name__, seconds, stacklevel=3)

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_guarded(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await func(*args, **kwargs)
                except Exception:
                    logger.exception("%s failed; returning %r", func.__name__, default_data)
                    return default_data
                finally:
                    finish(started)

            return async_guarded

        @functools.wraps(func)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return func(*args, **kwargs)
            except Exception:
                logger.exception("%s failed; returning %r", func.__name__, default_data)
                return default_data
            finally:
                finish(started)

        return guarded

    return decorate


def format_long_val(data: Any) -> Any:
    """The same structure with strings cut to 200 characters and bytes to 20 (for logs).

    Dicts and lists are walked (their length kept); other values are returned as they are.
    ``summarize`` does more (redaction, counts, arrays) and is what the atom's logs use.
    """
    if isinstance(data, dict):
        return {key: format_long_val(value) for key, value in data.items()}
    if isinstance(data, list):
        return [format_long_val(value) for value in data]
    if isinstance(data, str):
        return data[:200]
    if isinstance(data, bytes):
        return data[:20]
    return data
