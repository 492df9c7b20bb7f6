"""The template's versions: one source (cookiecutter.json), a development version between
releases, an Upgrading note per CHANGELOG section, make release (scripts/release.py)
setting, dating, committing and tagging a version, and the notes an upgrade crosses."""

import json
from pathlib import Path

import pytest

from scripts import release
from scripts.atomctl import TEMPLATE

from .throwaway import GIT_ENV, git

crossed = release.upgrade.crossed
version_key = release.upgrade.version_key

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


def template_repo(folder: Path, version: str, changelog: str = CHANGELOG) -> Path:
    """A template-like folder: cookiecutter.json (as make release finds it) and CHANGELOG."""
    text = json.dumps({"project_name": "x", "_template_version": version}, indent=2)
    (folder / "cookiecutter.json").write_text(text + "\n")
    (folder / "CHANGELOG.md").write_text(changelog)
    return folder


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A committed template-like repository at 1.2.0.dev0 with an Unreleased section."""
    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)
    template_repo(tmp_path, "1.2.0.dev0")
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "post_gen_project.py").write_text("")
    git(tmp_path, "init", "--quiet")
    git(tmp_path, "add", "--all")
    git(tmp_path, "commit", "--quiet", "-m", "work")
    return tmp_path


def test_this_repository_is_consistent() -> None:
    """The version is X.Y.Z or X.Y.Z.devN and every CHANGELOG section has its notes."""
    assert release.problems(TEMPLATE) == []
    assert release.main(["--check"]) == 0


def test_release_sets_dates_commits_and_tags(repo: Path) -> None:
    """1.2.0.dev0 becomes 1.2.0 and the Unreleased section [1.2.0] with the date, in one
    commit tagged v1.2.0."""
    assert release.release(repo, "2030-02-03") == "v1.2.0"
    text = (repo / "CHANGELOG.md").read_text()
    assert text == CHANGELOG.replace("## [Unreleased]", "## [1.2.0] - 2030-02-03")
    assert release.read_version(repo) == "1.2.0"
    assert git(repo, "log", "-1", "--format=%s") == "Release 1.2.0"
    assert git(repo, "show", "--name-only", "--format=", "HEAD").split() == [
        "CHANGELOG.md",
        "cookiecutter.json",
    ]
    assert git(repo, "cat-file", "-t", "v1.2.0") == "tag"  # annotated
    assert git(repo, "rev-parse", "v1.2.0^0") == git(repo, "rev-parse", "HEAD")
    assert git(repo, "status", "--porcelain") == ""
    assert release.problems(repo) == []  # the dated top section is the version


def test_a_change_after_a_release_needs_a_new_version(repo: Path) -> None:
    """After the release, a commit that changes what reaches atoms while cookiecutter.json
    still says 1.2.0 is found (atoms from it would claim a release they are not); a change
    of the template's own files is not."""
    release.release(repo, "2030-02-03")
    (repo / "NOTES.md").write_text("the template's own notes\n")
    assert release.problems(repo) == []
    (repo / "hooks" / "post_gen_project.py").write_text("# changed\n")
    git(repo, "commit", "--quiet", "-am", "a fix")
    (found,) = release.problems(repo)
    assert found.startswith("1.2.0 was released in ") and "raise _template_version" in found


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
        ("1.2", CHANGELOG, "_template_version '1.2' is not X.Y.Z or X.Y.Z.devN"),
        (
            "1.2.0.dev0",
            CHANGELOG.replace("- Nothing to do.\n", ""),
            "[Unreleased] has no '### Upgrading'",
        ),
        ("1.2.0", CHANGELOG, "1.2.0 is a release's version, and CHANGELOG.md's top section"),
        ("1.1.0.dev0", CHANGELOG, "1.1.0 is released: raise _template_version"),
        ("1.3.0", CHANGELOG.replace("[Unreleased]", "[1.2.0] - 2030-01-09"), "top section"),
        ("1.2.0.dev0", CHANGELOG.replace("[Unreleased]", "[1.2.0] - 2030-01-09"), "top section"),
    ],
    ids=["not-pep440", "no-upgrading", "release-unreleased", "released", "mismatch", "dev-dated"],
)
def test_check_finds(tmp_path: Path, version: str, changelog: str, problem: str) -> None:
    """--check names a bad version, a section without Upgrading notes, a release's version
    over Unreleased work, a development version of a release made already, a dated top
    section that is not the version."""
    found = release.problems(template_repo(tmp_path, version, changelog))
    assert len(found) == 1 and problem in found[0], found


def test_development_versions_come_before_their_release() -> None:
    """PEP 440's order: 1.1.0 < 1.2.0.dev0 < 1.2.0.dev1 < 1.2.0 < 1.10.0.dev0."""
    order = ["1.1.0", "1.2.0.dev0", "1.2.0.dev1", "1.2.0", "1.10.0.dev0"]
    assert sorted(order, key=version_key) == order  # type: ignore[arg-type]
    assert version_key("1.2") is None and version_key("1.2.0+abc") is None


NOTES = """## [Unreleased]

### Upgrading

- Run make upgrade.

## [1.2.0] - 2030-02-01

### Upgrading

- Notes of 1.2.0.

## [1.1.0] - 2030-01-01

### Upgrading

- Notes of 1.1.0.
"""


@pytest.mark.parametrize(
    ("old", "new", "names"),
    [
        ("1.3.0.dev0", "1.3.0.dev0", []),  # two commits of one unreleased version
        ("1.2.0", "1.3.0.dev0", ["1.3.0.dev0"]),
        ("1.1.0", "1.3.0.dev0", ["1.3.0.dev0", "1.2.0"]),
        ("1.2.0.dev0", "1.3.0.dev0", ["1.3.0.dev0", "1.2.0"]),
        ("1.1.0", "1.2.0", ["1.2.0"]),  # the target's CHANGELOG read to its release
        ("1.2.0", "1.2.0", []),
        ("1.3.0.dev0", "1.2.0", []),  # going back crosses nothing
    ],
)
def test_an_upgrade_prints_the_versions_it_crosses(old: str, new: str, names: list[str]) -> None:
    """The Upgrading notes of exactly the versions after ``old`` up to ``new`` (Unreleased
    standing for ``new``), and none when none were crossed."""
    changelog = NOTES if ".dev" in new else NOTES[NOTES.index("## [1.2.0]") :]
    assert [name for name, _ in crossed(changelog, old, new)] == names
    for name, text in crossed(changelog, old, new):
        assert text == ("- Run make upgrade." if ".dev" in name else f"- Notes of {name}.")
