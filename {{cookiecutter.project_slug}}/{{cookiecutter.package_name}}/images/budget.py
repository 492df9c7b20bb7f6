"""The encoded bytes one request's images take: counted, and held in the worker's memory.

``ByteAllowance`` bounds the encoded bytes a request downloads, reads or base64-decodes,
summed over its items: as many as its body could have carried (ATOM_MAX_BODY_BYTES).
Each byte it counts is also held in the worker's memory account (``memory.py``) until the
load ends (``release``): the downloads of a worker's requests share ATOM_MEMORY_BYTES.
"""

import threading

from ..errors import VqlError
from ..memory import Hold, MemoryAccount


class ByteAllowance:
    """Encoded bytes that one request may still read (downloads and files, summed)."""

    def __init__(self, limit: int, account: MemoryAccount) -> None:
        self.limit = limit
        self.used = 0
        self.account = account
        self._holds: list[Hold] = []
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> None:
        """Count and hold ``nbytes`` more; 413 (code 501) once the request is past its
        limit, 413 or 503 when the worker's memory has no room for them."""
        with self._lock:
            self.used += nbytes
            used = self.used
        if used > self.limit:
            raise VqlError(
                501,
                f"the request's images take more than {self.limit} bytes (ATOM_MAX_BODY_BYTES)",
                status=413,
            )
        hold = self.account.take(nbytes, "the encoded images")
        with self._lock:
            self._holds.append(hold)

    def release(self) -> None:
        """Give back what was held (the encoded bytes are no longer needed)."""
        with self._lock:
            holds, self._holds = self._holds, []
        for hold in holds:
            hold.release()
