"""Hostile answers (quotes, backslashes, newlines, non-ASCII) still give a valid project."""

import json
import sys
import tomllib
from pathlib import Path

import pytest

from scripts.atomctl import cached_bake

from .conftest import leftovers, run

pytestmark = pytest.mark.answers

HOSTILE = {
    "quotes-and-markup": {"project_name": 'He said "hi" & it\'s <b>bold</b>'},
    "backslashes": {"project_name": "C:\\atoms\\new\\", "project_description": "a \\N{x} \\u1234"},
    "triple-quotes-newline": {"project_description": "one \"\"\"two\"\"\" '''three'''\nfour"},
    "chinese": {"project_name": "人脸检测", "project_description": "检测照片中的人脸。"},
}


@pytest.fixture(scope="module", params=list(HOSTILE))
def hostile(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """A project baked from hostile answers."""
    context = HOSTILE[request.param]
    return cached_bake(tmp_path_factory.mktemp(request.param), **context), context


def test_bakes_clean(hostile: tuple) -> None:
    """The project bakes, holds no template syntax, and passes ruff."""
    project, _ = hostile
    assert leftovers(project) == []
    result = run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=project)
    assert result.returncode == 0, result.stdout


def test_answers_survive_intact(hostile: tuple) -> None:
    """The settings and pyproject.toml hold the answers exactly as typed."""
    project, context = hostile
    package = project.name.replace("-", "_")
    code = (
        f"import json; from {package}.config import Settings; s = Settings(_env_file=None); "
        "print(json.dumps([s.atom_title, s.atom_desc]))"
    )
    result = run([sys.executable, "-c", code], cwd=project, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    title, description = json.loads(result.stdout)
    assert title == context.get("project_name", "My Atom")
    assert description == context.get(
        "project_description", "An AI-inference atom served over HTTP."
    )
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["description"] == description


def test_settings_suite_passes(hostile: tuple) -> None:
    """The project's own settings tests (which compare with the answers) pass."""
    project, _ = hostile
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_settings.py"],
        cwd=project,
    )
    assert result.returncode == 0, result.stdout[-4000:]


def test_chinese_name_gets_an_ascii_slug(tmp_path: Path) -> None:
    """A Chinese project name is transliterated into an ASCII slug and package."""
    project = cached_bake(tmp_path, **HOSTILE["chinese"])  # the bake of the lane's case
    assert project.name == "ren-lian-jian-ce"
    assert (project / "ren_lian_jian_ce" / "__init__.py").is_file()
