"""Small helpers used across the atom: log-safe values and redaction, timing, daemon threads,
and a bounded cache; and ``linker_atom``'s decorators (``catch_exc``, ``record_duration``)
and ``format_long_val``."""

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import re
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import orjson

logger = logging.getLogger(__name__)

# Keys whose values are secrets: headers, JSON fields, query parameters (S3 and GCS
# signatures and credentials, Azure's sig, API keys, OAuth tokens...).
SECRET_KEY_RE = re.compile(
    r"authorization|cookie|token|secret|passw(or)?d|pwd|api[-_]?key|credential|session"
    r"|signature|(^|[-_.])(key|sig|auth)($|[-_.])",
    re.I,
)
REDACTED = "***"
# Lower-case substrings that every match of SECRET_KEY_RE contains: a fast first test.
SECRET_WORDS = (
    b"authorization",
    b"cookie",
    b"token",
    b"secret",
    b"passw",
    b"pwd",
    b"key",
    b"credential",
    b"session",
    b"sig",
    b"auth",
)
# In any text: the userinfo of a URL (user:password@) and name=value pairs of a query.
URL_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,15}://)[^/?#\s@\"'<>]*@")
PARAM_RE = re.compile(r"(^|[?&;\s])([^=&#?/:;\s\"'<>]{1,64})=([^&#\s\"'<>]*)")
# What could end a log line, fake another or drive a terminal: C0 and C1 controls, DEL,
# the Unicode line and paragraph separators.
LOG_UNSAFE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
LOG_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_for_log(text: str) -> str:
    """``text`` on one line: control characters written as escapes (``\\n``, ``\\x1b``...)."""
    if LOG_UNSAFE_RE.search(text) is None:
        return text
    return LOG_UNSAFE_RE.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    char = match[0]
    code = ord(char)
    return LOG_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def redact_url_secrets(text: str) -> str:
    """``text`` with URL credentials (``user:pass@``) and secret-looking parameters hidden.

    Parameters are hidden by name (``SECRET_KEY_RE``: ``sig``, ``key``, ``access_token``,
    ``X-Amz-Signature``...), wherever they are in the text; the rest is kept.
    """
    if "@" not in text and "=" not in text:
        return text
    if "@" in text:
        text = URL_USERINFO_RE.sub(rf"\1{REDACTED}@", text)
    if "=" in text:
        text = PARAM_RE.sub(_hide_param, text)
    return text


def _hide_param(match: re.Match[str]) -> str:
    return f"{match[1]}{match[2]}={REDACTED}" if _is_secret(match[2]) else match[0]


def ms_since(started: float) -> float:
    """Milliseconds elapsed since a ``time.perf_counter()`` reading."""
    return (time.perf_counter() - started) * 1000


def summarize(value: Any, *, max_chars: int = 200, max_items: int = 20, depth: int = 4) -> Any:
    """Return a JSON-safe, log-sized copy of a value.

    Long strings are cut (their length is kept), bytes and arrays are summarised,
    long containers are trimmed and values under secret-looking keys are redacted.
    """
    return _summarize(value, max_chars, max_items, depth)


def _summarize(value: Any, max_chars: int, max_items: int, depth: int) -> Any:
    kind = type(value)  # exact types first: JSON bodies hold nothing else
    if kind in _SCALARS:
        return value
    if kind is str:
        return redact_url_secrets(value if len(value) <= max_chars else _cut(value, max_chars))
    if kind is dict:
        return _summarize_mapping(value, max_chars, max_items, depth)
    if kind is list:
        return _summarize_items(value, max_chars, max_items, depth)
    return _summarize_other(value, max_chars, max_items, depth)


def _summarize_other(value: Any, max_chars: int, max_items: int, depth: int) -> Any:
    """``summarize`` for subclasses, bytes, arrays, other containers and objects."""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _summarize(str(value), max_chars, max_items, depth)
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"<array shape={tuple(value.shape)} dtype={value.dtype}>"
    if isinstance(value, Mapping):
        return _summarize_mapping(value, max_chars, max_items, depth)
    if isinstance(value, list | tuple | set | frozenset):
        return _summarize_items(list(value), max_chars, max_items, depth)
    # Exceptions and other objects: their text.
    text = str(value) if isinstance(value, BaseException) else repr(value)
    return _summarize(text, max_chars, max_items, depth)


_SCALARS = frozenset({int, float, bool, type(None)})


def _cut(text: str, max_chars: int) -> str:
    return f"{text[:max_chars]}...({len(text)} chars)"


def _summarize_items(items: list[Any], max_chars: int, max_items: int, depth: int) -> Any:
    """``summarize`` for sequences: the first ``max_items`` items and a count of the rest."""
    if depth <= 0:
        return "<...>"
    head = items[:max_items]
    if not all(type(item) in _SCALARS for item in head):  # numbers are the common case
        head = [_summarize(item, max_chars, max_items, depth - 1) for item in head]
    if len(items) > max_items:
        head.append(f"...({len(items)} items)")
    return head


def _summarize_mapping(value: Mapping, max_chars: int, max_items: int, depth: int) -> Any:
    """``summarize`` for mappings: keys as strings, secrets redacted, long ones trimmed."""
    if depth <= 0:
        return "<...>"
    out: dict[str, Any] = {}
    for index, (key, item) in enumerate(value.items()):
        if index == max_items:
            out["..."] = f"({len(value)} keys)"
            break
        name = key if type(key) is str else str(key)
        if _is_secret(name) if len(name) <= 64 else SECRET_KEY_RE.search(name):
            out[name] = REDACTED
        elif type(item) in _SCALARS:
            out[name] = item
        else:
            out[name] = _summarize(item, max_chars, max_items, depth - 1)
    return out


@functools.lru_cache(maxsize=4096)
def _is_secret(name: str) -> bool:
    """Whether a key names a secret (cached: bodies repeat the same few keys)."""
    return SECRET_KEY_RE.search(name) is not None


def format_long(value: Any, *, max_chars: int = 200, max_items: int = 20) -> str:
    """One compact line for a log: ``summarize`` rendered as JSON."""
    summary = summarize(value, max_chars=max_chars, max_items=max_items)
    return orjson.dumps(summary).decode()


def redact_headers(headers: Mapping[str, str] | Any) -> dict[str, str]:
    """Headers as a dict, with Authorization, Cookie and token-like values hidden."""
    return {
        str(key): REDACTED if SECRET_KEY_RE.search(str(key)) else str(val)
        for key, val in dict(headers).items()
    }


def run_in_daemon_thread(fn: Callable[..., Any], *args: Any, name: str = "worker") -> Any:
    """Run ``fn(*args)`` in a new daemon thread and return an awaitable of its result.

    Unlike ``asyncio.to_thread``, shutting down never waits for the thread (a model
    still loading must not hold up SIGTERM). The current context (request id) goes with it.
    """
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def target() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (context.run(fn, *args), None)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


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


# linker_atom's helpers ---------------------------------------------------------------


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
