"""Run one server: ``python server.py --port P`` (default ATOM_PORT).

For several server processes behind nginx use ``nginx_run.py``.
"""

import argparse
import signal
import sys
from types import FrameType

import uvicorn

from {{ cookiecutter.package_name }}.api.app import get_app
from {{ cookiecutter.package_name }}.config import SettingsError, get_settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; unset ones fall back to the settings."""
    parser = argparse.ArgumentParser(description="Run one uvicorn server of the atom.")
    parser.add_argument("--port", type=int, help="port to listen on (default: ATOM_PORT)")
    parser.add_argument("--host", help="address to bind (default: ATOM_HOST, 0.0.0.0)")
    return parser.parse_args(argv)


def exit_cleanly(signum: int, frame: FrameType | None) -> None:
    """End with status 0 on SIGTERM/SIGINT (uvicorn re-raises them after its graceful stop)."""
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    """Read the settings, build the app and serve until SIGINT/SIGTERM."""
    args = parse_args(argv)
    try:
        settings = get_settings()
    except SettingsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, exit_cleanly)
    uvicorn.run(
        get_app(settings),
        host=args.host or settings.atom_host,
        port=args.port or settings.atom_port,
        log_config=None,  # the atom's logging is already configured by get_app
        access_log=False,  # routes log their calls, with the request id
        server_header=False,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
