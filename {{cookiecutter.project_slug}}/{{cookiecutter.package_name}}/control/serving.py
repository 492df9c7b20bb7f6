"""Registration with the Serving platform (META, ``control/meta.py``), in a background thread.

``ServingAgent`` waits until the atom's public ready route answers, registers
(``POST /atom/register``), then sends a heartbeat (``POST /atom/health``) every
SERVING_HEARTBEAT_INTERVAL seconds, registering again when a reply's ``data`` is
"register". ``stop()`` sends ``POST /atom/unRegister`` once. A reply counts as success
when it is JSON whose ``code`` is "0" or 0; anything else (an error status, HTML,
garbage, a timeout) is a failure, retried with exponential backoff and jitter up to
SERVING_RETRY_MAX seconds. A failing call is logged once as a warning, then at most
once a minute with a count. Nothing here blocks the atom: the thread is a daemon,
every call has short timeouts, and ``stop()`` returns within its budget.

Who runs it: ``nginx_run`` for the whole container (one registration whatever
ATOM_WORKERS is), or ``server.py`` itself when it runs alone; both build it with
``config.serving.serving_agent(settings)``.
"""

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from .backoff import Backoff
from .health import answers_ok
from .meta import ServingMeta

logger = logging.getLogger(__name__)

WARN_EVERY = 60.0  # seconds between two warnings about the same failing call
READY_POLL = 0.5


class ServingError(Exception):
    """A call to Serving did not succeed; the message says why (never the body in full)."""


class FailureLog:
    """Warn once when a call starts failing, then at most every ``WARN_EVERY`` s."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.count = 0
        self.last_warning = 0.0

    def failed(self, reason: str) -> None:
        """Record a failure; log it if a warning is due."""
        self.count += 1
        now = time.monotonic()
        if self.count == 1 or now - self.last_warning >= WARN_EVERY:
            self.last_warning = now
            logger.warning(
                "Serving %s failed (%d time(s) in a row): %s", self.what, self.count, reason
            )
        else:
            logger.debug("Serving %s failed again: %s", self.what, reason)

    def succeeded(self) -> None:
        """Record a success; say so if it follows failures."""
        if self.count:
            logger.info("Serving %s succeeded after %d failure(s)", self.what, self.count)
        self.count = 0


def parse_reply(response: requests.Response) -> dict[str, Any]:
    """The reply as a dict if it is a success; ServingError otherwise."""
    if response.status_code != 200:
        raise ServingError(f"HTTP {response.status_code}")
    try:
        reply = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content-type")
        raise ServingError(f"reply is not JSON ({kind}, {len(response.content)} bytes)") from None
    if not isinstance(reply, dict):
        raise ServingError(f"reply is a JSON {type(reply).__name__}, not an object")
    if str(reply.get("code")) != "0":
        code, msg = str(reply.get("code"))[:40], str(reply.get("msg"))[:200]
        raise ServingError(f"reply code {code!r}, msg {msg!r}")
    return reply


class ServingAgent:
    """Registers the atom with Serving and keeps it registered (see the module docstring)."""

    def __init__(
        self,
        meta: ServingMeta,
        ready_url: str,
        *,
        interval: float = 2.0,
        retry_max: float = 30.0,
        retry_base: float = 0.5,
        timeout: float = 3.0,
        instance_name: str | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.meta = meta
        self.ready_url = ready_url
        self.interval = interval
        self.retry_max = retry_max
        self.retry_base = min(retry_base, retry_max)
        self.timeouts = (min(1.0, timeout), timeout)  # (connect, read)
        self.instance_name = instance_name or socket.gethostname()
        self.on_event = on_event or (lambda event: None)
        self.registered = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unregistered = False
        self._session = requests.Session()

    # Public -------------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread."""
        logger.info(
            "Serving registration at %s as %r once %s answers",
            self.meta.serving_url,
            self.instance_name,
            self.ready_url,
        )
        self._thread = threading.Thread(target=self._run, name="serving", daemon=True)
        self._thread.start()

    def stop(self, budget: float = 3.0) -> None:
        """Stop the thread and send unRegister once; returns within about ``budget`` s."""
        deadline = time.monotonic() + budget
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=budget / 3)
        if self._unregistered:
            return
        self._unregistered = True
        left = max(0.2, deadline - time.monotonic())
        try:
            body = {"atomInstanceName": self.instance_name}
            self._call("unRegister", body, (min(1.0, left), left))
        except ServingError as exc:
            logger.warning("Serving unRegister failed: %s", exc)
        else:
            logger.info("unregistered from Serving as %r", self.instance_name)
        self._set_registered(False)

    # The thread ---------------------------------------------------------------

    def _run(self) -> None:
        if not self._wait_ready():
            return
        while not self._stop.is_set():
            if not self._register():
                return
            self._heartbeat()

    def _wait_ready(self) -> bool:
        """Wait until the atom's public ready route answers 200 (False if stopped first)."""
        while not self._stop.is_set():
            if answers_ok(self.ready_url):
                return True
            self._stop.wait(READY_POLL)
        return False

    def _register(self) -> bool:
        """Register until it succeeds (False if stopped first)."""
        backoff, failures = Backoff(self.retry_base, self.retry_max), FailureLog("register")
        body = self.meta.register_body(self.instance_name)
        while not self._stop.is_set():
            try:
                self._call("register", body, self.timeouts)
            except ServingError as exc:
                failures.failed(str(exc))
                self._stop.wait(backoff.next())
                continue
            failures.succeeded()
            logger.info("registered with Serving as %r: %s", self.instance_name, body["requestUrl"])
            self._set_registered(True)
            return True
        return False

    def _heartbeat(self) -> None:
        """Send heartbeats until stopped or until Serving asks for a new registration."""
        backoff, failures = Backoff(self.interval, self.retry_max), FailureLog("heartbeat")
        delay = self.interval
        body = {"atomInstanceName": self.instance_name}
        while not self._stop.wait(delay):
            try:
                reply = self._call("health", body, self.timeouts)
            except ServingError as exc:
                failures.failed(str(exc))
                self.on_event("heartbeat_failed")
                delay = backoff.next()
                continue
            failures.succeeded()
            backoff.reset()
            delay = self.interval
            if reply.get("data") == "register":
                logger.info("Serving asks for a new registration")
                self._set_registered(False)
                return

    def _call(
        self, path: str, body: dict[str, Any], timeout: tuple[float, float]
    ) -> dict[str, Any]:
        """POST to Serving; the reply if it is a success, ServingError otherwise."""
        url = f"{self.meta.serving_url}/atom/{path}"
        try:
            response = self._session.post(url, json=body, timeout=timeout)
        except requests.RequestException as exc:
            raise ServingError(f"{type(exc).__name__} for {url}") from None
        return parse_reply(response)

    def _set_registered(self, registered: bool) -> None:
        self.registered = registered
        self.on_event("registered" if registered else "unregistered")
