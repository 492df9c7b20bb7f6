"""An HTTP client on top of ``requests`` that is safe by default.

- a timeout is always set (``timeout=None`` means the client's default, never "wait forever");
- a request is retried, with exponential backoff and jitter, only when the connection
  could not be established (or, for idempotent methods, when it broke), never after a
  reply or a read timeout, so a POST is not sent twice;
- each call logs a summary of the request and of the reply, with Authorization, cookies,
  tokens and passwords redacted and long values cut.

It blocks: in an ``async`` route call it through ``starlette.concurrency.run_in_threadpool``.
The image downloads use it (``images/fetch.py``); ``linker_atom``'s ``request``, ``get`` and
``post`` (``lib/requests.py``) share one default client.
"""

import logging
import time
from typing import Any

import requests
from urllib3.exceptions import NameResolutionError, NewConnectionError

from .control import backoff
from .control.log_safety import format_long, redact_headers, redact_url_secrets
from .control.logs import ms_since

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = (3.05, 30.0)  # seconds: (connect, read)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
Timeout = float | tuple[float, float]


def redact_url(url: str) -> str:
    """The URL without its userinfo and with secret-looking query values hidden."""
    return redact_url_secrets(url)


def connection_not_made(exc: requests.ConnectionError) -> bool:
    """True when the request never reached the server (refused, unresolved, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # MaxRetryError wraps the cause
    return isinstance(reason, NewConnectionError | NameResolutionError)


def _summarize_body(kwargs: dict[str, Any]) -> str:
    """A log-sized summary of the body a call sends (form fields and JSON redacted)."""
    if kwargs.get("json") is not None:
        return format_long(kwargs["json"])
    data = kwargs.get("data")
    if data is None:
        return "-"
    if isinstance(data, dict):
        return format_long(data)
    if isinstance(data, str | bytes | bytearray):
        return f"<{len(data)} bytes>"
    return f"<{type(data).__name__}>"


def _summarize_reply(response: requests.Response, streamed: bool = False) -> str:
    """A log-sized summary of a reply body (a streamed body is left unread)."""
    content_type = response.headers.get("content-type", "")
    if streamed:
        return f"<streamed, {content_type or 'no content-type'}>"
    if "json" in content_type:
        try:
            return format_long(response.json())
        except ValueError:
            pass
    return f"<{len(response.content)} bytes, {content_type or 'no content-type'}>"


class HttpClient:
    """A ``requests.Session`` with default timeouts, bounded retries and redacted logs."""

    def __init__(
        self,
        *,
        timeout: Timeout = DEFAULT_TIMEOUT,
        retries: int = 2,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        session: requests.Session | None = None,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.session = session or requests.Session()

    def request(
        self, method: str, url: str, *, timeout: Timeout | None = None, **kwargs: Any
    ) -> requests.Response:
        """Send a request; see the module docstring for timeouts, retries and logging."""
        method = method.upper()
        timeout = timeout or self.timeout
        shown_url = redact_url(url)
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "-> %s %s headers=%s body=%s",
                method,
                shown_url,
                format_long(redact_headers(kwargs.get("headers") or {})),
                _summarize_body(kwargs),
            )
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                response = self.session.request(method, url, timeout=timeout, **kwargs)
            except requests.ConnectionError as exc:
                retryable = connection_not_made(exc) or method in IDEMPOTENT
                if not retryable or attempt >= self.retries:
                    logger.warning(
                        "%s %s failed after %d attempt(s): %s",
                        method,
                        shown_url,
                        attempt + 1,
                        type(exc).__name__,
                    )
                    raise
                delay = self._delay(attempt)
                logger.info(
                    "%s %s: %s, retry in %.2f s", method, shown_url, type(exc).__name__, delay
                )
                time.sleep(delay)
                attempt += 1
                continue
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "<- %s %s %d in %.2f ms body=%s",
                    method,
                    shown_url,
                    response.status_code,
                    ms_since(started),
                    _summarize_reply(response, streamed=bool(kwargs.get("stream"))),
                )
            return response

    def _delay(self, attempt: int) -> float:
        """Exponential backoff, capped, with jitter over its upper half."""
        return backoff.delay(attempt, self.backoff, self.max_backoff)

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        """GET ``url``."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        """POST to ``url``."""
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()
