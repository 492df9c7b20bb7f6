"""Download images from http(s) URLs without letting callers aim the atom at its network.

- One parser, urllib3's (the one ``requests`` connects with), reads the URL that is
  checked, and the URL it rebuilds is the one requested: urllib's parser reads
  ``http://127.0.0.1:80\\@allowed.test/`` as a URL of allowed.test, urllib3 as one of
  127.0.0.1. Backslashes, spaces and control characters are refused outright.
- Only IMAGE_URL_SCHEMES (http, https) and, when IMAGE_URL_HOSTS is set, only the hosts
  it lists, at every hop: redirects are followed here, at most ``MAX_REDIRECTS``.
- With IMAGE_URL_BLOCK_PRIVATE on, the host's addresses are resolved and checked before
  connecting (private, loopback, link-local, reserved and multicast addresses are
  refused, except those of IMAGE_URL_ALLOWED_NETWORKS; an IPv6 address that embeds an
  IPv4 one, NAT64 or 6to4, is judged by the IPv4 address), and the connection goes to
  the address that was checked, so a second DNS answer cannot slip in between.
- The reply must be a 200 that is not text, JSON or XML; its body is streamed and
  capped (a larger Content-Length is refused before reading).
- One deadline, IMAGE_URL_TIMEOUT after the load started, covers every step: DNS (in
  its own small pool, abandoned at the deadline), connecting, TLS, headers and body. A
  server that trickles its headers a byte at a time is cut off at the deadline: its
  socket is shut down by the watchdog thread (``Deadline``).
- Retries happen only on connection errors (``http_client.HttpClient``); proxies and
  ``.netrc`` of the environment are not used.
"""

import contextlib
import contextvars
import heapq
import ipaddress
import itertools
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, LocationParseError, NameResolutionError
from urllib3.util import parse_url

from ..errors import VqlError
from ..http_client import HttpClient
from .budget import ByteAllowance

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
CHUNK_BYTES = 256 * 1024
CONNECT_TIMEOUT = 3.05
NOT_IMAGE_RE = re.compile(r"^(text/|application/(json|xml|xhtml)|[^;]*\+(json|xml))")
MIME_CHARS_RE = re.compile(r"[^A-Za-z0-9/.+-]")
BLOCKED_MSG = "the URL's host resolves to a private, loopback, link-local or reserved address"
# Characters no URL needs and that parsers read differently (see the module docstring).
URL_UNSAFE_RE = re.compile(r"[\\\s\x00-\x1f\x7f]")
DNS_THREADS = 4  # lookups in flight per worker; a slow resolver cannot take more threads
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # IPv4 in the last 32 bits (RFC 6052)
# IPv6 forms that embed an IPv4 address but are not used to reach a host: refused.
REFUSED_V6 = tuple(
    ipaddress.ip_network(net)
    for net in (
        "::/96",  # IPv4-compatible ::a.b.c.d (deprecated), :: and ::1
        "::ffff:0:0:0/96",  # IPv4-translated ::ffff:0:a.b.c.d (SIIT)
        "64:ff9b:1::/48",  # local-use NAT64
        "2001::/32",  # Teredo
    )
)


class BlockedAddressError(Exception):
    """The host resolves to an address the policy refuses.

    Not an ``OSError``: urllib3 and ``HttpClient`` must neither wrap nor retry it.
    """


class DeadlineExceededError(Exception):
    """A download reached its deadline (not an ``OSError``: never wrapped nor retried)."""


