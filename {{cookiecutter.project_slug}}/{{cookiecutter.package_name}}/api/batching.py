"""Dynamic batching: the images of concurrent requests go to the model in one call.

A model opts in next to its loader::

    @router.model_loader("face", batch=Batching(max_size=16, max_wait_ms=5))
    def load_model(settings: Settings) -> FaceDetector: ...

and the route keeps calling ``model.predict_batch(frames, threshold)``: the ``Model("face")``
dependency then gives a stand-in whose ``predict_batch`` queues the request's items, and
one thread per model (``batch-face``) calls the real ``predict_batch`` with the items of
several requests and hands each request its own results, in order. Requests share a call
only when their other arguments are equal (the same ``threshold``).

- **When a batch starts**: as soon as the model is free. It waits up to ``max_wait_ms``
  for more items only while other requests for the model are on their way (they got the
  model from the dependency and are loading their images): a lone caller never waits.
- **No collateral failure**: when a call raises, the batch is split in halves, again and
  again, until the requests whose items fail are alone; only they get the error (a
  ``VqlError`` keeps its code; anything else is the 500 envelope), the others their
  results.
- **Bounded waiting**: more than ``queue_size`` items waiting answers 503 with
  ``Retry-After`` at once; no request waits for its results longer than ``timeout``
  seconds (ATOM_BATCH_TIMEOUT by default: then 503 too); a request whose client went
  away before its batch ran is dropped from it.
- A request with more items than ``max_size`` runs alone, in calls of ``max_size`` items.

The metrics ``atom_batch_size``, ``atom_batch_wait_seconds`` and ``atom_batch_queue_depth``
(labelled by model) follow every batcher (``control/metrics.py``).
"""

import asyncio
import contextlib
import dataclasses
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol

from fastapi import HTTPException, Request

from ..memory import Hold, current_account, model_memory

logger = logging.getLogger(__name__)

Loop = asyncio.AbstractEventLoop
RETRY_AFTER = "1"  # seconds, in the 503 of a full queue or a missed deadline
# The longest the batch thread waits for the GIL once its model call returns (Python's
# default is 5 ms, paid after every batch while the event loop holds the GIL): measured
# about 25% more requests/s on the batching benchmark's model (bench_batching.py).
SWITCH_INTERVAL = 0.001
IDLE_TICK = 1.0  # seconds between two queue-depth reports of an idle batcher


@dataclasses.dataclass(frozen=True)
class Batching:
    """How a model takes batches (``UdfAPIRoute.model_loader(name, batch=...)``).

    ``max_size`` items per call at most; ``max_wait_ms`` the longest a batch waits for
    requests on their way; ``queue_size`` items waiting at most (then 503); ``timeout``
    seconds a request waits for its results at most (None: ATOM_BATCH_TIMEOUT);
    ``method`` the model's batch method. Each can be overridden per model by the
    environment: ``ATOM_BATCH__<MODEL>__MAX_SIZE=32`` and so on (max_size 1 turns it off).
    """

    max_size: int = 16
    max_wait_ms: float = 5.0
    queue_size: int = 256
    timeout: float | None = None
    method: str = "predict_batch"

    def __post_init__(self) -> None:
        if self.max_size < 1 or self.queue_size < 1:
            raise ValueError("Batching: max_size and queue_size must be at least 1")
        if self.max_wait_ms < 0 or (self.timeout is not None and self.timeout <= 0):
            raise ValueError("Batching: max_wait_ms must be >= 0 and timeout > 0")

    def overridden(self, **values: Any) -> "Batching":
        """A copy with the values that are not None replaced."""
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})


class BatchObserver(Protocol):
    """What a batcher reports (``control.metrics.BatchMetrics`` implements it)."""

    def batch_ran(self, model: str, size: int, waits: Sequence[float]) -> None: ...

    def queue_depth(self, model: str, depth: int) -> None: ...


def busy(message: str) -> HTTPException:
    """The 503 of a full queue or a missed deadline: the envelope plus Retry-After."""
    return HTTPException(503, message, headers={"Retry-After": RETRY_AFTER})


def client_gone() -> HTTPException:
    """What a request whose client went away gets (nobody reads it: 499, as nginx logs it)."""
    return HTTPException(499, "client closed the request before its batch ran")


