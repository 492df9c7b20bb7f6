"""The private names of FastAPI the runtime still reads, each behind a guard.

A library may rename or change a private name in any release, and code that reads one
with ``getattr(..., None)`` then changes behaviour without a word. Each name the atom
reads is listed here with a check that it exists and behaves as the code expects. The
check runs once per process, the first time the name is needed (when the first route is
built, or at the latest when ``get_app()`` builds the app); when it fails, the feature
takes its public path instead and ``report()`` logs one WARNING line naming what changed.
``tests/test_guards.py`` checks both paths, and the template's ``upstream`` lane runs the
suite on the newest releases: the day a release breaks a guard, a test says so.

- ``ROUTE_CONTEXT``: FastAPI builds the handler of a route inside an included router with
  the inclusion's context (prefix, dependencies, response class merged in) in
  ``fastapi.routing._effective_route_context_var``. The direct handler
  (``api/handler.py``) reads it; without it, every call goes to FastAPI's own handler.
- ``HEADER_TIMEOUT``: uvicorn's ``HttpToolsProtocol`` (``uvicorn.protocols.http``, not a
  documented API) has the callbacks ``deploy/header_timeout.py`` extends, and httptools
  calls them; without them, ``server.py`` gives requests' headers no time limit.
"""

import logging
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi import routing as fastapi_routing
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.requests import Request

logger = logging.getLogger(__name__)


class Guard:
    """One private name of a library: checked once, then ``ok`` says which path to take."""

    def __init__(self, name: str, fallback: str, check: Callable[[], None]) -> None:
        self.name = name
        self.fallback = fallback  # what the public path costs, for the WARNING line
        self.check = check
        self.error: str | None = None
        self._ok: bool | None = None
        self._reported = False

    @property
    def ok(self) -> bool:
        """True when the private name exists and behaves as expected (checked once)."""
        if self._ok is None:
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - any failure means: take the public path
                self.error = f"{type(exc).__name__}: {exc}"
                self._ok = False
            else:
                self._ok = True
        return self._ok

    def reset(self) -> None:
        """Check again at the next use (tests that change the library)."""
        self._ok, self.error, self._reported = None, None, False

    def report(self) -> None:
        """Log one WARNING line, once per process, when the check failed."""
        if self.ok or self._reported:
            return
        self._reported = True
        logger.warning(
            "%s does not behave as this atom expects (%s): %s", self.name, self.error, self.fallback
        )


# FastAPI: the context of an included route -----------------------------------------


def route_context_var() -> ContextVar[Any]:
    """FastAPI's context variable of the route whose handler is being built."""
    variable = getattr(fastapi_routing, "_effective_route_context_var")  # noqa: B009
    if not isinstance(variable, ContextVar):
        raise TypeError(f"it is a {type(variable).__name__}, not a ContextVar")
    return variable


async def _probe_dependency() -> None:
    return None


def check_route_context() -> None:
    """Build a route inside a router included with a prefix and a dependency: while its
    handler is built, the variable holds a context of that route with both merged in."""
    variable = route_context_var()
    seen: list[Any] = []

    class Probe(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Any]]:
            seen.append((self, variable.get()))
            return super().get_route_handler()

    inner = APIRouter(route_class=Probe)
    inner.add_api_route("/probe", _probe_dependency, methods=["POST"])
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(inner, prefix="/guard", dependencies=[Depends(_probe_dependency)])
    list(iter_route_contexts(app.router.routes))  # FastAPI builds the inclusion's handler
    (route,) = inner.routes
    contexts = [context for built, context in seen if built is route and context is not None]
    if not contexts:
        raise LookupError("no context was set while the included route's handler was built")
    context = contexts[-1]
    if context.original_route is not route or context.path != "/guard/probe":
        raise ValueError("the context is not the included route's")
    if len(context.dependant.dependencies) != 1:
        raise ValueError("the context does not hold the inclusion's dependency")


ROUTE_CONTEXT = Guard(
    "fastapi.routing._effective_route_context_var",
    "every call is served by FastAPI's own handler (api/handler.py's direct handler is off)",
    check_route_context,
)


# uvicorn: a time limit on a request's headers ---------------------------------------


def check_header_timeout() -> None:
    """HttpToolsProtocol has the methods the header timeout extends and uses, and httptools
    calls ``on_message_begin`` then ``on_headers_complete`` as a request's head comes in."""
    import httptools  # noqa: PLC0415 - only when server.py asks
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415

    names = ("connection_made", "connection_lost", "on_message_begin", "on_headers_complete")
    for name in names:
        if not callable(getattr(HttpToolsProtocol, name, None)):
            raise AttributeError(f"HttpToolsProtocol.{name} is gone")
    calls: list[str] = []

    class Probe:
        def on_message_begin(self) -> None:
            calls.append("begin")

        def on_headers_complete(self) -> None:
            calls.append("headers")

    parser = httptools.HttpRequestParser(Probe())
    parser.feed_data(b"GET / HTTP/1.1\r\nHost: a\r\n")
    if calls != ["begin"]:
        raise ValueError(f"callbacks {calls} before the end of the head")
    parser.feed_data(b"\r\n")
    if calls != ["begin", "headers"]:
        raise ValueError(f"callbacks {calls} after the head")


HEADER_TIMEOUT = Guard(
    "uvicorn.protocols.http.httptools_impl.HttpToolsProtocol",
    "server.py runs uvicorn's own protocol: no time limit on a request's headers "
    "(ATOM_HEADER_TIMEOUT); put nginx_run in front of untrusted clients",
    check_header_timeout,
)

GUARDS = (ROUTE_CONTEXT, HEADER_TIMEOUT)


def report() -> None:
    """Check every guard (once per process) and log a WARNING line for each that failed."""
    for guard in GUARDS:
        guard.report()
