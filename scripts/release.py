"""Release the template: ``make release`` (DEVELOPERS.md, "Releasing").

The version is ``_template_version`` of cookiecutter.json, its one source: every atom
records it (.cruft.json) and shows it (ready reply, OpenAPI, the atom_template_info
metric). Between releases it is the coming release's development version, ``X.Y.Z.dev0``,
under the CHANGELOG's "## [Unreleased]" section, so an atom generated from any commit but a
release's own says it is not a release (no tag needed: tags may not reach every clone).

Releasing checks that the work tree is clean, the version is ``X.Y.Z.devN`` with ``vX.Y.Z``
not tagged, and the CHANGELOG's top section is "## [Unreleased]" with an "### Upgrading"
subsection; then it sets the version to ``X.Y.Z``, names the section after it and today's
date, commits both ("Release X.Y.Z") and makes the annotated tag vX.Y.Z. Pushing stays
yours: ``git push origin HEAD vX.Y.Z``.

``--check`` only checks what a commit must keep true (make check runs it): every section of
the CHANGELOG has its Upgrading notes; an Unreleased top section goes with a development
version of a release not made yet, a dated top section with that release's version; and
a release's version stays only as long as nothing that reaches atoms changes after it.
"""

import argparse
import datetime
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
# The CHANGELOG's reader and the version order live in the atom's upgrade script, which
# prints the notes of the versions an upgrade crosses: one home for both.
UPGRADE = ROOT / "{{cookiecutter.project_slug}}" / "upgrade" / "upgrade.py"
# The template's paths that reach atoms.
ATOM_SOURCES = ("cookiecutter.json", "hooks", "{{cookiecutter.project_slug}}")
VERSION_LINE = '"_template_version": "{}"'


def load_upgrade() -> ModuleType:
    """The atom's upgrade script, imported (it has no template markup)."""
    spec = importlib.util.spec_from_file_location("atom_upgrade", UPGRADE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


upgrade = load_upgrade()


def read_version(root: Path) -> str:
    """The template version cookiecutter.json declares."""
    declared = json.loads((root / "cookiecutter.json").read_text(encoding="utf-8"))
    return str(declared.get("_template_version", ""))


def release_of(version: str) -> str:
    """The release a version is or leads to: "0.2.0" for "0.2.0" and "0.2.0.dev0"."""
    return version.split(".dev", 1)[0]


def git(root: Path, *args: str, check: bool = False) -> str:
    """git in the template repository; its output ("" when it fails, or with ``check`` a
    failure stops the release)."""
    result = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, timeout=60, check=False
    )
    if check and result.returncode != 0:
        raise SystemExit(f"release: git {args[0]}: {result.stderr.strip()}")
    return result.stdout.strip() if result.returncode == 0 else ""


def changed_since_release(root: Path, version: str) -> str | None:
    """The commit that set a release's version, when files that reach atoms changed after
    it (None when they did not, or no such commit is in git's history)."""
    if not git(root, "rev-parse", "--is-inside-work-tree"):
        return None
    line = VERSION_LINE.format(version)
    commit = git(root, "log", "-1", "--format=%H", "-S", line, "--", "cookiecutter.json")
    present = [name for name in ATOM_SOURCES if (root / name).exists()]
    if not commit or not present:
        return None
    same = subprocess.run(
        ["git", "diff", "--quiet", commit, "--", *present], cwd=root, timeout=60, check=False
    )
    return commit if same.returncode != 0 else None


def problems(root: Path) -> list[str]:
    """What is wrong with the version and the CHANGELOG (empty: nothing)."""
    version = read_version(root)
    if upgrade.version_key(version) is None:
        return [f"cookiecutter.json: _template_version {version!r} is not X.Y.Z or X.Y.Z.devN"]
    found = upgrade.sections((root / "CHANGELOG.md").read_text(encoding="utf-8"))
    if not found:
        return ["CHANGELOG.md has no '## [...]' section"]
    wrong = [
        f"CHANGELOG.md: [{name}] has no '### Upgrading' notes (write 'Nothing to do.' if so)"
        for name, _, body in found
        if not upgrade.upgrading_notes(body)
    ]
    top = found[0][0]
    dated = {name for name, date, _ in found if date}
    if top == upgrade.UNRELEASED:
        if version == release_of(version):
            wrong.append(
                f"{version} is a release's version, and CHANGELOG.md's top section is "
                "Unreleased: between releases the version is the next one's X.Y.Z.dev0"
            )
        elif release_of(version) in dated:
            wrong.append(f"{release_of(version)} is released: raise _template_version")
    elif top != version:
        wrong.append(f"CHANGELOG.md's top section is [{top}], cookiecutter.json says {version}")
    elif commit := changed_since_release(root, version):
        wrong.append(
            f"{version} was released in {commit[:12]}, and files that reach atoms changed "
            "since: raise _template_version (X.Y.Z.dev0) and open an '## [Unreleased]' section"
        )
    return wrong


def release(root: Path, today: str) -> str:
    """Set the release's version, date the Unreleased section, commit, tag; return the tag."""
    wrong = problems(root)
    version = read_version(root)
    final = release_of(version)
    changelog = root / "CHANGELOG.md"
    text = changelog.read_text(encoding="utf-8")
    if upgrade.sections(text)[0][0] != upgrade.UNRELEASED or version == final:
        wrong.append("CHANGELOG.md's top section is not '## [Unreleased]': nothing to release")
    tag = f"v{final}"
    if git(root, "tag", "--list", tag, check=True):
        wrong.append(f"{tag} exists already: raise _template_version in cookiecutter.json")
    if git(root, "status", "--porcelain", check=True):
        wrong.append("the work tree has uncommitted changes: commit them first")
    cookiecutter_json = root / "cookiecutter.json"
    declared = cookiecutter_json.read_text(encoding="utf-8")
    if declared.count(VERSION_LINE.format(version)) != 1:
        wrong.append(f"cookiecutter.json has no line {VERSION_LINE.format(version)}")
    if wrong:
        raise SystemExit("release: " + "\nrelease: ".join(dict.fromkeys(wrong)))
    released = declared.replace(VERSION_LINE.format(version), VERSION_LINE.format(final))
    cookiecutter_json.write_text(released, encoding="utf-8")
    changelog.write_text(text.replace("## [Unreleased]", f"## [{final}] - {today}", 1), "utf-8")
    files = ("CHANGELOG.md", "cookiecutter.json")
    git(root, "commit", "--quiet", "-m", f"Release {final}", "--", *files, check=True)
    git(root, "tag", "--annotate", tag, "-m", f"atom-template {final}", check=True)
    return tag


def main(argv: list[str] | None = None) -> int:
    """make release (or --check)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="only check; change nothing")
    parser.add_argument("--root", type=Path, default=ROOT, help="the template repository")
    args = parser.parse_args(argv)
    if args.check:
        wrong = problems(args.root)
        for line in wrong:
            sys.stderr.write(f"release --check: {line}\n")
        return 1 if wrong else 0
    tag = release(args.root, datetime.date.today().isoformat())
    sys.stdout.write(f"tagged {tag}; publish it with: git push origin HEAD {tag}\n")
    sys.stdout.write(
        "Then, with the first change after it, set _template_version in cookiecutter.json to "
        "the next version's X.Y.Z.dev0 and open a '## [Unreleased]' section in CHANGELOG.md.\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