class _Pending:
    """One request's share of the queue: its items, the arguments of the call, its outcome
    and the future its caller waits on (made on the caller's event loop ``loop``, if any)."""

    __slots__ = (
        *("args", "deadline", "dropped", "enqueued", "future", "items", "key", "kwargs"),
        *("loop", "outcome"),
    )

    def __init__(self, items: list, args: tuple, kwargs: dict, timeout: float, loop: Loop | None):
        self.items = items
        self.args = args
        self.kwargs = kwargs
        self.key = _call_key(args, kwargs)
        self.enqueued = time.monotonic()
        self.deadline = self.enqueued + timeout
        self.loop = loop
        self.future: Any = Future() if loop is None else loop.create_future()
        self.outcome: tuple[list, BaseException | None] | None = None
        self.dropped = False  # the caller stopped waiting, or its client went away

    def settle(self, result: list | None = None, error: BaseException | None = None) -> None:
        """Record the caller's result or its error (the first one counts): ``_deliver``."""
        if self.outcome is None:
            self.outcome = (result or [], error)


def _deliver(pendings: list[_Pending]) -> None:
    """Hand the callers their outcomes: a thread's at once, those waiting on an event loop
    in one call per loop (each call wakes it up)."""
    by_loop: dict[Loop | None, list[_Pending]] = {}
    for pending in pendings:
        by_loop.setdefault(pending.loop, []).append(pending)
    for loop, waiting in by_loop.items():
        if loop is None:
            _resolve(waiting)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, waiting)


def _resolve(pendings: list[_Pending]) -> None:
    """Complete the futures with the outcomes (an asyncio future on its own loop)."""
    for pending in pendings:
        if pending.outcome is None or pending.future.done():
            continue
        result, error = pending.outcome
        with contextlib.suppress(Exception):  # a thread's future completed meanwhile
            if error is None:
                pending.future.set_result(result)
            else:
                pending.future.set_exception(error)


def _plain(exc: BaseException) -> Exception:
    """What a request gets for an error of its batch: an ``Exception`` as raised; any other
    ``BaseException`` (``SystemExit``, ``KeyboardInterrupt``...) as a ``RuntimeError``,
    a failure of that request alone (its route answers the 500 envelope)."""
    if isinstance(exc, Exception):
        return exc
    error = RuntimeError(f"the model raised {type(exc).__name__}")
    error.__cause__ = exc
    return error


def _call_key(args: tuple, kwargs: dict) -> Hashable:
    """Requests share a call when their other arguments are equal."""
    try:
        key = (args, tuple(sorted(kwargs.items())))
        hash(key)
    except TypeError:
        return object()  # unhashable arguments: a batch of its own
    return key


