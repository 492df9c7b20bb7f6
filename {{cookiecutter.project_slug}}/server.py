"""Run one server: ``python server.py --port P`` (default ATOM_PORT).

For several server processes behind nginx use ``nginx_run.py``.
"""

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.config import Settings, SettingsError, get_settings
from {{ cookiecutter.package_name }}.deploy.header_timeout import http_protocol


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; unset ones fall back to the settings."""
    parser = argparse.ArgumentParser(description="Run one uvicorn server of the atom.")
    parser.add_argument("--port", type=int, help="port to listen on (default: ATOM_PORT)")
    parser.add_argument("--host", help="address to bind (default: ATOM_HOST, 0.0.0.0)")
    return parser.parse_args(argv)


def exit_handler(app: FastAPI) -> Callable[[int, FrameType | None], None]:
    """The SIGTERM/SIGINT handler: end with status 0 (uvicorn re-raises them after its stop).

    A model still loading is abandoned: its thread may be inside a C++ library, where
    the interpreter's normal exit would abort the process, so the exit is immediate.
    """

    def exit_cleanly(signum: int, frame: FrameType | None) -> None:
        store = getattr(app.state, "models", None)
        if store is not None and store.loading:
            logging.shutdown()
            os._exit(0)
        raise SystemExit(0)

    return exit_cleanly


def main(
    argv: list[str] | None = None, app_factory: Callable[[Settings], FastAPI] = get_app
) -> int:
    """Read the settings, build the app and serve until SIGINT/SIGTERM.

    ``app_factory`` lets another entry script reuse this one with its own app.
    """
    args = parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    # The app knows where it listens (Serving registration polls its own ready route).
    settings = settings.model_copy(
        update={
            "atom_port": args.port or settings.atom_port,
            "atom_host": args.host or settings.atom_host,
        }
    )
    app = app_factory(settings)
    app.state.owns_process = True  # the one app of this process (lifespan: gc.freeze)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, exit_handler(app))
    uvicorn.run(
        app,
        host=settings.atom_host,
        port=settings.atom_port,
        log_config=None,  # the atom's logging is already configured by get_app
        access_log=False,  # routes log their calls, with the request id
        server_header=False,
        # A client gets ATOM_HEADER_TIMEOUT to send a request's headers (slowloris).
        http=http_protocol(settings.atom_header_timeout),
        # Requests still running this long after SIGTERM are cancelled.
        timeout_graceful_shutdown=max(1, int(settings.atom_grace_period)),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
