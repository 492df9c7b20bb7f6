"""Download images from http(s) URLs without letting callers aim the atom at its network.

- Only IMAGE_URL_SCHEMES (http, https) and, when IMAGE_URL_HOSTS is set, only the hosts
  it lists, at every hop: redirects are followed here, at most ``MAX_REDIRECTS``.
- With IMAGE_URL_BLOCK_PRIVATE on, the host's addresses are resolved and checked before
  connecting (private, loopback, link-local, reserved and multicast addresses are
  refused, except those of IMAGE_URL_ALLOWED_NETWORKS), and the connection goes to the
  address that was checked, so a second DNS answer cannot slip in between.
- The reply must be a 200 that is not text, JSON or XML; its body is streamed and
  capped (a larger Content-Length is refused before reading), and the whole download
  must finish within IMAGE_URL_TIMEOUT.
- Retries happen only on connection errors (``lib.requests.HttpClient``); proxies and
  ``.netrc`` of the environment are not used.
"""

import ipaddress
import logging
import re
import socket
import time
from collections.abc import Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError

from ..lib.exception import VqlError
from ..lib.requests import HttpClient

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
CHUNK_BYTES = 256 * 1024
CONNECT_TIMEOUT = 3.05
NOT_IMAGE_RE = re.compile(r"^(text/|application/(json|xml|xhtml)|[^;]*\+(json|xml))")
MIME_CHARS_RE = re.compile(r"[^A-Za-z0-9/.+-]")
BLOCKED_MSG = "the URL's host resolves to a private, loopback, link-local or reserved address"


class BlockedAddressError(Exception):
    """The host resolves to an address the policy refuses.

    Not an ``OSError``: urllib3 and ``HttpClient`` must neither wrap nor retry it.
    """


class AddressPolicy:
    """Which resolved addresses a download may connect to."""

    def __init__(self, allowed_networks: Iterable[str] = ()) -> None:
        self.allowed = tuple(ipaddress.ip_network(net, strict=False) for net in allowed_networks)

    def allows(self, address: str) -> bool:
        """True for a public address, or one inside an allowed network."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in network for network in self.allowed):
            return True
        return ip.is_global and not ip.is_multicast


# For the type checker the mixin is the urllib3 connection it is mixed into.
if TYPE_CHECKING:
    _Connection = HTTPConnection
else:
    _Connection = object


class _CheckedConnectionMixin(_Connection):
    """Resolve, check every address, then connect to a checked one (urllib3 connection)."""

    policy: AddressPolicy

    def _new_conn(self) -> socket.socket:
        host = self._dns_host
        try:
            infos = socket.getaddrinfo(host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not all(self.policy.allows(address) for address in addresses):
            raise BlockedAddressError(self.host)
        error: Exception = NameResolutionError(self.host, self, socket.gaierror("no address"))
        try:
            for address in addresses:
                self._dns_host = address  # urllib3 connects to _dns_host, verifies TLS on host
                try:
                    return super()._new_conn()
                except ConnectTimeoutError as exc:  # NewConnectionError included
                    error = exc
        finally:
            self._dns_host = host
        raise error


def checked_adapter(policy: AddressPolicy) -> HTTPAdapter:
    """A requests adapter whose connections only reach addresses ``policy`` allows."""
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
        if self.policy is not None:
            adapter = checked_adapter(self.policy)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        timeout = (min(CONNECT_TIMEOUT, self.timeout), self.timeout)
        return HttpClient(timeout=timeout, retries=self.retries, session=session)

    def close(self) -> None:
        """Close the pooled connections, if any were made."""
        if "client" in self.__dict__:
            self.client.close()

    def fetch(self, url: object) -> bytearray:
        """The body of ``url`` (following checked redirects); ``VqlError`` on any failure."""
        if not isinstance(url, str) or not url:
            raise VqlError(501, "a url item must be a non-empty string")
        deadline = time.monotonic() + self.timeout
        self.check_url(url, redirected=False)
        for _ in range(MAX_REDIRECTS + 1):
            response = self._get(url)
            target = self.client.session.get_redirect_target(response)
            if target is None:
                try:
                    return self._read_body(response, deadline)
                finally:
                    response.close()
            response.close()
            url = urljoin(url, target)
            self.check_url(url, redirected=True)
            if time.monotonic() > deadline:
                raise _timed_out(self.timeout)
        raise VqlError(503, f"more than {MAX_REDIRECTS} redirects")

    def check_url(self, url: str, *, redirected: bool) -> None:
        """Refuse a URL whose scheme or host is not allowed."""
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:
            raise VqlError(501, "malformed URL") from None
        scheme = parts.scheme.lower()[:16]
        if scheme not in self.schemes:
            if redirected:
                raise VqlError(503, f"redirected to a {scheme or 'schemeless'!r} URL, refused")
            allowed = ", ".join(self.schemes)
            raise VqlError(504, f"URL scheme {scheme!r} is not supported ({allowed})")
        if not host:
            raise VqlError(501, "the URL has no host")
        if self.hosts and not host_allowed(host, self.hosts):
            raise VqlError(503, "the URL's host is not in IMAGE_URL_HOSTS")

    def _get(self, url: str) -> requests.Response:
        """GET without following redirects, the body left unread."""
        try:
            return self.client.get(url, stream=True, allow_redirects=False)
        except BlockedAddressError:
            raise VqlError(503, BLOCKED_MSG) from None
        except requests.Timeout:
            raise _timed_out(self.timeout) from None
        except requests.exceptions.SSLError:
            raise VqlError(503, "the URL's TLS certificate cannot be verified") from None
        except requests.ConnectionError:
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

    def _read_body(self, response: requests.Response, deadline: float) -> bytearray:
        """The body, read chunk by chunk, never past the byte limit or the deadline."""
        self._check_reply(response)
        body = bytearray()
        while True:
            if time.monotonic() > deadline:
                raise _timed_out(self.timeout)
            try:
                chunk = response.raw.read1(CHUNK_BYTES)
            except urllib3.exceptions.ReadTimeoutError:
                raise _timed_out(self.timeout) from None
            except (urllib3.exceptions.HTTPError, OSError):
                raise VqlError(503, "the download was interrupted") from None
            if not chunk:
                break
            body += chunk
            if len(body) > self.max_bytes:
                raise self._too_large()
        if not body:
            raise VqlError(503, "the URL answered an empty body")
        return body

    def _too_large(self) -> VqlError:
        return VqlError(
            503, f"the URL's body is above {self.max_bytes} bytes (IMAGE_MAX_BYTES)", status=413
        )