class Batcher:
    """The queue of one model and the thread that runs its batches."""

    def __init__(
        self,
        name: str,
        model: Any,
        config: Batching,
        timeout: float,
        observer: BatchObserver | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.config = config
        self.timeout = config.timeout or timeout
        self._call: Callable[..., Any] = getattr(model, config.method)
        self._observer = observer
        self._queue: deque[_Pending] = deque()
        self._queued_items = 0
        self._coming = 0  # requests that hold the model and have not submitted yet
        self._cond = threading.Condition()
        # What the batch thread waits for: "first" (any item), "more" (a batch being
        # gathered), or None (running a batch). Requests wake it only when that may have
        # come: each wake-up makes the event loop hand over the GIL.
        self._waiting_for: str | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"batch-{name}", daemon=True)

    # Requests' side ------------------------------------------------------------

    def start(self) -> None:
        """Start the batch thread (and make the GIL change hands sooner, process-wide)."""
        if sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Items waiting for a batch."""
        return self._queued_items

    def announce(self) -> None:
        """A request got the model: a batch may wait for it (up to max_wait_ms)."""
        with self._cond:
            self._coming += 1

    def withdraw(self) -> None:
        """A request that announced itself ended without submitting anything."""
        with self._cond:
            self._coming -= 1
            self._wake_if_due()

    def submit(
        self, items: list, args: tuple, kwargs: dict, *, announced: bool, loop: Loop | None = None
    ) -> _Pending:
        """Queue a request's items (withdrawing its announcement); 503 at once when the
        queue is full. Its caller waits with ``wait``, or on ``loop`` with ``wait_async``."""
        pending = _Pending(items, args, kwargs, self.timeout, loop)
        with self._cond:
            if announced:
                self._coming -= 1
            if self._stopped:
                self._wake_if_due()
                raise busy(f"model {self.name!r} is stopping")
            if self._queued_items and self._queued_items + len(items) > self.config.queue_size:
                self._wake_if_due()
                raise busy(f"model {self.name!r} is busy: its queue is full")
            self._queue.append(pending)
            self._queued_items += len(items)
            self._wake_if_due()
        return pending

    def _wake_if_due(self) -> None:
        """Wake the batch thread if what it waits for may be there (lock held)."""
        waiting = self._waiting_for
        if waiting == "first":
            if self._queue:
                self._cond.notify()
        elif waiting == "more" and (
            self._coming <= 0 or self._queued_items >= self.config.max_size
        ):
            self._cond.notify()

    def wait(self, pending: _Pending) -> list:
        """The request's results, in order; 503 past its deadline."""
        try:
            return pending.future.result(max(0.0, pending.deadline - time.monotonic()))
        except FutureTimeout:
            raise self._late() from None
        finally:
            pending.dropped = True  # nobody waits for it any more

    async def wait_async(self, pending: _Pending) -> list:
        """``wait`` on the event loop given to ``submit``: one timer, no task or thread hop."""
        remaining = max(0.0, pending.deadline - time.monotonic())
        timer = asyncio.get_running_loop().call_later(remaining, self._expire, pending)
        try:
            return await pending.future
        finally:
            timer.cancel()
            pending.dropped = True

    def _expire(self, pending: _Pending) -> None:
        pending.settle(error=self._late())
        _resolve([pending])

    def stop(self) -> None:
        """Stop the thread; the requests still queued get a 503."""
        with self._cond:
            self._stopped = True
            self._waiting_for = None
            left, self._queue = list(self._queue), deque()
            self._queued_items = 0
            self._cond.notify_all()
        for pending in left:
            pending.settle(error=busy(f"model {self.name!r} is stopping"))
        _deliver(left)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)

    # The batch thread ------------------------------------------------------------

    def _run(self) -> None:
        while self._run_next():
            pass

    def _run_next(self) -> bool:
        """Wait for the next batch and run it; False once stopped. A call of its own, so
        that nothing of a batch (its items, its results) stays alive while the thread
        waits for the next one."""
        batch = self._next_batch()
        if batch is None:
            return False
        if batch:
            self._run_batch(batch)
            _deliver(batch)
        return True

    def _next_batch(self) -> list[_Pending] | None:
        """Wait for a batch to start (None once stopped); [] when all were dropped."""
        config, cond = self.config, self._cond
        with cond:
            self._waiting_for = "first"
            while not self._queue and not self._stopped:
                if not cond.wait(IDLE_TICK):
                    self._report_depth()
            if self._stopped:
                return None
            key = self._queue[0].key
            give_up = time.monotonic() + config.max_wait_ms / 1000
            self._waiting_for = "more"
            while self._coming > 0 and self._queued_for(key) < config.max_size:
                left = give_up - time.monotonic()
                if left <= 0 or not cond.wait(left):
                    break
            self._waiting_for = None
            batch = self._take(key)
            self._report_depth()
        return batch

    def _queued_for(self, key: Hashable) -> int:
        return sum(len(p.items) for p in self._queue if p.key == key)

    def _take(self, key: Hashable) -> list[_Pending]:
        """The requests of the next call, in order: the first one and those of its key that
        fit in max_size; the dropped and the expired are removed on the way."""
        batch: list[_Pending] = []
        kept: deque[_Pending] = deque()
        size, now = 0, time.monotonic()
        for pending in self._queue:
            if pending.dropped or now >= pending.deadline:
                self._queued_items -= len(pending.items)
                pending.settle(error=client_gone() if pending.dropped else self._late())
                _deliver([pending])
                continue
            fits = not batch or size + len(pending.items) <= self.config.max_size
            if pending.key == key and fits and size < self.config.max_size:
                batch.append(pending)
                size += len(pending.items)
                self._queued_items -= len(pending.items)
            else:
                kept.append(pending)
        self._queue = kept
        return batch

    def _late(self) -> HTTPException:
        return busy(f"model {self.name!r} did not answer within {self.timeout:g} s")

    def _report_depth(self) -> None:
        if self._observer is not None:
            self._observer.queue_depth(self.name, self._queued_items)

    def _run_batch(self, batch: list[_Pending]) -> None:
        started = time.monotonic()
        if self._observer is not None:
            size = sum(len(p.items) for p in batch)
            self._observer.batch_ran(self.name, size, [started - p.enqueued for p in batch])
        try:
            self._solve(batch)
        except BaseException as exc:  # noqa: BLE001 - the thread must outlive any error
            for pending in batch:
                pending.settle(error=_plain(exc))

    def _solve(self, batch: list[_Pending]) -> None:
        """Run a batch; if it fails, split it until only the failing requests get the error."""
        items = [item for pending in batch for item in pending.items]
        first = batch[0]
        try:
            results = self._call_in_chunks(items, first.args, first.kwargs)
        except BaseException as exc:  # noqa: BLE001 - whatever the model raises goes to its caller
            del items  # not kept alive by the halves below
            if len(batch) == 1:
                first.settle(error=_plain(exc))
                return
            logger.info(
                "a batch of %d requests for %r failed (%s): splitting it",
                len(batch),
                self.name,
                type(exc).__name__,
            )
            middle = len(batch) // 2
            self._solve(batch[:middle])
            self._solve(batch[middle:])
            return
        offset = 0
        for pending in batch:
            count = len(pending.items)
            pending.settle(results[offset : offset + count])
            offset += count

    def _call_in_chunks(self, items: list, args: tuple, kwargs: dict) -> list:
        """The model's batch method on ``items``, max_size at a time; one result per item."""
        step = self.config.max_size
        results: list = []
        for start in range(0, len(items), step):
            chunk = items[start : start + step]
            out = list(self._call(chunk, *args, **kwargs))
            if len(out) != len(chunk):
                raise RuntimeError(
                    f"{self.config.method} of {self.name!r} gave {len(out)} results"
                    f" for {len(chunk)} items"
                )
            results += out
        return results


