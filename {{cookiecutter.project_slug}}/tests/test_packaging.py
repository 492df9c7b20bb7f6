"""The atom as a package: dependency ranges agree with the pins, and its wheel holds the
compiled protector and every file the package needs, but not the protector's sources."""

import shutil
import subprocess
import sys
import tomllib
import zipfile
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


def test_every_dependency_is_pinned_inside_its_range() -> None:
    """requirements.txt pins each dependency of pyproject.toml, and nothing else, in its range."""
    ranges = [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]
    pinned = pins("requirements.txt")
    assert sorted(canonicalize_name(r.name) for r in ranges) == sorted(pinned)
    for requirement in ranges:
        version = pinned[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version), f"{requirement} excludes {version}"


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
