"""Validate the cookiecutter answers before anything is generated.

Each check returns an error message naming the prompt, or None. The answers come in
as JSON (``tojson``), so quotes, backslashes or newlines in them cannot break this file.
"""

import json
import keyword
import re
import sys

# Each pattern must match the whole answer (fullmatch: a "$" would let a final newline in).
# A directory name that works on every platform and in a Docker build context.
SLUG_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# Lowercase ASCII identifiers only: importable everywhere, PEP 8 module names.
PACKAGE_RE = re.compile(r"[a-z_][a-z0-9_]*")
# "" or /segment[/segment...]: no trailing slash, no empty segment, URL-safe characters.
PREFIX_RE = re.compile(r"(/[A-Za-z0-9._~-]+)+")
# A whole number in ASCII digits (int() also takes "8_000", " 8000" and other scripts' digits).
NUMBER_RE = re.compile(r"[0-9]{1,6}")

# Names an atom's package must not take: they would shadow what the atom imports.
SHADOWED = frozenset(sys.stdlib_module_names) | {
    "anyio",
    "apscheduler",
    "cv2",
    "cython",
    "fastapi",
    "httpx",
    "nginx",
    "numpy",
    "orjson",
    "pydantic",
    "pydantic_settings",
    "pytest",
    "requests",
    "skywalking",
    "starlette",
    "test",
    "tests",
    "urllib3",
    "uvicorn",
    "uvloop",
}


def check_project_name(value: str) -> str | None:
    """The project name must contain something printable."""
    if not value.strip():
        return "project_name: must not be empty"
    return None


def check_project_slug(value: str) -> str | None:
    """The slug is a directory name: letters, digits, '.', '_' and '-'."""
    if not SLUG_RE.fullmatch(value):
        return (
            f"project_slug: {value!r} is not a valid directory name "
            "(letters, digits, '.', '_', '-'; starting with a letter or digit)"
        )
    return None


def check_package_name(value: str) -> str | None:
    """The package must be importable and must not shadow a module the atom uses."""
    if not PACKAGE_RE.fullmatch(value):
        return (
            f"package_name: {value!r} is not a Python identifier "
            "(lowercase letters, digits and '_', not starting with a digit)"
        )
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        return f"package_name: {value!r} is a Python keyword"
    if value in SHADOWED:
        return f"package_name: {value!r} would shadow the package or module of that name"
    return None


def check_api_prefix(value: str) -> str | None:
    """The prefix is empty or /segment[/segment], without a trailing slash."""
    if value and not PREFIX_RE.fullmatch(value):
        return (
            f"api_prefix: {value!r} must be empty or look like /segment[/segment] "
            "(no trailing slash)"
        )
    return None


def _as_int(value: object) -> int | None:
    """Return the answer as an int, or None when it is not a whole number in ASCII digits."""
    text = str(value)
    return int(text) if NUMBER_RE.fullmatch(text) else None


def check_port(value: object) -> str | None:
    """The public port is a TCP port number."""
    port = _as_int(value)
    if port is None or not 1 <= port <= 65535:
        return f"port: {value!r} must be a whole number from 1 to 65535"
    return None


def check_workers(value: object) -> str | None:
    """At least one server process."""
    workers = _as_int(value)
    if workers is None or workers < 1:
        return f"workers: {value!r} must be a whole number of at least 1"
    return None


CHECKS = {
    "project_name": check_project_name,
    "project_slug": check_project_slug,
    "package_name": check_package_name,
    "api_prefix": check_api_prefix,
    "port": check_port,
    "workers": check_workers,
}


def validate(answers: dict) -> list[str]:
    """Return one message per invalid answer, in prompt order."""
    errors = []
    for key, check in CHECKS.items():
        message = check(answers.get(key, ""))
        if message:
            errors.append(message)
    return errors


def main() -> int:
    """Print each problem as one line on stderr and fail (every bad answer at once, not one
    per attempt), or succeed quietly."""
    answers = json.loads(r"""{{ cookiecutter | tojson }}""")
    errors = validate(answers)
    sys.stderr.write("".join(f"ERROR: {error}\n" for error in errors))
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