class BatchedModel:
    """What ``Model(name)`` gives a request when the model batches: the model's batch
    method queues the items, every other attribute is the model's own.

    One per request. It tells the batcher a request is on its way until it submits; once
    it has, it watches the connection (on the event loop) and drops its items from the
    queue if the client disconnects. FastAPI ends it when the route returns.
    """

    __slots__ = (
        "_batcher",
        "_loop",
        "_pending",
        "_released",
        "_request",
        "_submitted",
        "_watcher",
    )

    def __init__(self, batcher: Batcher, request: Request) -> None:
        self._batcher = batcher
        self._request = request
        self._loop = asyncio.get_running_loop()
        self._submitted = self._released = False
        self._pending: _Pending | None = None
        self._watcher: asyncio.Task | None = None
        batcher.announce()
        stack = request.scope.get("fastapi_function_astack")
        if stack is not None:  # closed when the route returns, before the response
            stack.callback(self.release)

    def __getattr__(self, name: str) -> Any:
        batcher = self._batcher
        if name == batcher.config.method:
            return self._predict
        return getattr(batcher.model, name)

    def _predict(self, items: Sequence, *args: Any, **kwargs: Any) -> list:
        """The batch method for ``def`` routes: blocks until the request's results are in."""
        pending, hold = self._submit(items, args, kwargs, None)
        with hold:
            return [] if pending is None else self._batcher.wait(pending)

    async def batch(self, items: Sequence, *args: Any, **kwargs: Any) -> list:
        """The batch method for ``async def`` routes: ``await model.batch(frames, ...)``."""
        pending, hold = self._submit(items, args, kwargs, asyncio.get_running_loop())
        with hold:
            return [] if pending is None else await self._batcher.wait_async(pending)

    def _submit(
        self, items: Sequence, args: tuple, kwargs: dict, loop: Loop | None
    ) -> tuple[_Pending | None, Hold]:
        """Queue the items, the model's working set for them held from the request's
        memory (``memory.py``) until their results are in. ``loop``: the caller's (it
        never waits for memory there), None for a thread's."""
        items = list(items)
        announced = not self._submitted
        self._submitted = True
        account = current_account()
        if not items:
            if announced:
                self._batcher.withdraw()
            return None, account.take(0, "nothing")
        try:
            size = model_memory(self._batcher.model, items)
            hold = account.take(size, "the model's working set", wait=loop is None)
        except BaseException:
            if announced:
                self._batcher.withdraw()
            raise
        try:
            pending = self._batcher.submit(items, args, kwargs, announced=announced, loop=loop)
        except BaseException:
            hold.release()
            raise
        self._pending = pending
        if self._watcher is None:
            if loop is self._loop:
                self._watch()
            else:
                self._loop.call_soon_threadsafe(self._watch)
        return pending, hold

    def _watch(self) -> None:
        """Start watching the connection (on the loop), unless the route already returned."""
        if not self._released and self._watcher is None:
            self._watcher = self._loop.create_task(self._watch_client())

    async def _watch_client(self) -> None:
        """Drop the request's queued items if its client disconnects.

        The body was read before the route called the model, so the next message of the
        connection is its end: a disconnect, or the end of the response.
        """
        message = await self._request.receive()
        pending = self._pending
        if message["type"] == "http.disconnect" and pending is not None and not self._released:
            pending.dropped = True
            logger.info("client gone: its items leave the queue of %r", self._batcher.name)

    def release(self) -> None:
        """The route returned: stop watching; withdraw if it never submitted. Nothing of
        the request stays reachable from here (the watcher and this object referred to
        each other: its items lived until a garbage collection)."""
        self._released = True
        self._pending = None
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        if not self._submitted:
            self._submitted = True
            self._batcher.withdraw()
