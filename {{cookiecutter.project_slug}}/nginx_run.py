"""Run the atom for production: nginx on ATOM_PORT in front of ATOM_WORKERS servers.

    python nginx_run.py [--server server.py]

Stops gracefully on SIGTERM or Ctrl-C (in-flight requests finish within ATOM_GRACE_PERIOD).
"""

import argparse
from pathlib import Path

from {{ cookiecutter.package_name }}.deploy import nginx_run


def main() -> int:
    """Parse the options and run the launcher."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--server",
        default=str(Path(__file__).with_name("server.py")),
        help="script each worker runs with --port P (default: server.py next to this file)",
    )
    return nginx_run(parser.parse_args().server)


if __name__ == "__main__":
    raise SystemExit(main())
