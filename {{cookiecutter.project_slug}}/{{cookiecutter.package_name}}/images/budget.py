"""The memory a worker's images may take: checked from their headers, before decoding.

A decoded image takes width x height x 3 bytes, whatever its encoded size: a 140 KB PNG
may declare 36 million pixels (108 MB once decoded). ``DecodeBudget`` bounds that memory
in one worker process:

- a request whose items, summed, would decode to more than ``per_request`` bytes is
  refused at once (413), before anything is decoded;
- the decoded images of all the requests of the worker take at most ``per_worker``
  bytes: a request reserves its sum before decoding and waits for room (up to ``wait``
  seconds, then 503); each image gives its share back when its array is freed;
- at most ``decodes`` images are decoded at once (``decode_slot``): a decoder's own
  buffers come on top of the image.

``ByteAllowance`` bounds the encoded bytes a request downloads or reads, summed over its
items: as many as its body could have carried (ATOM_MAX_BODY_BYTES).
"""

import gc
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import VqlError

BUSY_CODE = 511  # "processing failed", sent with 503: the caller may retry


def mib(nbytes: int) -> str:
    """Bytes in MiB, for messages."""
    return f"{nbytes / (1 << 20):.1f} MiB"


class ByteAllowance:
    """Encoded bytes that one request may still read (downloads and files, summed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> None:
        """Count ``nbytes`` more; 413 (code 501) once the request is past its limit."""
        with self._lock:
            self.used += nbytes
            used = self.used
        if used > self.limit:
            raise VqlError(
                501,
                f"the request's images take more than {self.limit} bytes (ATOM_MAX_BODY_BYTES)",
                status=413,
            )


class Reservation:
    """The decoded bytes reserved for the items of one request, given back item by item."""

    def __init__(self, budget: "DecodeBudget", sizes: Sequence[int]) -> None:
        self._budget = budget
        self._left = list(sizes)

    def attach(self, index: int, array: Any) -> Any:
        """Give item ``index``'s share back when ``array`` (its image) is freed."""
        size, self._left[index] = self._left[index], 0
        if size:
            weakref.finalize(array, self._budget.release, size)
        return array

    def release_unused(self) -> None:
        """Give back the shares of items that produced no image (an error stopped them)."""
        unused, self._left = sum(self._left), [0] * len(self._left)
        if unused:
            self._budget.release(unused)


class DecodeBudget:
    """Decoded bytes per request and per worker, and decodes at once (module docstring)."""

    def __init__(self, *, per_request: int, per_worker: int, decodes: int, wait: float) -> None:
        self.per_request = per_request
        self.per_worker = max(per_worker, per_request)
        self.wait = wait
        self.in_use = 0
        self._cond = threading.Condition()
        self._decodes = threading.BoundedSemaphore(decodes)

    def reserve(self, sizes: Sequence[int]) -> Reservation:
        """Reserve the decoded size of every item of a request, waiting for room if needed."""
        total = sum(sizes)
        if total > self.per_request:
            raise VqlError(
                501,
                f"the images decode to {mib(total)}, above the limit of {mib(self.per_request)}"
                " per request (IMAGE_MAX_DECODED_BYTES)",
                status=413,
            )
        if not self._acquire(total, self.wait) and not self._acquire_after_collect(total):
            raise VqlError(
                BUSY_CODE,
                f"the worker's image memory (IMAGE_WORKER_DECODED_BYTES, {mib(self.per_worker)})"
                f" stayed full for {self.wait:g} s: retry later",
                status=503,
            )
        return Reservation(self, sizes)

    def _acquire(self, total: int, wait: float) -> bool:
        deadline = time.monotonic() + wait
        with self._cond:
            while self.in_use + total > self.per_worker:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            self.in_use += total
        return True

    def _acquire_after_collect(self, total: int) -> bool:
        """Images held only by reference cycles are freed by a collection: try once more."""
        gc.collect()
        return self._acquire(total, 0.05)

    def release(self, nbytes: int) -> None:
        """Give ``nbytes`` back (an image was freed) and wake the requests waiting."""
        with self._cond:
            self.in_use -= nbytes
            self._cond.notify_all()

    @contextmanager
    def decode_slot(self) -> Iterator[None]:
        """Hold one of the worker's decode slots while decoding."""
        with self._decodes:
            yield