class AddressPolicy:
    """Which resolved addresses a download may connect to."""

    def __init__(self, allowed_networks: Iterable[str] = ()) -> None:
        self.allowed = tuple(ipaddress.ip_network(net, strict=False) for net in allowed_networks)

    def allows(self, address: str) -> bool:
        """True for a public address, or one inside an allowed network.

        An IPv6 address that carries an IPv4 one (IPv4-mapped, NAT64, 6to4) is judged by
        that IPv4 address; other IPv4-embedding forms are refused.
        """
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if any(ip in network for network in self.allowed):
            return True
        if isinstance(ip, ipaddress.IPv6Address):
            embedded = embedded_ipv4(ip)
            if embedded is not None:
                return self.allows(str(embedded))
            if any(ip in network for network in REFUSED_V6):
                return False
        return ip.is_global and not ip.is_multicast


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4 address leads to."""
    if ip in NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.ipv4_mapped or ip.sixtofour


class Deadline:
    """The end of one download: every step stops there (``Watchdog`` enforces it).

    Sockets the download opens are registered with ``watch``; when the deadline passes
    before ``finish()``, they are shut down, which ends any read blocked on them.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self._done = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        WATCHDOG.add(self)

    def remaining(self) -> float:
        """Seconds left; ``DeadlineExceededError`` when none are."""
        left = self.at - time.monotonic()
        if left <= 0 or self.expired:
            raise DeadlineExceededError
        return left

    def watch(self, sock: socket.socket | None) -> None:
        """Shut ``sock`` down if the deadline passes before the download ends."""
        if sock is None:
            return
        with self._lock:
            if not self._done:
                self._sockets.append(sock)

    def expire(self) -> None:
        """The deadline has passed: shut the download's sockets down (watchdog thread)."""
        with self._lock:
            if self._done:
                return
            self.expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        """The download ended: nothing to shut down any more."""
        with self._lock:
            self._done = True
            self._sockets.clear()

    @property
    def done(self) -> bool:
        return self._done


