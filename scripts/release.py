"""Release the template: ``make release`` (DEVELOPERS.md, "Releasing").

The version is ``_template_version`` of cookiecutter.json, its one source: every atom
records it (.cruft.json) and shows it (ready reply, OpenAPI, the atom_template_info
metric). Releasing checks that the work tree is clean, the version is X.Y.Z and untagged,
and the CHANGELOG's top section is "## [Unreleased]" with an "### Upgrading" subsection;
then it names that section after the version and today's date, commits the change
("Release X.Y.Z") and makes the annotated tag vX.Y.Z. Pushing stays yours:
``git push origin HEAD vX.Y.Z``.

``--check`` only checks what a commit must keep true (make check runs it): the version is
X.Y.Z; every section of the CHANGELOG has its Upgrading notes; an Unreleased section
comes with a version not released yet, a dated top section with the version itself.
"""

import argparse
import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")
HEADING_RE = re.compile(r"^## \[([^\]]+)\](?: - (\S+))?[ \t]*$", re.M)
UNRELEASED = "Unreleased"


def read_version(root: Path) -> str:
    """The template version cookiecutter.json declares."""
    declared = json.loads((root / "cookiecutter.json").read_text(encoding="utf-8"))
    return str(declared.get("_template_version", ""))


def sections(changelog: str) -> list[tuple[str, str | None, str]]:
    """The CHANGELOG's ``## [name] - date`` sections: name, date (or None) and body."""
    found = []
    headings = list(HEADING_RE.finditer(changelog))
    for index, heading in enumerate(headings):
        end = headings[index + 1].start() if index + 1 < len(headings) else len(changelog)
        found.append((heading.group(1), heading.group(2), changelog[heading.end() : end]))
    return found


def upgrading_notes(body: str) -> str:
    """The text of a section's "### Upgrading" subsection ("" when it has none)."""
    match = re.search(r"^### Upgrading\n(.*?)(?=^##|\Z)", body, flags=re.M | re.S)
    return match.group(1).strip() if match else ""


def problems(root: Path) -> list[str]:
    """What is wrong with the version and the CHANGELOG (empty: nothing)."""
    version = read_version(root)
    if not VERSION_RE.match(version):
        return [f"cookiecutter.json: _template_version {version!r} is not X.Y.Z"]
    found = sections((root / "CHANGELOG.md").read_text(encoding="utf-8"))
    if not found:
        return ["CHANGELOG.md has no '## [...]' section"]
    wrong = [
        f"CHANGELOG.md: [{name}] has no '### Upgrading' notes (write 'Nothing to do.' if so)"
        for name, _, body in found
        if not upgrading_notes(body)
    ]
    top = found[0][0]
    dated = {name for name, date, _ in found if date}
    if top == UNRELEASED and version in dated:
        wrong.append(f"{version} is released: raise _template_version for the Unreleased changes")
    elif top != UNRELEASED and top != version:
        wrong.append(f"CHANGELOG.md's top section is [{top}], cookiecutter.json says {version}")
    return wrong


def git(root: Path, *args: str) -> str:
    """git in the template repository; its output (a failure stops the release)."""
    result = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"release: git {args[0]}: {result.stderr.strip()}")
    return result.stdout.strip()


def release(root: Path, today: str) -> str:
    """Date the Unreleased section, commit it and tag the version; return the tag."""
    wrong = problems(root)
    version = read_version(root)
    changelog = root / "CHANGELOG.md"
    text = changelog.read_text(encoding="utf-8")
    if sections(text)[0][0] != UNRELEASED:
        wrong.append("CHANGELOG.md's top section is not '## [Unreleased]': nothing to release")
    tag = f"v{version}"
    if git(root, "tag", "--list", tag):
        wrong.append(f"{tag} exists already: raise _template_version in cookiecutter.json")
    if git(root, "status", "--porcelain"):
        wrong.append("the work tree has uncommitted changes: commit them first")
    if wrong:
        raise SystemExit("release: " + "\nrelease: ".join(wrong))
    dated = text.replace(f"## [{UNRELEASED}]", f"## [{version}] - {today}", 1)
    changelog.write_text(dated, encoding="utf-8")
    git(root, "commit", "--quiet", "-m", f"Release {version}", "--", "CHANGELOG.md")
    git(root, "tag", "--annotate", tag, "-m", f"atom-template {version}")
    return tag


def main(argv: list[str] | None = None) -> int:
    """make release (or --check)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
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
        "Then, with the first change after it, raise _template_version in cookiecutter.json "
        "and open a '## [Unreleased]' section in CHANGELOG.md.\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
