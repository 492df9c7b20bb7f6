"""The upstream lane: a default atom's own suite and mypy on the newest FastAPI, Starlette,
pydantic, uvicorn, prometheus_client and urllib3 of the registry.

The atom pins what its tests ran (requirements.txt, and the same versions in pyproject.toml)
and reads two private names of FastAPI and Starlette behind guards (api/guards.py). This
lane installs the atom's requirements without the pins of those six, then upgrades them to
the newest releases (``pip install --upgrade``), into a virtual environment under
build/upstream/ kept between runs: the day a release breaks a guard, or anything else, a
test says so here before anyone raises a pin.
"""

import json
import re
import sys
import time
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts.atomctl import TEMPLATE, cached_bake

from .conftest import run
from .test_bake import suite_failure

pytestmark = pytest.mark.upstream

UPSTREAM = ("fastapi", "starlette", "pydantic", "uvicorn", "prometheus-client", "urllib3")
FOLDER = TEMPLATE / "build" / "upstream"
VENV = FOLDER / "venv"
PYTHON = VENV / "bin" / "python"


def requirements_without(project: Path, names: tuple[str, ...]) -> list[str]:
    """The atom's requirements-dev.txt, requirements.txt inlined, without the pins of
    ``names`` (pip options such as ``--no-binary`` kept)."""
    unwanted = {canonicalize_name(name) for name in names}
    lines: list[str] = []
    for raw in (project / "requirements-dev.txt").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            lines += requirements_file_lines(project / line.split(None, 1)[1], unwanted)
        elif line:
            lines += requirements_lines([line], unwanted)
    return lines


def requirements_file_lines(path: Path, unwanted: set[str]) -> list[str]:
    """The lines of one requirements file that do not pin a package of ``unwanted``."""
    raw = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return requirements_lines([line for line in raw if line], unwanted)


def requirements_lines(lines: list[str], unwanted: set[str]) -> list[str]:
    """``lines`` without the requirements of ``unwanted`` packages."""
    kept = []
    for line in lines:
        if not line.startswith("-") and canonicalize_name(Requirement(line).name) in unwanted:
            continue
        kept.append(line)
    return kept


def pip(*args: str, timeout: float = 1200) -> str:
    """Run the lane's pip; its output (the test fails with it when pip does)."""
    command = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", *args]
    result = run(command, TEMPLATE, timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def installed(names: tuple[str, ...]) -> dict[str, str]:
    """The versions of ``names`` in the lane's environment."""
    listed = json.loads(pip("list", "--format=json"))
    found = {canonicalize_name(item["name"]): item["version"] for item in listed}
    return {name: found.get(canonicalize_name(name), "-") for name in names}


def pin_of(requirements: str, name: str) -> str:
    """The version a requirements text pins ``name`` to, or "-"."""
    found = re.search(rf"^{re.escape(name)}(\[\w+\])?==(\S+)", requirements, re.M | re.I)
    return found.group(2) if found else "-"


@pytest.fixture(scope="module")
def upstream_atom(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A default atom, and the lane's environment with the six upgraded (their versions)."""
    project = cached_bake(tmp_path_factory.mktemp("upstream"))
    FOLDER.mkdir(parents=True, exist_ok=True)
    if not PYTHON.exists():
        created = run([sys.executable, "-m", "venv", str(VENV)], TEMPLATE, 300)
        assert created.returncode == 0, created.stderr
    requirements = FOLDER / "requirements.txt"
    requirements.write_text("\n".join(requirements_without(project, UPSTREAM)) + "\n")
    started = time.monotonic()
    pip("install", "-r", str(requirements))
    pip("install", "--upgrade", *[f"{n}[standard]" if n == "uvicorn" else n for n in UPSTREAM])
    versions = installed(UPSTREAM)
    pins = (project / "requirements.txt").read_text(encoding="utf-8")
    shown = ", ".join(f"{name} {versions[name]} (pinned {pin_of(pins, name)})" for name in UPSTREAM)
    line = f"upstream lane: {shown}; set up in {time.monotonic() - started:.0f} s\n"
    (FOLDER / "versions.txt").write_text(line)  # what the last run tested
    sys.stdout.write("\n" + line)
    return project, versions


def test_the_newest_releases_are_installed(upstream_atom: tuple[Path, dict[str, str]]) -> None:
    """None of the six has a newer release in the registry than the one installed (another
    pin holding one back would show here)."""
    outdated = json.loads(pip("list", "--outdated", "--format=json"))
    behind = {
        item["name"]: f"{item['version']} < {item['latest_version']}"
        for item in outdated
        if canonicalize_name(item["name"]) in {canonicalize_name(name) for name in UPSTREAM}
    }
    assert behind == {}


def test_the_atom_suite_passes_on_the_newest_releases(
    upstream_atom: tuple[Path, dict[str, str]],
) -> None:
    """The atom's whole suite (its slow tests included) passes in the lane's environment."""
    project, _ = upstream_atom
    result = run([str(PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider"], project, 2400)
    assert result.returncode == 0, suite_failure(result)


def test_mypy_passes_on_the_newest_releases(upstream_atom: tuple[Path, dict[str, str]]) -> None:
    """The package type-checks against the newest releases' own type hints."""
    project, _ = upstream_atom
    result = run([str(PYTHON), "-m", "mypy"], project, 900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
