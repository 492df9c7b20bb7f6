"""The template's versions: one source (cookiecutter.json), an Upgrading note per CHANGELOG
section, and make release (scripts/release.py) dating, committing and tagging a version."""

import json
from pathlib import Path

import pytest

from scripts import release
from scripts.atomctl import TEMPLATE

from .throwaway import GIT_ENV, git

CHANGELOG = """# Changelog

## [Unreleased]

### Added

- Something new.

### Upgrading

- Nothing to do.

## [1.1.0] - 2030-01-01

### Upgrading

- The first version.
"""


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed template-like repository at version 1.2.0 with an Unreleased section."""
    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "cookiecutter.json").write_text(json.dumps({"_template_version": "1.2.0"}))
    (tmp_path / "CHANGELOG.md").write_text(CHANGELOG)
    git(tmp_path, "init", "--quiet")
    git(tmp_path, "add", "--all")
    git(tmp_path, "commit", "--quiet", "-m", "work")
    return tmp_path


def test_this_repository_is_consistent() -> None:
    """The version is X.Y.Z and every CHANGELOG section has its Upgrading notes."""
    assert release.problems(TEMPLATE) == []
    assert release.main(["--check"]) == 0


def test_release_dates_commits_and_tags(repo: Path) -> None:
    """The Unreleased section becomes [1.2.0] with the date, in a commit tagged v1.2.0."""
    assert release.release(repo, "2030-02-03") == "v1.2.0"
    text = (repo / "CHANGELOG.md").read_text()
    assert text == CHANGELOG.replace("## [Unreleased]", "## [1.2.0] - 2030-02-03")
    assert git(repo, "log", "-1", "--format=%s") == "Release 1.2.0"
    assert git(repo, "cat-file", "-t", "v1.2.0") == "tag"  # annotated
    assert git(repo, "rev-parse", "v1.2.0^0") == git(repo, "rev-parse", "HEAD")
    assert git(repo, "status", "--porcelain") == ""
    assert release.problems(repo) == []  # the dated top section is the version


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: (r / "CHANGELOG.md").write_text(CHANGELOG + "dirty\n"), "uncommitted changes"),
        (lambda r: git(r, "tag", "v1.2.0"), "v1.2.0 exists already"),
    ],
    ids=["dirty", "tagged"],
)
def test_release_refuses(repo: Path, change: object, message: str) -> None:
    """A dirty tree or an existing tag stops the release with the reason; nothing changes."""
    change(repo)  # type: ignore[operator]
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(SystemExit, match=message):
        release.release(repo, "2030-02-03")
    assert git(repo, "rev-parse", "HEAD") == head


@pytest.mark.parametrize(
    ("version", "changelog", "problem"),
    [
        ("1.2", CHANGELOG, "_template_version '1.2' is not X.Y.Z"),
        (
            "1.2.0",
            CHANGELOG.replace("- Nothing to do.\n", ""),
            "[Unreleased] has no '### Upgrading'",
        ),
        ("1.1.0", CHANGELOG, "1.1.0 is released: raise _template_version"),
        ("1.3.0", CHANGELOG.replace("[Unreleased]", "[1.2.0] - 2030-01-09"), "top section"),
    ],
    ids=["not-semver", "no-upgrading", "released", "mismatch"],
)
def test_check_finds(tmp_path: Path, version: str, changelog: str, problem: str) -> None:
    """--check names a bad version, a section without Upgrading notes, Unreleased work under
    a released version, a dated top section that is not the version."""
    (tmp_path / "cookiecutter.json").write_text(json.dumps({"_template_version": version}))
    (tmp_path / "CHANGELOG.md").write_text(changelog)
    found = release.problems(tmp_path)
    assert len(found) == 1 and problem in found[0], found
