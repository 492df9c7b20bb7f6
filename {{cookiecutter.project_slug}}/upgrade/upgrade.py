"""Bring the template's changes into this atom: ``make upgrade`` and ``make upgrade-check``.

``apply`` is ``cruft update`` (it renders the template at the commit ``.cruft.json`` records
and at the target, skips the files that are yours, ``[tool.cruft] skip`` of pyproject.toml,
merges the difference into the atom with ``git apply -3`` and records the new commit), plus
what cruft lacks (docs/upgrades.md has the table):

- the base version of every file you changed is put in git's object store first (from
  ``cruft diff``), so that git's three-way merge always has it: without it cruft falls back
  to ``.rej`` files for the whole update;
- a file you changed that the new version removes is kept and named (a removal of a changed
  file would also send cruft to ``.rej`` files); if cruft leaves ``.rej`` files all the
  same, the upgrade is undone and the command fails;
- conflicts (git's markers, unmerged in git's index) are listed and the command fails, where
  cruft says "Good work!";
- the migrations the template gained (``upgrade/migrations/<version>.py``) run in version
  order; ``.cruft.json`` is written in the post-gen hook's form (cruft copies the skip
  list of pyproject.toml into it); the "Upgrading" notes of the template's CHANGELOG for
  the versions crossed are printed.

``check`` needs only git and Python: ``cruft check`` needs cruft, and counts any commit of
the template (its tests, its docs) as one the atom lacks.

Exit status: 0 done or current; 1 behind (check) or conflicts (apply); 2 refused or failed.
"""

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

STATE_FILE = ".cruft.json"
MIGRATIONS = Path("upgrade", "migrations")
# A template version: a release "X.Y.Z", or between releases the next one's "X.Y.Z.devN".
VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:\.dev(\d+))?$")
HEADING_RE = re.compile(r"^## \[([^\]]+)\](?: - (\S+))?[ \t]*$", re.M)
UNRELEASED = "Unreleased"
GIT_TIMEOUT = 600
EXIT_OK, EXIT_BEHIND, EXIT_CONFLICTS, EXIT_FAILED = 0, 1, 1, 2
# The template's files that reach atoms: a commit changing none of them leaves atoms current.
ATOM_SOURCES = ("cookiecutter.json", "hooks")
UNDO = "git reset --hard && git clean -fd"


class UpgradeError(Exception):
    """Why the command stops, in words for the atom's owner."""


def say(text: str = "") -> None:
    """One line of the report, on stdout."""
    sys.stdout.write(text + "\n")


