"""A time limit on a request's headers for ``server.py`` (ATOM_HEADER_TIMEOUT, 10 s).

uvicorn 0.54 closes an idle keep-alive connection after ``timeout_keep_alive``, but waits
for a request's headers as long as the client likes: one byte every few seconds holds a
connection and a file descriptor forever (slowloris). Its other limits bound the size of
the headers (``h11_max_incomplete_event_size``) or the number of connections
(``limit_concurrency``, which slow clients then exhaust), never the time.

``http_protocol`` returns uvicorn's httptools protocol with a time limit, for
``uvicorn.run``'s public ``http`` argument: a request's headers are timed from the moment
the connection opens, or the first byte of a later request arrives, until they are
complete; a connection whose headers take longer is closed (nginx does the same at its
``client_header_timeout``, which nginx_run sets from the same variable). The callbacks
it extends are checked by ``api/guards.py`` (``HEADER_TIMEOUT``): without them,
uvicorn's own protocol runs, and a WARNING line says that headers have no time limit.
"""

import asyncio
from typing import TYPE_CHECKING

from uvicorn.config import HTTPProtocolType

from ..api.guards import HEADER_TIMEOUT

if TYPE_CHECKING:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
else:
    Base = object  # the mixin goes before HttpToolsProtocol (imported only when it passed)


class HeaderTimeout(Base):
    """The time limit, mixed into uvicorn's HttpToolsProtocol by ``http_protocol``.

    A request's headers are timed from the first byte (``headers_since``, the loop's
    clock) until they are complete; one watch per connection looks at that clock when a
    request's headers would be due (a timer per connection, not one armed and cancelled
    for every request)."""

    header_timeout = 10.0  # seconds, set by http_protocol
    headers_since: float | None = None  # when the headers now coming began
    header_watch: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.headers_since = self.loop.time()
        self.header_watch = self.loop.call_later(self.header_timeout, self.watch_headers)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.headers_since is None:  # a later request of a kept-alive connection
            self.headers_since = self.loop.time()

    def on_headers_complete(self) -> None:
        self.headers_since = None
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.header_watch is not None:
            self.header_watch.cancel()
            self.header_watch = None
        super().connection_lost(exc)

    def watch_headers(self) -> None:
        """Close the connection if a request's headers are late, else look again when the
        headers now coming (or the next request's, at the earliest) would be due."""
        self.header_watch = None
        if self.transport.is_closing():
            return
        due = self.header_timeout
        if self.headers_since is not None:
            due -= self.loop.time() - self.headers_since
            if due <= 0:  # the headers did not come in time: close, without a reply
                self.transport.close()
                return
        self.header_watch = self.loop.call_later(due, self.watch_headers)


def http_protocol(seconds: float) -> type[asyncio.Protocol] | HTTPProtocolType:
    """uvicorn's ``http`` argument: its httptools protocol with a header timeout of
    ``seconds``, or "auto" (uvicorn's choice, no timeout) when the guard failed."""
    if not HEADER_TIMEOUT.ok:
        HEADER_TIMEOUT.report()
        return "auto"
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415

    return type(
        "HeaderTimeoutProtocol", (HeaderTimeout, HttpToolsProtocol), {"header_timeout": seconds}
    )
