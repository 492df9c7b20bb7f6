"""The atom as a package: the wheel requires exactly the pinned versions, every distribution
the code imports is declared, and its wheel holds the compiled protector and every file the
package needs, but not the protector's sources."""

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parent.parent
PACKAGE = {{ cookiecutter.package_name | tojson }}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SOURCES_ONLY = {".pyx", ".c", ".so"}  # the protector's sources, and this checkout's build


def pins(file_name: str) -> dict[str, str]:
    """The ``name==version`` lines of a requirements file, by canonical name."""
    found = {}
    for raw in (ROOT / file_name).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{file_name}: {line} is not pinned"
        found[canonicalize_name(requirement.name)] = specifier.version
    return found


def test_the_wheel_requires_exactly_the_pinned_versions() -> None:
    """pyproject.toml's dependencies are requirements.txt's pins, the same extras and versions,
    and nothing else: a wheel install gets the versions the tests ran, never a newer one."""
    ranges = [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]
    pinned = pins("requirements.txt")
    assert sorted(canonicalize_name(r.name) for r in ranges) == sorted(pinned)
    for requirement in ranges:
        (specifier,) = requirement.specifier
        version = pinned[canonicalize_name(requirement.name)]
        assert (specifier.operator, specifier.version) == ("==", version), str(requirement)
    extras = {canonicalize_name(r.name): r.extras for r in ranges if r.extras}
    assert extras == pin_extras("requirements.txt")


def pin_extras(file_name: str) -> dict[str, set[str]]:
    """The extras of the pins of a requirements file that have some."""
    found = {}
    for raw in (ROOT / file_name).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-") and "[" in line:
            requirement = Requirement(line)
            found[canonicalize_name(requirement.name)] = requirement.extras
    return found


def imported_top_modules() -> set[str]:
    """The top-level modules the package, server.py and nginx_run.py import (the protector's
    .pyx included), standard library and the package itself left out."""
    sources = [*(ROOT / PACKAGE).rglob("*.py"), ROOT / "server.py", ROOT / "nginx_run.py"]
    names: set[str] = set()
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    for pyx in (ROOT / PACKAGE).rglob("*.pyx"):
        names.update(re.findall(r"^(?:from|import) ([A-Za-z_]\w*)", pyx.read_text(), re.M))
    return {name for name in names if name not in sys.stdlib_module_names} - {PACKAGE, "cython"}


def test_every_imported_distribution_is_declared() -> None:
    """Each distribution the code imports is a declared dependency (pinned, in the wheel):
    none comes in only because another package happens to depend on it."""
    distributions = packages_distributions()
    dependencies = PYPROJECT["project"]["dependencies"]
    declared = {canonicalize_name(Requirement(text).name) for text in dependencies}
    missing = {}
    for module in sorted(imported_top_modules()):
        providers = {canonicalize_name(d) for d in distributions.get(module, [])}
        assert providers, f"{module} is imported but no installed distribution provides it"
        if not providers & declared:
            missing[module] = sorted(providers)
    assert missing == {}
    assert {"urllib3", "anyio", "fastapi", "cv2"} <= imported_top_modules()


def test_build_tools_are_pinned_alike() -> None:
    """The build tools of [build-system] are those requirements-dev.txt pins (in-place builds)."""
    build = [Requirement(text) for text in PYPROJECT["build-system"]["requires"]]
    dev = pins("requirements-dev.txt")
    for requirement in build:
        (specifier,) = requirement.specifier
        assert dev[canonicalize_name(requirement.name)] == specifier.version, requirement


def package_files(folder: Path) -> set[str]:
    """The files of the package that a wheel must carry, relative to ``folder``."""
    return {
        path.relative_to(folder).as_posix()
        for path in (folder / PACKAGE).rglob("*")
        if path.is_file() and path.suffix not in SOURCES_ONLY and "__pycache__" not in path.parts
    }


@pytest.mark.slow
def test_wheel_holds_the_compiled_package(tmp_path: Path) -> None:
    """`pip wheel .` gives the package, its data and the compiled protector, no .pyx or .c."""
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.c")
    shutil.copytree(ROOT / PACKAGE, source / PACKAGE, ignore=ignore)
    for name in ("pyproject.toml", "setup.py"):
        shutil.copy(ROOT / name, source)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    built = subprocess.run(
        [*command, "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "installed")
        members = {name for name in archive.namelist() if ".dist-info/" not in name}
    compiled = {name for name in members if name.endswith(".so")}
    assert [Path(name).parent.as_posix() for name in compiled] == [f"{PACKAGE}/protection"]
    assert members - compiled == package_files(source)
    check = f"import {PACKAGE}.protection.model_protector as m; print(m.__file__)"
    imported = subprocess.run(
        [sys.executable, "-c", check],
        cwd=tmp_path / "installed",  # not the checkout: the wheel's files only
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip().endswith(".so")
    assert imported.stdout.startswith(str(tmp_path / "installed"))