def run(args: list[str], cwd: Path, data: bytes | None = None) -> subprocess.CompletedProcess:
    """A command in ``cwd``, bounded in time; the completed process (bytes)."""
    try:
        return subprocess.run(
            args, cwd=cwd, input=data, capture_output=True, timeout=GIT_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UpgradeError(f"{args[0]} {args[1]}: {exc}") from exc


def git(*args: str, cwd: Path, data: bytes | None = None) -> str:
    """git's output (trailing newline removed); a failure raises UpgradeError with git's words."""
    result = run(["git", *args], cwd, data)
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        said = lines[-1] if lines else f"exit status {result.returncode}"
        raise UpgradeError(f"git {' '.join(args[:2])}: {said}")
    return result.stdout.decode(errors="replace").rstrip("\n")


# ------------------------------------------------------------------------------ versions


def version_key(version: str) -> tuple[int, ...] | None:
    """PEP 440 order for "X.Y.Z" and "X.Y.Z.devN" (a dev version before its release)."""
    match = VERSION_RE.match(version)
    if not match:
        return None
    major, minor, patch, dev = match.groups()
    final = (1, 0) if dev is None else (0, int(dev))
    return (int(major), int(minor), int(patch), *final)


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


def crossed(changelog: str, old: str, new: str) -> list[tuple[str, str]]:
    """The "Upgrading" notes of the versions an upgrade from ``old`` to ``new`` crosses: a
    section is crossed when its version is above ``old`` and not above ``new``; Unreleased
    is ``new`` itself (so two commits of one unreleased version cross nothing)."""
    low, high = version_key(old), version_key(new)
    notes = []
    for name, _, body in sections(changelog):
        key = high if name == UNRELEASED else version_key(name)
        if low and high and key and low < key <= high and upgrading_notes(body):
            notes.append((new if name == UNRELEASED else name, upgrading_notes(body)))
    return notes


# ------------------------------------------------------------------------------ the template


def read_state(project: Path) -> dict[str, Any]:
    """The atom's ``.cruft.json``, checked for what an upgrade needs."""
    path = project / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UpgradeError(
            f"{STATE_FILE} is missing: this atom does not record its template (atoms "
            "generated before atom-template 0.2.0: see the template's CHANGELOG, Upgrading)"
        ) from None
    except (OSError, ValueError) as exc:
        raise UpgradeError(f"{STATE_FILE} cannot be read: {exc}") from exc
    if not state.get("commit"):
        why = state.get("note") or "no commit"
        raise UpgradeError(f"{STATE_FILE} records no template commit ({why})")
    if not state.get("template"):
        raise UpgradeError(f"{STATE_FILE} names no template source")
    return state


class Template:
    """A clone of the template's repository in a temporary folder."""

    def __init__(self, state: dict[str, Any], into: Path, blobs: bool) -> None:
        """Clone the recorded source (without file contents when ``blobs`` is false)."""
        args = ["clone", "--quiet", "--no-checkout"] + ([] if blobs else ["--filter=blob:none"])
        try:
            git(*args, state["template"], str(into), cwd=into.parent)
        except UpgradeError as exc:
            raise UpgradeError(
                f"the template {state['template']} cannot be cloned ({exc}); "
                f'{STATE_FILE} names it as "template"'
            ) from exc
        self.repo = into
        self.directory = state.get("directory") or ""  # where cookiecutter.json is
        if run(["git", "cat-file", "-e", f"{state['commit']}^0"], into).returncode != 0:
            raise UpgradeError(
                f"the template has no commit {state['commit'][:12]} (recorded in {STATE_FILE}): "
                "was the atom generated from a commit that was never pushed?"
            )

    def commit_of(self, ref: str | None) -> str:
        """The commit a ref names: a tag, a branch or a commit; the default branch's head."""
        for name in [ref, f"origin/{ref}"] if ref else ["HEAD"]:
            found = run(["git", "rev-parse", "--verify", "--quiet", f"{name}^0"], self.repo)
            if found.returncode == 0:
                return found.stdout.decode().strip()
        raise UpgradeError(f"the template has no tag, branch or commit {ref!r}")

    def show(self, commit: str, name: str) -> str:
        """A file of the template's folder at ``commit`` ("" when it has none)."""
        path = f"{self.directory}/{name}" if self.directory else name
        found = run(["git", "show", f"{commit}:{path}"], self.repo)
        return found.stdout.decode(errors="replace") if found.returncode == 0 else ""

    def version_at(self, commit: str) -> str:
        """The version cookiecutter.json declares at ``commit``. Before releases set it (up
        to 0.2.0) a commit under an Unreleased CHANGELOG section declared the coming
        release: it is that release's development version."""
        try:
            version = str(json.loads(self.show(commit, "cookiecutter.json"))["_template_version"])
        except (ValueError, KeyError, TypeError):
            return "?"
        found = sections(self.show(commit, "CHANGELOG.md"))
        if "dev" not in version and found and found[0][0] == UNRELEASED:
            return f"{version}.dev0"
        return version

    def tag_at(self, commit: str) -> str | None:
        """The tag on ``commit``, if any."""
        found = run(["git", "describe", "--tags", "--exact-match", commit], self.repo)
        return found.stdout.decode().strip() if found.returncode == 0 else None

    def changes_atoms(self, old: str, new: str) -> bool:
        """True when ``new`` is not ``old`` and the files that reach atoms (cookiecutter.json,
        hooks/, the project folder) differ between them, and ``new`` is not older."""
        older = run(["git", "merge-base", "--is-ancestor", new, old], self.repo).returncode == 0
        if new == old or older:
            return False
        paths: set[str] = set()
        for commit in (old, new):
            tree = f"{commit}:{self.directory}" if self.directory else commit
            listing = git("ls-tree", "--name-only", tree, cwd=self.repo).splitlines()
            paths |= {name for name in listing if name in ATOM_SOURCES or name.startswith("{")}
        prefix = f"{self.directory}/" if self.directory else ""
        spec = [prefix + path for path in sorted(paths)]
        return run(["git", "diff", "--quiet", old, new, "--", *spec], self.repo).returncode != 0


def describe(template: Template, commit: str) -> str:
    """A version and its commit, for the report: "0.3.0 (1a2b3c4d5e6f)"."""
    return f"{template.version_at(commit)} ({commit[:12]})"


def check(project: Path, ref: str | None) -> int:
    """Exit 1 when the template has changes for this atom that it lacks, 0 when it is current."""
    state = read_state(project)
    with tempfile.TemporaryDirectory(prefix="atom-upgrade-") as folder:
        template = Template(state, Path(folder, "template"), blobs=False)
        target = template.commit_of(ref)
        here, there = describe(template, state["commit"]), describe(template, target)
        behind = template.changes_atoms(state["commit"], target)
    where = ref or "the default branch"
    if not behind:
        say(f"upgrade-check: current: this atom is at atom-template {here}; {where} at {there}")
        return EXIT_OK
    say(f"upgrade-check: behind: this atom is at atom-template {here}; {where} is at {there}.")
    say(f"Run `make upgrade{f' REF={ref}' if ref else ''}` to bring its changes in.")
    return EXIT_BEHIND


# ------------------------------------------------------------------------------ cruft


def cruft(project: Path, *args: str) -> str:
    """A cruft command in the atom (with this Python); its output, or UpgradeError."""
    result = run([sys.executable, "-m", "cruft", *args], project)
    said = (result.stdout + result.stderr).decode(errors="replace").strip()
    if result.returncode != 0:
        raise UpgradeError(f"cruft {args[0]} failed: {said}")
    return said


def patch_paths(patch: bytes, project: Path) -> set[str]:
    """The files a patch touches."""
    listing = run(["git", "apply", "--numstat", "-z"], project, patch).stdout.decode()
    return {entry.split("\t")[-1] for entry in listing.split("\0") if "\t" in entry}


def your_changes(project: Path, commit: str) -> set[str]:
    """The template's files you changed since ``commit`` (cruft diff: your atom against the
    template there), whose versions at ``commit`` are then stored in git, the base that
    git's three-way merge needs."""
    patch = run([sys.executable, "-m", "cruft", "diff", "--checkout", commit], project)
    if patch.returncode != 0:
        raise UpgradeError(f"cruft diff failed: {patch.stderr.decode(errors='replace').strip()}")
    if not patch.stdout.strip():
        return set()
    prefix = git("rev-parse", "--show-prefix", cwd=project)
    with tempfile.TemporaryDirectory(prefix="atom-index-") as folder:
        index = {**os.environ, "GIT_INDEX_FILE": str(Path(folder, "index"))}
        directory = [f"--directory={prefix}"] if prefix else []
        for args in (["read-tree", "HEAD"], ["apply", "--cached", *directory]):
            result = subprocess.run(
                ["git", *args], cwd=project, input=patch.stdout, env=index,
                capture_output=True, timeout=GIT_TIMEOUT, check=False,
            )  # fmt: skip
            if result.returncode != 0:
                raise UpgradeError(f"git {args[0]}: {result.stderr.decode(errors='replace')}")
    return patch_paths(patch.stdout, project)


def update(project: Path, state: dict[str, Any], clone: Path, target: str, keep: set[str]) -> str:
    """cruft update to ``target``; the files in ``keep`` are skipped this once (through the
    record's skip list, which git is told to overlook so that cruft sees a clean tree)."""
    args = ["update", "-y", "--template-path", str(clone), "--checkout", target]
    if not keep:
        return cruft(project, *args)
    skipped = {**state, "skip": [*state.get("skip", []), *sorted(keep)]}
    write_state(project, skipped)
    git("update-index", "--assume-unchanged", STATE_FILE, cwd=project)
    try:
        return cruft(project, *args)
    except UpgradeError:
        write_state(project, state)
        raise
    finally:
        git("update-index", "--no-assume-unchanged", STATE_FILE, cwd=project)


def write_state(project: Path, state: dict[str, Any]) -> None:
    """Write ``.cruft.json`` as the post-gen hook does."""
    text = json.dumps(state, ensure_ascii=False, indent=2, separators=(",", ": "))
    (project / STATE_FILE).write_text(text + "\n", encoding="utf-8")


def recorded(old: dict[str, Any], new: dict[str, Any], target: str, checkout: str | None) -> dict:
    """The new record: cruft's new answers (sorted), the old skip list and template."""
    context = {**new["context"]["cookiecutter"], "_commit": target}
    state = {key: value for key, value in old.items() if key != "note"}
    state.update(commit=target, checkout=checkout)
    state["context"] = {"cookiecutter": dict(sorted(context.items()))}
    return state


def undo_rejects(project: Path, said: str) -> None:
    """Undo the update when cruft left ``.rej`` files (a merge it could not make)."""
    untracked = git("ls-files", "--others", "-z", cwd=project).split("\0")
    rejects = [path for path in untracked if path.endswith(".rej")]
    if rejects:
        git("reset", "--quiet", "--hard", cwd=project)
        git("clean", "--quiet", "-fd", cwd=project)
        for path in rejects:
            (project / path).unlink(missing_ok=True)
        raise UpgradeError(
            f"cruft could not merge the update ({', '.join(rejects)}); nothing was changed. "
            f"What cruft said:\n{said}"
        )


# ------------------------------------------------------------------------------ migrations


def migrations(project: Path) -> set[str]:
    """The migration files the atom has."""
    return {path.name for path in (project / MIGRATIONS).glob("*.py")}


def load_migration(path: Path) -> Callable[[Path, dict[str, Any]], list[str]]:
    """The ``migrate`` function of a migration file."""
    spec = importlib.util.spec_from_file_location(f"atom_migration_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise UpgradeError(f"{path.name} cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.migrate


def run_migrations(project: Path, names: set[str], answers: dict[str, Any]) -> bool:
    """Run the migrations in version order, saying what each changed; False at a failure."""
    found = [name for name in names if version_key(name.removesuffix(".py"))]
    for name in sorted(found, key=lambda name: version_key(name.removesuffix(".py")) or ()):
        path = project / MIGRATIONS / name
        title = (path.read_text(encoding="utf-8").split('"""')[1:2] or [""])[0].strip()
        say(f"  migration {path.stem}: {title.splitlines()[0] if title else ''}")
        try:
            changes = load_migration(path)(project, answers)
        except Exception as exc:  # noqa: BLE001 - any failure of a migration is reported
            say(f"  FAILED {path.stem}: {type(exc).__name__}: {exc}")
            return False
        for change in changes or ["(nothing to change)"]:
            say(f"      {change}")
    return True


# ------------------------------------------------------------------------------ apply


def report(project: Path, kept: set[str], notes: list[tuple[str, str]], last: str) -> int:
    """The files, the notes, the conflicts and what to do next; the exit status."""
    status = git("status", "--short", "--untracked-files=all", "--", ".", cwd=project)
    say("The atom's changes (git status: staged are the template's, unstaged the migrations'):")
    for line in status.splitlines() or ["(no file of the atom changes)"]:
        say(f"  {line}")
    for path in sorted(kept):
        say(f"  kept {path}  (you changed it; the new version removes it or equals it)")
    for version, text in notes:
        say()
        say(f"Upgrading notes of atom-template {version} (its CHANGELOG):")
        say(text)
    say()
    say(last)
    conflicts = git("diff", "--name-only", "--diff-filter=U", "--", ".", cwd=project).split()
    if conflicts:
        say(f"CONFLICTS in {len(conflicts)} file(s), between <<<<<<< ours and >>>>>>> theirs")
        say("(git status lists them as unmerged; git checkout --theirs FILE takes the template's):")
        for path in conflicts:
            say(f"  {path}")
        say("Resolve each one and `git add` it, run make test, then commit.")
    else:
        say("Review with git status and git diff HEAD, run make test, then commit.")
    say(f"To undo the whole upgrade: {UNDO}")
    return EXIT_CONFLICTS if conflicts else EXIT_OK


def require_clean(project: Path) -> None:
    """Refuse a work tree with changes (cruft does too, but only after cruft diff has read
    them as yours), naming them; the upgrade shows as git changes, and UNDO undoes it."""
    changes = git("status", "--porcelain", cwd=project).splitlines()
    if changes:
        shown = "\n".join(f"  {line}" for line in changes[:10])
        raise UpgradeError(
            "make upgrade needs a clean git work tree (then git diff shows the upgrade and "
            f"`{UNDO}` undoes it): commit or stash (git stash -u) these first:\n{shown}"
        )


def upgrade(project: Path, ref: str | None) -> int:
    """Bring the template's changes since the recorded commit into the atom."""
    state = read_state(project)
    require_clean(project)
    with tempfile.TemporaryDirectory(prefix="atom-upgrade-") as folder:
        template = Template(state, Path(folder, "template"), blobs=True)
        target = template.commit_of(ref)
        if not template.changes_atoms(state["commit"], target):
            say(f"upgrade: current: nothing to bring from {target[:12]}")
            return EXIT_OK
        old, new = template.version_at(state["commit"]), template.version_at(target)
        say(
            f"Upgrading from atom-template {describe(template, state['commit'])} to "
            f"{describe(template, target)} of {state['template']}"
        )
        yours = your_changes(project, state["commit"])
        kept = yours - your_changes(project, target) if yours else set()
        before = migrations(project)
        said = update(project, state, template.repo, target, kept)
        undo_rejects(project, said)
        context = state["context"]["cookiecutter"].items()
        answers = {key: value for key, value in context if not key.startswith("_")}
        if not run_migrations(project, migrations(project) - before, answers):
            write_state(project, state)
            say(f"A migration failed: {STATE_FILE} still records {old}. Undo with {UNDO}.")
            return EXIT_FAILED
        new_state = json.loads((project / STATE_FILE).read_text(encoding="utf-8"))
        write_state(project, recorded(state, new_state, target, ref or template.tag_at(target)))
        notes = crossed(template.show(target, "CHANGELOG.md"), old, new)
    return report(project, kept, notes, f"{STATE_FILE} now records {new} ({target[:12]}).")


COMMANDS = {"check": check, "apply": upgrade}


def main(argv: list[str] | None = None) -> int:
    """make upgrade-check runs ``check``, make upgrade runs ``apply``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--ref", help="a tag, branch or commit of the template (default: its head)")
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="the atom (default: .)")
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args.project.resolve(), args.ref or None)
    except UpgradeError as exc:
        sys.stderr.write(f"{'upgrade-check' if args.command == 'check' else 'upgrade'}: {exc}\n")
        return EXIT_FAILED


if __name__ == "__main__":
    os.environ.setdefault("GIT_TERMINAL_PROMPT", "0")  # never wait for a password
    raise SystemExit(main())
