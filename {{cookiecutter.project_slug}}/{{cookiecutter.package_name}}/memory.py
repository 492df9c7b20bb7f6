"""One memory account per worker: every door draws from it before allocating.

A worker's requests may hold at most ATOM_MEMORY_BYTES at once, counted before the
memory is taken, by whatever takes it:

- the request body as it comes in (``api/middleware/http.py``): twice its length, for
  the bytes and what parsing them makes;
- encoded images: base64-decoded bytes, files read, URL downloads chunk by chunk
  (``images/``), a downloaded video's memory file (``images/video.py``);
- decoded images (width x height x 3, from the header), mmap or shm frames, and the
  decoded frames of an open video;
- v2 tensors: the parse of the JSON part, decompressed bodies, ``BYTES`` elements and the
  images they hold (``api/v2/``);
- the model's working set for a call (``model_memory``): what the model's
  ``memory_estimate(items)`` says, or ``DEFAULT_MODEL_FACTOR`` times the items' bytes.

A request whose holds together would pass the whole account is refused at once: 413
(code 501). One that would fit an empty account but not what the worker's other requests
hold now gets 503 with ``Retry-After`` (code 511); a door running in a thread first waits
up to ``wait`` seconds for room. A hold is given back when its memory is freed: an image
when its array is collected (``Hold.attach``), anything else when its door is done or, at
the latest, when its request ends (``MemoryAccount.request``). Outside a request
(``lib.load_image``, jobs) each hold stands alone.
"""

import contextvars
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from .errors import VqlError

MIB = 1 << 20
DEFAULT_BYTES = 512 * MIB  # ATOM_MEMORY_BYTES: a worker peaks under 1 GiB (BENCHMARKS.md)
DEFAULT_MODEL_FACTOR = 2  # a model's working set, in bytes of its items, when not declared
BUSY_CODE = 511  # "processing failed", sent with 503: the caller may retry
TOO_LARGE_CODE = 501
RETRY_AFTER = "1"  # seconds


def mib(nbytes: int) -> str:
    """Bytes in MiB, for messages."""
    return f"{nbytes / MIB:.1f} MiB"


