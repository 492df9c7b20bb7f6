"""A time limit on a request's headers for ``server.py`` (ATOM_HEADER_TIMEOUT, 10 s).

uvicorn 0.54 closes an idle keep-alive connection after ``timeout_keep_alive``, but waits
for a request's headers as long as the client likes: one byte every few seconds holds a
connection and a file descriptor forever (slowloris). Its other limits bound the size of
the headers (``h11_max_incomplete_event_size``) or the number of connections
(``limit_concurrency``, which slow clients then exhaust), never the time.

``http_protocol`` returns uvicorn's httptools protocol with a timer, for ``uvicorn.run``'s
public ``http`` argument: armed when a connection opens and when the first byte of a
request arrives after a reply, cancelled once its headers are complete; when it fires, the
connection is closed (nginx does the same at its ``client_header_timeout``, which
nginx_run sets from the same variable). The callbacks it extends are checked by
``api/guards.py`` (``HEADER_TIMEOUT``): without them, uvicorn's own protocol runs, and a
WARNING line says that headers have no time limit.
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
    """The timer, mixed into uvicorn's HttpToolsProtocol by ``http_protocol``."""

    header_timeout = 10.0  # seconds, set by http_protocol
    header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.header_timer is None:  # a later request of a kept-alive connection
            self.arm_header_timer()

    def on_headers_complete(self) -> None:
        self.disarm_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm_header_timer()
        super().connection_lost(exc)

    def arm_header_timer(self) -> None:
        self.header_timer = self.loop.call_later(self.header_timeout, self.headers_too_slow)

    def disarm_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def headers_too_slow(self) -> None:
        """The headers did not come in time: close the connection, without a reply."""
        self.header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


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
