"""META, what the Serving platform tells the atom about itself, and the registration.

The contract lives in ``control/meta.py`` (``ServingMeta``, ``parse_meta``) and the
registration in ``control/serving.py``; this module keeps ``linker_atom``'s path and
builds the registration agent from the settings. ``ServingConfig`` is ``linker_atom``'s
view of META (``lib/settings.py``).
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..control.health import READY_PATH
from ..control.meta import ServingMeta, camel, parse_meta, split_model_ids

if TYPE_CHECKING:
    from ..control.serving import ServingAgent
    from . import Settings

__all__ = [
    "ServingMeta",
    "camel",
    "parse_meta",
    "serving_agent",
    "split_model_ids",
]


def serving_agent(
    settings: "Settings", on_event: Callable[[str], None] | None = None
) -> "ServingAgent | None":
    """The registration agent of this atom, or None when META names no Serving host.

    It waits for the ready route on ATOM_PORT (the public port: nginx's under nginx_run).
    """
    meta = settings.serving
    if not meta.registers:
        return None
    from ..control.serving import ServingAgent  # noqa: PLC0415 - requests, only when used

    host = "127.0.0.1" if settings.atom_host in ("", "0.0.0.0", "::") else settings.atom_host
    return ServingAgent(
        meta,
        f"http://{host}:{settings.atom_port}{settings.atom_api_prefix}{READY_PATH}",
        interval=settings.serving_heartbeat_interval,
        retry_max=settings.serving_retry_max,
        timeout=settings.serving_timeout,
        on_event=on_event,
    )


def __getattr__(name: str) -> Any:
    """``ServingConfig``: ``linker_atom``'s, from the compatibility package on first use."""
    if name == "ServingConfig":
        from ..lib.settings import ServingConfig  # noqa: PLC0415 - the core never imports lib

        return ServingConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