class Watchdog:
    """One daemon thread that expires deadlines on time, started on first use."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline) -> None:
        """Expire ``deadline`` at its time unless it finished before."""
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():  # none yet, or forked
                self._thread = threading.Thread(target=self._run, name="url-deadline", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                deadline = heapq.heappop(self._heap)[2]
            deadline.expire()


WATCHDOG = Watchdog()
# The deadline of the download running in this thread (set by UrlFetcher.fetch).
_current_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "url_deadline", default=None
)


@lru_cache(maxsize=1)
def _dns_pool() -> ThreadPoolExecutor:
    """The threads that resolve host names, so that a lookup can be abandoned."""
    return ThreadPoolExecutor(max_workers=DNS_THREADS, thread_name_prefix="image-dns")


def resolve(host: str, port: int, deadline: Deadline | None) -> list[str]:
    """The addresses of ``host`` (in the resolver's order), within the deadline."""
    if deadline is None:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    else:
        future = _dns_pool().submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        try:
            infos = future.result(timeout=deadline.remaining())
        except FutureTimeout:
            future.cancel()
            raise DeadlineExceededError from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# For the type checker the mixin is the urllib3 connection it is mixed into.
if TYPE_CHECKING:
    _Connection = HTTPConnection
else:
    _Connection = object


class _CheckedConnectionMixin(_Connection):
    """Resolve within the deadline, check every address (when a policy is set), then
    connect to a checked one; every socket is watched by the download's deadline.

    Only urllib3's public connection API is used: ``connect()``, ``host`` (where it
    connects) and, for HTTPS, ``server_hostname`` (the name TLS sends and verifies).
    """

    policy: AddressPolicy | None

    def connect(self) -> None:
        name = self.host
        deadline = _current_deadline.get()
        try:
            addresses = resolve(name, self.port, deadline)
        except socket.gaierror as exc:
            raise NameResolutionError(name, self, exc) from exc
        if self.policy is not None and not all(self.policy.allows(a) for a in addresses):
            raise BlockedAddressError(name)
        error: Exception = NameResolutionError(name, self, socket.gaierror("no address"))
        tls_name = getattr(self, "server_hostname", None)
        try:
            for address in addresses:
                self.host = address  # connect to the checked address...
                if isinstance(self, HTTPSConnection) and tls_name is None:
                    self.server_hostname = name  # ...and verify the certificate of the name
                if deadline is not None and isinstance(self.timeout, int | float):
                    # Python bounds a whole TLS handshake by the socket's timeout: with
                    # this cap, by the deadline too.
                    self.timeout = min(self.timeout, deadline.remaining())
                try:
                    super().connect()
                except ConnectTimeoutError as exc:  # NewConnectionError included
                    error = exc
                    continue
                if deadline is not None:
                    deadline.watch(self.sock)  # for HTTPS, the TLS socket
                return
        finally:
            self.host = name
            if isinstance(self, HTTPSConnection):
                self.server_hostname = tls_name
        raise error

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline = _current_deadline.get()
        if deadline is not None:
            deadline.remaining()
            deadline.watch(self.sock)  # a kept-alive connection (None: connected later)
        super().request(*args, **kwargs)


def checked_adapter(policy: AddressPolicy | None) -> HTTPAdapter:
    """A requests adapter whose connections keep the deadline of the download and, with a
    ``policy``, only reach addresses it allows."""
    extra = {"policy": policy}
    http_conn = type("CheckedHTTPConnection", (_CheckedConnectionMixin, HTTPConnection), extra)
    https_conn = type("CheckedHTTPSConnection", (_CheckedConnectionMixin, HTTPSConnection), extra)
    pools = {
        "http": type("CheckedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
        "https": type("CheckedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
    }

    class CheckedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

    return CheckedAdapter(max_retries=0)


def host_allowed(host: str, allowed: Iterable[str]) -> bool:
    """True when ``host`` is listed, or matches a listed ``*.domain``."""
    for entry in allowed:
        if entry.startswith("*.") and host.endswith(entry[1:]):
            return True
        if host == entry:
            return True
    return False


def _timed_out(seconds: float) -> VqlError:
    return VqlError(503, f"the download took more than {seconds:g} s (IMAGE_URL_TIMEOUT)")


def parse_checked(url: str) -> Any:
    """urllib3's reading of ``url`` (``VqlError`` 501 when it is malformed)."""
    if URL_UNSAFE_RE.search(url):
        raise VqlError(501, "malformed URL: backslash, space or control character")
    try:
        return parse_url(url)
    except (LocationParseError, ValueError):
        raise VqlError(501, "malformed URL") from None


class UrlFetcher:
    """Downloads of image URLs under the limits of the settings; safe across threads."""

    def __init__(
        self,
        *,
        max_bytes: int,
        timeout: float,
        retries: int,
        schemes: Iterable[str] = ("http", "https"),
        hosts: Iterable[str] = (),
        block_private: bool = True,
        allowed_networks: Iterable[str] = (),
    ) -> None:
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.retries = retries
        self.schemes = tuple(schemes)
        self.hosts = tuple(host.lower().strip("[]") for host in hosts)
        self.policy = AddressPolicy(allowed_networks) if block_private else None

    @cached_property
    def client(self) -> HttpClient:
        """The HTTP client, built on first use (no session exists before the first URL)."""
        session = requests.Session()
        session.trust_env = False  # no proxy or .netrc from the environment
        session.headers.update({"Accept": "image/*", "Accept-Encoding": "identity"})
        adapter = checked_adapter(self.policy)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        timeout = (min(CONNECT_TIMEOUT, self.timeout), self.timeout)
        return HttpClient(timeout=timeout, retries=self.retries, session=session)

    def close(self) -> None:
        """Close the pooled connections, if any were made."""
        if "client" in self.__dict__:
            self.client.close()

    def fetch(
        self,
        url: object,
        deadline: Deadline | None = None,
        allowance: ByteAllowance | None = None,
        sink: Callable[[bytes], object] | None = None,
    ) -> bytearray:
        """The body of ``url`` (following checked redirects); ``VqlError`` on any failure.

        ``deadline`` (IMAGE_URL_TIMEOUT from now by default) bounds the whole download;
        ``allowance`` counts and holds its bytes with those of the request's other items,
        each chunk before it is kept; ``sink``, when given, takes the chunks instead of
        the returned buffer (which stays empty).
        """
        if not isinstance(url, str) or not url:
            raise VqlError(501, "a url item must be a non-empty string")
        deadline = deadline or Deadline(self.timeout)
        token = _current_deadline.set(deadline)
        try:
            return self._fetch(url, deadline, allowance, sink)
        except DeadlineExceededError:
            raise _timed_out(self.timeout) from None
        finally:
            deadline.finish()
            _current_deadline.reset(token)

    def _fetch(
        self,
        url: str,
        deadline: Deadline,
        allowance: ByteAllowance | None,
        sink: Callable[[bytes], object] | None,
    ) -> bytearray:
        url = self.check_url(url, redirected=False)
        for _ in range(MAX_REDIRECTS + 1):
            deadline.remaining()
            response = self._get(url, deadline)
            target = self.client.session.get_redirect_target(response)
            if target is None:
                try:
                    return self._read_body(response, deadline, allowance, sink)
                finally:
                    response.close()
            response.close()
            url = self.check_url(urljoin(url, target), redirected=True)
        raise VqlError(503, f"more than {MAX_REDIRECTS} redirects")

    def check_url(self, url: str, *, redirected: bool) -> str:
        """The URL to request, as urllib3 rebuilds it; refused if its scheme or host is not
        allowed."""
        parts = parse_checked(url)
        scheme = (parts.scheme or "").lower()[:16]
        if scheme not in self.schemes:
            if redirected:
                raise VqlError(503, f"redirected to a {scheme or 'schemeless'!r} URL, refused")
            allowed = ", ".join(self.schemes)
            raise VqlError(504, f"URL scheme {scheme!r} is not supported ({allowed})")
        host = (parts.host or "").strip("[]").lower()
        if not host:
            raise VqlError(501, "the URL has no host")
        if self.hosts and not host_allowed(host, self.hosts):
            raise VqlError(503, "the URL's host is not in IMAGE_URL_HOSTS")
        return str(parts.url)

    def _get(self, url: str, deadline: Deadline) -> requests.Response:
        """GET without following redirects, the body left unread."""
        try:
            return self.client.get(url, stream=True, allow_redirects=False)
        except BlockedAddressError:
            raise VqlError(503, BLOCKED_MSG) from None
        except requests.Timeout:
            raise _timed_out(self.timeout) from None
        except requests.ConnectionError as exc:
            if deadline.expired:
                raise _timed_out(self.timeout) from None
            if isinstance(exc, requests.exceptions.SSLError):
                raise VqlError(503, "the URL's TLS certificate cannot be verified") from None
            raise VqlError(503, "cannot connect to the URL's host") from None
        except (requests.RequestException, ValueError) as exc:
            logger.info("image URL refused by the HTTP client: %s", type(exc).__name__)
            raise VqlError(503, "the URL cannot be fetched") from None

    def _check_reply(self, response: requests.Response) -> None:
        """Refuse a reply that is not a 200 image of an acceptable size."""
        if response.status_code != 200:
            raise VqlError(503, f"the URL answered HTTP {response.status_code}")
        content_type = response.headers.get("content-type", "").strip().lower()
        if NOT_IMAGE_RE.match(content_type):
            shown = MIME_CHARS_RE.sub("?", content_type.split(";", 1)[0])[:60]
            raise VqlError(503, f"the URL answered {shown}, not an image")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large()

    def _read_body(
        self,
        response: requests.Response,
        deadline: Deadline,
        allowance: ByteAllowance | None,
        sink: Callable[[bytes], object] | None,
    ) -> bytearray:
        """The body, read chunk by chunk, never past the byte limit or the deadline."""
        self._check_reply(response)
        body, size = bytearray(), 0
        while True:
            deadline.remaining()
            try:
                chunk = response.raw.read1(CHUNK_BYTES)
            except urllib3.exceptions.ReadTimeoutError:
                raise _timed_out(self.timeout) from None
            except (urllib3.exceptions.HTTPError, OSError):
                deadline.remaining()  # a socket shut down at the deadline
                raise VqlError(503, "the download was interrupted") from None
            if not chunk:
                deadline.remaining()  # the same, when it reads as the end of the body
                break
            size += len(chunk)
            if size > self.max_bytes:
                raise self._too_large()
            if allowance is not None:
                allowance.take(len(chunk))
            if sink is None:
                body += chunk
            else:
                sink(chunk)
        if not size:
            raise VqlError(503, "the URL answered an empty body")
        return body

    def _too_large(self) -> VqlError:
        return VqlError(
            503, f"the URL's body is above {self.max_bytes} bytes (IMAGE_MAX_BYTES)", status=413
        )
