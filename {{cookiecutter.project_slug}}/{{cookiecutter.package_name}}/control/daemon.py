"""Blocking work awaited from the event loop in a daemon thread, never waited for at exit.

A model that is still loading, or a stop call to an unreachable host, must not hold up
SIGTERM: ``asyncio.to_thread`` uses the default executor, whose threads the interpreter
joins at exit.
"""

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import Any


def run_in_daemon_thread(fn: Callable[..., Any], *args: Any, name: str = "worker") -> Any:
    """Run ``fn(*args)`` in a new daemon thread and return an awaitable of its result.

    Unlike ``asyncio.to_thread``, shutting down never waits for the thread (a model
    still loading must not hold up SIGTERM). The current context (request id) goes with it.
    """
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    def target() -> None:
        try:
            outcome: tuple[Any, BaseException | None] = (context.run(fn, *args), None)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            outcome = (None, exc)
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future
