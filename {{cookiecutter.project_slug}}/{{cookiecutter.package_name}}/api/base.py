"""``linker_atom``'s ``api.base``: ``UdfAPIRoute`` is the atom's ``Router``
(``api/router.py``) and ``ContextAPIRoute`` its route class (``api/call_log.py``), both
forwarded from the compatibility package (``lib/api.py``) on first use. Route modules of
older atoms import ``UdfAPIRoute`` from here; new ones import ``Router`` from ``<package>.api``.
"""

from typing import Any

# linker_atom's names at this path, defined in the compatibility package (lib/api.py).
LEGACY_NAMES = frozenset({"ContextAPIRoute", "UdfAPIRoute"})


def __getattr__(name: str) -> Any:
    """``UdfAPIRoute`` and ``ContextAPIRoute``, from the compatibility package."""
    if name in LEGACY_NAMES:
        from ..lib import api as legacy  # noqa: PLC0415 - the core never imports lib

        return getattr(legacy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
