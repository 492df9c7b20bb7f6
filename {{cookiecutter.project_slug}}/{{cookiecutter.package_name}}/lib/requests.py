"""``linker_atom``'s ``lib.requests``: ``request(url, method, **kwargs)``, ``get`` and
``post``, sent by one shared ``HttpClient`` (``http_client.py``: a timeout always set,
retries only when no connection was made, redacted logs). The keyword arguments are
those of ``requests``.
"""

from functools import lru_cache
from typing import Any

import requests

from ..http_client import DEFAULT_TIMEOUT, IDEMPOTENT, HttpClient, connection_not_made, redact_url

__all__ = [
    "DEFAULT_TIMEOUT",
    "IDEMPOTENT",
    "HttpClient",
    "connection_not_made",
    "default_client",
    "get",
    "post",
    "redact_url",
    "request",
]


@lru_cache(maxsize=1)
def default_client() -> HttpClient:
    """A shared client with the default settings, created on first use."""
    return HttpClient()


def request(url: str, method: str, **kwargs: Any) -> requests.Response:
    """``method`` to ``url`` with the shared client (``linker_atom``'s argument order)."""
    return default_client().request(method, url, **kwargs)


def get(url: str, **kwargs: Any) -> requests.Response:
    """GET with the shared client."""
    return default_client().get(url, **kwargs)


def post(url: str, **kwargs: Any) -> requests.Response:
    """POST with the shared client."""
    return default_client().post(url, **kwargs)
