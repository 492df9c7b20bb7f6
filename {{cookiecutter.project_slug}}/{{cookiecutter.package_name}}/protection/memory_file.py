"""An anonymous file in memory, seen as a path, for libraries that only open paths."""

import fcntl
import os
from types import TracebackType

SEALS = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL


class MemoryFile:
    """A ``memfd_create`` file: ``path`` is ``/proc/self/fd/N``, valid in this process until
    ``close()``. Nothing is written to disk; once filled it is sealed read-only. Linux only.
    """

    def __init__(self, name: str = "atom-model") -> None:
        self._fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        self.size = 0

    @property
    def closed(self) -> bool:
        """True once closed."""
        return self._fd < 0

    @property
    def path(self) -> str:
        """``/proc/self/fd/N``: open it like a file, in this process only."""
        return f"/proc/self/fd/{self.fileno()}"

    def fileno(self) -> int:
        """The file descriptor."""
        if self._fd < 0:
            raise ValueError("the memory file is closed")
        return self._fd

    def seal(self) -> None:
        """Forbid any further change of content or size."""
        fcntl.fcntl(self.fileno(), fcntl.F_ADD_SEALS, SEALS)

    def read(self) -> bytes:
        """The whole content."""
        parts, offset = [], 0
        while offset < self.size:
            part = os.pread(self.fileno(), min(self.size - offset, 1 << 30), offset)
            if not part:
                break
            parts.append(part)
            offset += len(part)
        return b"".join(parts)

    def close(self) -> None:
        """Release the memory (the path stops working)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def __enter__(self) -> "MemoryFile":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.path
        return f"<MemoryFile {state} size={self.size}>"
