"""Fixtures of the template tests: baked projects and subprocess helpers."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.atomctl import TEMPLATE, bake

PYTHON312 = TEMPLATE / ".venv-py312" / "bin" / "python"
# The answers of a default bake, as the hooks see them.
DEFAULT_ANSWERS = {
    "project_name": "My Atom",
    "project_slug": "my-atom",
    "package_name": "my_atom",
    "api_prefix": "/d2atom",
    "port": "8000",
    "workers": "1",
    "ci": "gitlab",
}
# The lanes (markers of pyproject.toml); each is also slow, so `make check` leaves it out.
LANES = (
    "nginx",
    "container",
    "soak",
    "fuzz",
    "docs_render",
    "demo",
    "fresh_machine",
    "migration",
    "upgrade",
    "prompts",
    "upstream",
)
# Unrendered template syntax that must never reach a generated file (an atom may name the
# template's cookiecutter.json).
LEFTOVER_RE = re.compile(r"\{\{\s*cookiecutter|\{%|\{#|cookiecutter\.(?!json\b)\w")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".cfg", ".ini", ".yml", ".yaml", ".example", ""}


def run(
    args: list[str], cwd: Path, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command with a time bound; return its result (never raises on failure).

    Its temporary files go where this session's go (a cookiecutter run leaves its hook
    scripts there: see hook_scripts_in_pytest_tmp).
    """
    env = {**(os.environ if env is None else env), "TMPDIR": tempfile.gettempdir()}
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def python_for(context: dict[str, str]) -> str:
    """The interpreter that runs an atom baked with this context."""
    if context.get("python_version") == "3.12":
        assert PYTHON312.exists(), (
            f"{PYTHON312} is missing: run scripts/setup.sh on a machine with python3.12"
        )
        return str(PYTHON312)
    return sys.executable


def leftovers(project: Path) -> list[str]:
    """Files (with line numbers) that still hold template syntax."""
    found = []
    for path in sorted(project.rglob("*")):
        if not path.is_file() or path.suffix not in TEXT_SUFFIXES:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if LEFTOVER_RE.search(line):
                found.append(f"{path.relative_to(project)}:{number}: {line.strip()}")
    return found


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test of a lane is slow too: `pytest -m "not slow"` (make check) leaves it out."""
    for item in items:
        if any(item.get_closest_marker(lane) for lane in LANES):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def hook_scripts_in_pytest_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """cookiecutter leaves each hook it runs as a ``.py`` file in the temporary folder
    (scripts/atomctl.hook_scripts_contained): for pytest-cookies' bakes, that folder is
    one of pytest's, which keeps only its last runs. pytest's own folder is made first."""
    folder = tmp_path_factory.mktemp("hook-scripts")
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = previous


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """An ATOM_RUNTIME_DIR that nginx's workers can reach when the launcher runs as root:
    they run as nobody then, and pytest's own folders (tempfile's here) are private."""
    folder = Path(tempfile.mkdtemp(prefix="atom-run-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def default_atom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The atom baked with the default answers (shared by the boot and render lanes)."""
    return bake(tmp_path_factory.mktemp("default"))
