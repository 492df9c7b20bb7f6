"""``python -m <package>.deploy.healthcheck``: exit 0 when the atom's ready route answers 200.

The image's HEALTHCHECK runs it; it reads ATOM_PORT and ATOM_API_PREFIX like the atom does.
"""

from ..config import get_settings
from ..control.health import READY_PATH, answers_ok


def main() -> int:
    """0 when ready, 1 otherwise."""
    settings = get_settings()
    url = f"http://127.0.0.1:{settings.atom_port}{settings.atom_api_prefix}{READY_PATH}"
    return 0 if answers_ok(url, timeout=4) else 1


if __name__ == "__main__":
    raise SystemExit(main())