class Tab:
    """What one request holds now, summed over its doors: its ``Hold``s, plus ``kept``
    bytes held until it ends (``MemoryAccount.keep``: its body). Entered, it is the
    request's scope (``MemoryAccount.request``): leaving it gives back what the request
    kept and every hold not attached to an object that outlives it. Its counts change
    under its account's lock (one lock per bytes taken or given back)."""

    __slots__ = ("account", "held", "holds", "kept", "token")

    def __init__(self, account: "MemoryAccount") -> None:
        self.account = account
        self.held = 0
        self.kept = 0
        self.holds: set[Hold] = set()
        self.token: contextvars.Token[Tab | None] | None = None

    def __enter__(self) -> "Tab":
        self.token = _tab.set(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.token is not None:
            _tab.reset(self.token)
        account = self.account
        with account._lock:
            holds = [hold for hold in self.holds if not hold.attached] if self.holds else ()
            kept, self.kept = self.kept, 0
            if kept:
                self.held -= kept
                account._returned(kept)
        for hold in holds:
            hold.release()


_tab: contextvars.ContextVar[Tab | None] = contextvars.ContextVar("atom_memory_tab", default=None)


class Hold:
    """Bytes taken from the account, given back once (``release``, or when an object
    it is attached to is freed, or when its request ends)."""

    __slots__ = ("__weakref__", "account", "attached", "nbytes", "tab")

    def __init__(self, account: "MemoryAccount", nbytes: int, tab: Tab | None) -> None:
        self.account = account
        self.nbytes = nbytes
        self.tab = tab
        self.attached = False

    def release(self) -> None:
        """Give the bytes back (again: nothing)."""
        nbytes, self.nbytes = self.nbytes, 0
        if not nbytes:
            return
        self.account.give_back(nbytes, self.tab, self)

    def split(self, sizes: Sequence[int]) -> "list[Hold]":
        """This hold as one hold per size (they must add up to it), each released alone."""
        parts = [Hold(self.account, size, self.tab) for size in sizes]
        if self.tab is not None:
            with self.account._lock:
                self.tab.holds.discard(self)
                self.tab.holds.update(parts)
        self.nbytes = 0
        return parts

    def attach(self, obj: Any) -> Any:
        """Give the bytes back when ``obj`` is freed, not before (even after its request:
        an image kept alive, by a reference cycle or a cache, still takes its memory);
        returns it."""
        self.attached = True
        weakref.finalize(obj, self.release)
        return obj

    def __enter__(self) -> "Hold":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class MemoryAccount:
    """The bytes a worker's requests may hold at once (module docstring)."""

    def __init__(self, total: int = DEFAULT_BYTES, *, wait: float = 10.0) -> None:
        self.total = total
        self.wait = wait
        self.in_use = 0
        self.peak = 0
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified when bytes come back
        self._waiting = 0  # doors waiting for room

    def take(self, nbytes: int, what: str, *, wait: bool = True) -> Hold:
        """Hold ``nbytes`` for ``what`` in the current request; 413 when the request
        would pass the account, 503 when the worker has no room (after ``wait`` s when
        ``wait`` is true: never on the event loop)."""
        nbytes = max(int(nbytes), 0)
        tab = _tab.get()
        hold = Hold(self, nbytes, tab)
        self._draw(nbytes, what, tab, self.wait if wait else 0.0, hold)
        return hold

    def keep(self, nbytes: int, what: str) -> None:
        """Hold ``nbytes`` for ``what`` until the current request ends, without waiting
        (a request's body: no ``Hold`` to carry). Outside a request, nothing is held."""
        tab = _tab.get()
        if tab is not None and nbytes > 0:
            self._draw(nbytes, what, tab, 0.0, None)

    def _draw(
        self, nbytes: int, what: str, tab: Tab | None, wait: float, hold: Hold | None
    ) -> None:
        """Take ``nbytes`` from the account for ``what`` (``hold``, else kept by ``tab``
        until its request ends), or raise 413 or 503 (take)."""
        before = tab.held if tab is not None else 0
        if before + nbytes > self.total:
            raise VqlError(
                TOO_LARGE_CODE,
                f"{what} would take {mib(nbytes)}, the request {mib(before + nbytes)} in all:"
                f" above the worker's memory of {mib(self.total)} (ATOM_MEMORY_BYTES)",
                status=413,
            )
        with self._lock:
            if self.in_use + nbytes > self.total and not self._wait_for_room(nbytes, wait):
                raise VqlError(
                    BUSY_CODE,
                    f"the worker's memory (ATOM_MEMORY_BYTES, {mib(self.total)}) is taken by"
                    f" other requests: no room for {what} ({mib(nbytes)}), retry later",
                    status=503,
                    headers={"Retry-After": RETRY_AFTER},
                )
            self.in_use += nbytes
            self.peak = max(self.peak, self.in_use)
            if tab is not None:
                tab.held += nbytes
                if hold is None:
                    tab.kept += nbytes
                else:
                    tab.holds.add(hold)

    def _wait_for_room(self, nbytes: int, wait: float) -> bool:
        """Under the lock: wait up to ``wait`` s for ``nbytes`` of room; False if none came."""
        if wait <= 0:
            return False
        deadline = time.monotonic() + wait
        self._waiting += 1
        try:
            while self.in_use + nbytes > self.total:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._room.wait(left)
        finally:
            self._waiting -= 1
        return True

    def give_back(self, nbytes: int, tab: Tab | None = None, hold: Hold | None = None) -> None:
        """Return ``nbytes`` (``hold``'s, counted in ``tab``, when given) and wake the doors
        waiting for room."""
        with self._lock:
            if tab is not None:
                tab.held -= nbytes
                if hold is not None:
                    tab.holds.discard(hold)
            self._returned(nbytes)

    def _returned(self, nbytes: int) -> None:
        """Under the lock: ``nbytes`` came back."""
        self.in_use -= nbytes
        if self._waiting:
            self._room.notify_all()

    def request(self) -> Tab:
        """The scope of one request (``with account.request() as tab``): what its doors
        hold is given back when it ends."""
        return Tab(self)


def current_account() -> "MemoryAccount":
    """The account of the request being served, else ``default_account()``."""
    tab = _tab.get()
    return tab.account if tab is not None else default_account()


def items_bytes(items: Sequence[Any]) -> int:
    """The bytes of a call's items that are arrays (or buffers)."""
    return sum(int(getattr(item, "nbytes", 0) or 0) for item in items)


def model_memory(model: Any, items: Sequence[Any]) -> int:
    """The working set of one call of ``model`` on ``items``: its ``memory_estimate``
    when the model declares one, else ``DEFAULT_MODEL_FACTOR`` times the items' bytes."""
    estimate: Callable[[Sequence[Any]], int] | None = getattr(model, "memory_estimate", None)
    if callable(estimate):
        return int(estimate(items))
    return DEFAULT_MODEL_FACTOR * items_bytes(items)


_default: list[MemoryAccount] = []


def set_default_account(account: MemoryAccount) -> None:
    """Make ``account`` the one ``default_account()`` returns (``get_app`` passes the app's)."""
    _default[:] = [account]


def default_account() -> MemoryAccount:
    """The account of the last app built in this process, else one with the defaults."""
    if not _default:
        _default.append(MemoryAccount())
    return _default[0]
