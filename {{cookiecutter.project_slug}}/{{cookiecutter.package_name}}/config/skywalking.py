"""SkyWalking tracing: the agent runs inside each server process, started by the lifespan.

With SW_SWITCH off nothing here imports ``skywalking``. With it on, ``start_agent``
configures the agent from the SW_* settings (protocol included) after the server process
started (never before a fork), and the trace id of the current request goes into its
log lines (``trace_id()``). ``SkyWalkingConfig`` is ``linker_atom``'s view of the SW_*
settings (``lib/settings.py``).
"""

import logging
import os
from collections.abc import Callable
from typing import Any

from . import Settings

__all__ = ["PLUGINS", "start_agent", "trace_id"]

logger = logging.getLogger(__name__)

# The agent tries to patch ~40 libraries and warns about each one that is not installed;
# only these are used by an atom.
PLUGINS = ("sw_fastapi", "sw_requests", "sw_urllib3", "sw_urllib_request", "sw_logging")


def trace_id() -> str:
    """The trace id of the active span, or "-" outside a traced request."""
    from skywalking.trace.context import get_context  # noqa: PLC0415 - only with SW_SWITCH on

    context = get_context()
    if context.active_span is None:  # get_context() would otherwise invent a new trace
        return "-"
    return str(context.segment.related_traces[0])


def start_agent(settings: Settings) -> Callable[[], None] | None:
    """Start the agent when SW_SWITCH is on; return the function that stops it."""
    if not settings.sw_switch:
        return None
    from skywalking import config  # noqa: PLC0415 - only with SW_SWITCH on

    instance = settings.sw_agent_instance_name
    if settings.atom_supervised:  # one instance per worker process
        instance = f"{instance}-{settings.atom_port}"
    config.init(
        agent_collector_backend_services=settings.sw_agent_collector_backend_services,
        agent_name=settings.sw_agent_name or settings.atom_title,
        agent_instance_name=instance,
        agent_protocol=settings.sw_agent_protocol,
        agent_log_reporter_active=settings.sw_agent_log_reporter_active,
        agent_log_reporter_level=settings.sw_agent_log_reporter_level,
        agent_disable_plugins=[rf"^(?!{'|'.join(PLUGINS)}$)"],
    )
    # The agent object is created when its module is first imported: after config.init().
    from skywalking.agent import agent  # noqa: PLC0415 - only with SW_SWITCH on

    agent.start()
    logger.info(
        "SkyWalking agent started: %s over %s as %s (pid %d)",
        settings.sw_agent_collector_backend_services,
        settings.sw_agent_protocol,
        instance,
        os.getpid(),
    )
    return agent.stop


def __getattr__(name: str) -> Any:
    """``SkyWalkingConfig``: ``linker_atom``'s, from the compatibility package on first use."""
    if name == "SkyWalkingConfig":
        from ..lib.settings import SkyWalkingConfig  # noqa: PLC0415 - the core never imports lib

        return SkyWalkingConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
