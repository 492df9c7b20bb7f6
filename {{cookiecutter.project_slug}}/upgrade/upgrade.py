"""Bring the template's changes into this atom: ``make upgrade`` and ``make upgrade-check``.

The atom records where it came from in ``.cruft.json``, written when it was generated, in
the format of cruft (which reads it too): the template's git source, its commit, the
answers. An upgrade clones the template and renders it twice with those answers: at the
recorded commit (what the atom was made from) and at the target (``--ref``, else the head
of the template's default branch, as ``cruft update`` does). Then, file by file:

- a file that is yours (``[tool.cruft] skip`` of pyproject.toml: the one list, which cruft
  honours too) is never written; when the template changed it, its change is shown;
- every other file is the template's: it takes the new version where you did not change
  it; where you did, the two changes are merged three-way (``git merge-file``). A conflict
  stays in the file between git's markers and is marked unmerged in git's index
  (``git status`` lists it, ``git checkout --theirs FILE`` takes the template's version),
  and the command fails;
- files the template added are added; files it removed are removed, or kept and named
  when you had changed them.

Then the migrations the template gained in between (``upgrade/migrations/<version>.py``,
each with ``migrate(project, answers) -> list[str]``) run in version order: a change of
the runtime that needs a change in files that are yours ships one. Last, ``.cruft.json``
records the new commit, and the "Upgrading" notes of the template's CHANGELOG for the
versions crossed are printed.

The upgrade works on a clean git work tree only, so that ``git diff`` shows it and
``git reset --hard && git clean -fd`` undoes it. ``check`` needs only git and Python; the
upgrade needs cookiecutter, the template's engine (requirements-dev.txt pins it).

Exit status: 0 done or current; 1 behind (check) or conflicts (upgrade); 2 refused or
failed (no record, a dirty work tree, template unreachable, unknown ref, a failed
migration).
"""

import argparse
import contextlib
import difflib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

STATE_FILE = ".cruft.json"
MIGRATIONS = Path("upgrade", "migrations")
VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
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


def run_git(args: list[str], cwd: Path, data: bytes | None = None) -> subprocess.CompletedProcess:
    """git with ``args`` in ``cwd``, bounded in time; the completed process (bytes)."""
    try:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=data,
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UpgradeError(f"git {args[0]}: {exc}") from exc


def git(*args: str, cwd: Path, data: bytes | None = None) -> str:
    """git's output (trailing newline removed); a failure raises UpgradeError with git's words."""
    result = run_git(list(args), cwd, data)
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        said = lines[-1] if lines else f"exit status {result.returncode}"
        raise UpgradeError(f"git {' '.join(args[:2])}: {said}")
    return result.stdout.decode(errors="replace").rstrip("\n")


def git_answers(*args: str, cwd: Path) -> bool:
    """True when git exits 0 (for git's yes/no questions)."""
    return run_git(list(args), cwd).returncode == 0


def version_key(version: str) -> tuple[int, ...]:
    """A comparable key for "X.Y.Z"; () for anything else."""
    match = VERSION_RE.match(version)
    return tuple(int(part) for part in match.groups()) if match else ()


# ------------------------------------------------------------------------------ the record


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


def answers_of(state: dict[str, Any]) -> dict[str, Any]:
    """The answers given at generation, without cookiecutter's private entries (``_...``)."""
    context = state.get("context", {}).get("cookiecutter", {})
    return {key: value for key, value in context.items() if not key.startswith("_")}


def version_of(state: dict[str, Any]) -> str:
    """The template version a record names ("?" when it names none)."""
    return str(state.get("context", {}).get("cookiecutter", {}).get("_template_version", "?"))


def write_state(project: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Record the new version: the new rendering's record, with the atom's own additions."""
    state = {key: value for key, value in old.items() if key != "note"}
    state.update(new)
    state["skip"] = sorted(set(old.get("skip", [])) | set(new.get("skip", [])))
    text = json.dumps(state, ensure_ascii=False, indent=2, separators=(",", ": "))
    (project / STATE_FILE).write_text(text + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------ ownership


def yours_patterns(*roots: Path) -> list[str]:
    """The files that are yours: ``[tool.cruft] skip`` of pyproject.toml in each root (the
    atom and the new version), and the ``skip`` of the atom's .cruft.json (cruft reads both).
    """
    patterns: list[str] = []
    for root in roots:
        pyproject = root / "pyproject.toml"
        if pyproject.is_file():
            try:
                data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise UpgradeError(f"{pyproject}: {exc}") from exc
            patterns += data.get("tool", {}).get("cruft", {}).get("skip", [])
    state = roots[0] / STATE_FILE
    if state.is_file():
        patterns += json.loads(state.read_text(encoding="utf-8")).get("skip", [])
    cleaned = {pattern.strip("/") for pattern in patterns}
    return sorted(pattern for pattern in cleaned if pattern and pattern != STATE_FILE)


def _parts_match(parts: list[str], pattern: list[str]) -> bool:
    """Match path parts against pattern parts; ``**`` spans any number of folders."""
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(_parts_match(parts[index:], pattern[1:]) for index in range(len(parts) + 1))
    return (
        bool(parts) and fnmatchcase(parts[0], pattern[0]) and _parts_match(parts[1:], pattern[1:])
    )


def is_yours(path: str, patterns: list[str]) -> bool:
    """True when ``path`` (relative, with /) is a listed file, or under a listed folder, or
    matches a listed pattern (``*``, ``?`` and ``[...]`` within a name, ``**`` across folders).
    """
    for pattern in patterns:
        if any(char in pattern for char in "*?["):
            if _parts_match(path.split("/"), pattern.split("/")):
                return True
        elif path == pattern or path.startswith(pattern + "/"):
            return True
    return False


# ------------------------------------------------------------------------------ the template


@contextlib.contextmanager
def temporary_files_in(folder: Path) -> Iterator[None]:
    """Keep the hook scripts cookiecutter writes (and never deletes) inside ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = previous


@dataclass
class Template:
    """A clone of the template's repository in a temporary folder."""

    repo: Path
    directory: str  # where cookiecutter.json is, inside the repository ("" at its root)

    @classmethod
    def clone(cls, state: dict[str, Any], into: Path, blobs: bool) -> "Template":
        """Clone the recorded source (without file contents when ``blobs`` is false)."""
        args = ["clone", "--quiet", "--no-checkout"] + ([] if blobs else ["--filter=blob:none"])
        try:
            git(*args, state["template"], str(into), cwd=into.parent)
        except UpgradeError as exc:
            raise UpgradeError(
                f"the template {state['template']} cannot be cloned ({exc}); "
                f'{STATE_FILE} names it as "template"'
            ) from exc
        return cls(into, state.get("directory") or "")

    def commit_of(self, ref: str | None) -> str:
        """The commit a ref names: a tag, a branch or a commit; the default branch's head."""
        names = [ref, f"origin/{ref}"] if ref else ["HEAD"]
        for name in names:
            found = run_git(["rev-parse", "--verify", "--quiet", f"{name}^0"], self.repo)
            if found.returncode == 0:
                return found.stdout.decode().strip()
        raise UpgradeError(f"the template has no tag, branch or commit {ref!r}")

    def require(self, commit: str) -> None:
        """Fail clearly when the recorded commit is not in the template's history."""
        if not git_answers("cat-file", "-e", f"{commit}^0", cwd=self.repo):
            raise UpgradeError(
                f"the template has no commit {commit[:12]} (recorded in {STATE_FILE}): was the "
                "atom generated from a commit that was never pushed?"
            )

    def tag_at(self, commit: str) -> str | None:
        """The tag on ``commit``, if any."""
        found = run_git(["describe", "--tags", "--exact-match", commit], self.repo)
        return found.stdout.decode().strip() if found.returncode == 0 else None

    def atom_paths(self, *commits: str) -> list[str]:
        """The template's paths that reach atoms: cookiecutter.json, hooks/, the project folder."""
        prefix = f"{self.directory}/" if self.directory else ""
        names: set[str] = set()
        for commit in commits:
            tree = f"{commit}:{self.directory}" if self.directory else commit
            listing = git("ls-tree", "--name-only", tree, cwd=self.repo).splitlines()
            names |= {name for name in listing if name in ATOM_SOURCES or name.startswith("{")}
        return [prefix + name for name in sorted(names)]

    def changes_atoms(self, old: str, new: str) -> bool:
        """True when the template's files that reach atoms differ between two commits."""
        paths = self.atom_paths(old, new)
        return not git_answers("diff", "--quiet", old, new, "--", *paths, cwd=self.repo)

    def is_ancestor(self, older: str, newer: str) -> bool:
        """True when ``older`` is in the history of ``newer``."""
        return git_answers("merge-base", "--is-ancestor", older, newer, cwd=self.repo)

    def version_at(self, commit: str) -> str:
        """The template version ``cookiecutter.json`` declares at ``commit``."""
        path = f"{self.directory}/cookiecutter.json" if self.directory else "cookiecutter.json"
        try:
            declared = json.loads(git("show", f"{commit}:{path}", cwd=self.repo))
        except (UpgradeError, ValueError):
            return "?"
        return str(declared.get("_template_version", "?"))

    def render(self, commit: str, state: dict[str, Any], out: Path, checkout: str | None) -> Path:
        """The atom as the template at ``commit`` generates it with the recorded answers."""
        # The template's engine, needed here only: upgrade-check runs without it.
        from cookiecutter import generate, prompt  # noqa: PLC0415

        git("checkout", "--quiet", "--force", "--detach", commit, cwd=self.repo)
        folder = self.repo / self.directory
        try:
            context = generate.generate_context(
                context_file=str(folder / "cookiecutter.json"), extra_context=answers_of(state)
            )
            context["cookiecutter"] = prompt.prompt_for_config(context, no_input=True)
            known = {"_template": state["template"], "_commit": commit, "_checkout": checkout}
            context["cookiecutter"].update(known)
            with temporary_files_in(out / "tmp"):
                project = generate.generate_files(
                    repo_dir=str(folder), context=context, output_dir=str(out), accept_hooks=True
                )
        except Exception as exc:  # cookiecutter has many errors: each one is said
            raise UpgradeError(
                f"the template at {commit[:12]} cannot generate this atom from its answers: {exc}"
            ) from exc
        return Path(project)


def require_clean(project: Path) -> None:
    """Refuse unless the atom is a git work tree without uncommitted changes."""
    inside = run_git(["rev-parse", "--is-inside-work-tree"], project)
    if inside.returncode != 0 or inside.stdout.strip() != b"true":
        raise UpgradeError(
            "make upgrade works on a git work tree and this atom is not in git: "
            "git init && git add -A && git commit -m 'The generated atom', then try again"
        )
    changes = git("status", "--porcelain", "--", ".", cwd=project).splitlines()
    if changes:
        shown = "\n".join(f"  {line}" for line in changes[:10])
        more = f"\n  ... and {len(changes) - 10} more" if len(changes) > 10 else ""
        raise UpgradeError(
            "make upgrade needs a clean git work tree (the upgrade shows as git changes, and "
            f"`{UNDO}` undoes it): commit or stash (git stash -u) these first:\n{shown}{more}"
        )


def require_cookiecutter() -> None:
    """Fail clearly when this Python cannot render the template."""
    if importlib.util.find_spec("cookiecutter") is None:
        raise UpgradeError(
            f"cookiecutter is missing in {sys.executable}: `make setup` installs "
            "requirements-dev.txt, which pins it"
        )


# ------------------------------------------------------------------------------ the files


def files_of(root: Path) -> dict[str, Path]:
    """The files of a rendering by relative path (with /), without its record."""
    found = {}
    for path in root.rglob("*"):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not path.is_symlink() and "__pycache__" not in path.parts:
            found[relative] = path
    found.pop(STATE_FILE, None)
    return found


def ignored_by_git(project: Path, paths: list[str]) -> set[str]:
    """The paths the atom's git ignores (builds, keys: never the template's business)."""
    data = b"".join(path.encode() + b"\0" for path in paths)
    result = run_git(["check-ignore", "-z", "--stdin"], project, data)
    if result.returncode not in (0, 1):
        raise UpgradeError(f"git check-ignore: {result.stderr.decode(errors='replace').strip()}")
    return {item.decode() for item in result.stdout.split(b"\0") if item}


def merge_file(
    base: bytes, ours: bytes, theirs: bytes, labels: tuple[str, ...]
) -> tuple[bytes, int]:
    """git merge-file of three versions: the merged text and its number of conflicts."""
    with tempfile.TemporaryDirectory(prefix="atom-merge-") as folder:
        paths = []
        for name, data in (("yours", ours), ("base", base), ("template", theirs)):
            path = Path(folder, name)
            path.write_bytes(data)
            paths.append(str(path))
        options = [item for label in labels for item in ("-L", label)]
        result = run_git(["merge-file", "--stdout", *options, *paths], Path(folder))
    if not 0 <= result.returncode <= 127:
        raise UpgradeError(f"git merge-file: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout, result.returncode


def mark_unmerged(project: Path, path: str, mode: int, stages: dict[int, bytes | None]) -> None:
    """Put the three versions in git's index as a merge conflict (stages 1, 2 and 3), so
    ``git status`` lists the file as unmerged and a commit waits for ``git add``."""
    full = git("rev-parse", "--show-prefix", cwd=project) + path
    entries = []
    for stage, data in stages.items():
        if data is not None:
            oid = git("hash-object", "-w", "--stdin", cwd=project, data=data)
            entries.append(f"{mode:o} {oid} {stage}\t{full}")
    zero = "0" * len(entries[-1].split()[1])
    info = "\n".join([f"0 {zero}\t{full}", *entries]) + "\n"
    git("update-index", "--index-info", cwd=project, data=info.encode())


def show_change(
    path: str, base: bytes | None, theirs: bytes | None, labels: tuple[str, ...]
) -> str:
    """The template's change to one file, as a unified diff."""
    if b"\0" in (base or b"") + (theirs or b""):
        return f"{path}: a binary file changed\n"
    before = (base or b"").decode(errors="replace").splitlines(keepends=True)
    after = (theirs or b"").decode(errors="replace").splitlines(keepends=True)
    old, new = f"a/{path} ({labels[1]})", f"b/{path} ({labels[2]})"
    return "".join(difflib.unified_diff(before, after, old, new))


@dataclass
class Report:
    """What the upgrade did, file by file."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    changes_to_yours: list[str] = field(default_factory=list)

    def add(self, word: str, path: str, detail: str = "") -> None:
        """One file's outcome."""
        self.rows.append((word, path, detail))


@dataclass
class Merger:
    """Bring the difference between two renderings of the template into the atom."""

    project: Path
    old: Path
    new: Path
    yours: list[str]
    labels: tuple[str, str, str]  # yours, the old version, the new version
    report: Report = field(default_factory=Report)

    def run(self) -> Report:
        """Every file of either rendering, in order."""
        old, new = files_of(self.old), files_of(self.new)
        paths = sorted(set(old) | set(new))
        ignored = ignored_by_git(self.project, paths)
        for path in paths:
            if path not in ignored:
                base = old[path].read_bytes() if path in old else None
                theirs = new[path].read_bytes() if path in new else None
                self.one(path, base, theirs, new.get(path))
        return self.report

    def one(self, path: str, base: bytes | None, theirs: bytes | None, source: Path | None) -> None:
        """One file: the template's change taken, merged, refused (yours) or reported."""
        if base == theirs:
            return  # the template did not change it
        if is_yours(path, self.yours):
            self.report.add("kept", path, "yours; the template's change is shown below")
            self.report.changes_to_yours.append(show_change(path, base, theirs, self.labels))
            return
        target = self.project / path
        ours = target.read_bytes() if target.is_file() else None
        if ours == theirs:
            return
        if ours == base:
            self.replace(target, theirs, source)
            word = "added" if base is None else "removed" if theirs is None else "updated"
            self.report.add(word, path)
        elif ours is None:
            self.report.add("not restored", path, "you removed it; the template changed it")
        elif theirs is None or source is None:
            self.report.add("kept", path, "the template removed it; you had changed it")
        else:
            self.merge(path, base, ours, theirs, source)

    def replace(self, target: Path, theirs: bytes | None, source: Path | None) -> None:
        """Write the template's version (or remove the file, and folders left empty)."""
        if theirs is None or source is None:
            target.unlink()
            folder = target.parent
            while folder != self.project and not any(folder.iterdir()):
                folder.rmdir()
                folder = folder.parent
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(theirs)
        target.chmod(source.stat().st_mode & 0o777)

    def merge(
        self, path: str, base: bytes | None, ours: bytes, theirs: bytes, source: Path
    ) -> None:
        """Both sides changed the file: merge three-way; a conflict is marked, never dropped."""
        if b"\0" in (base or b"") + ours + theirs:
            merged, conflicts = ours, 1  # binary: yours stays, the template's is in the index
        else:
            merged, conflicts = merge_file(base or b"", ours, theirs, self.labels)
        (self.project / path).write_bytes(merged)
        if conflicts:
            mode = 0o100755 if source.stat().st_mode & 0o111 else 0o100644
            mark_unmerged(self.project, path, mode, {1: base, 2: ours, 3: theirs})
            self.report.add("CONFLICT", path, "both changed the same lines")
            self.report.conflicts.append(path)
        else:
            self.report.add("merged", path, "your changes and the template's")


# ------------------------------------------------------------------------------ migrations


def new_migrations(old: Path, new: Path) -> list[Path]:
    """The migrations the template gained between two renderings, in version order."""
    before = {path.name for path in (old / MIGRATIONS).glob("*.py")}
    found = [
        path
        for path in (new / MIGRATIONS).glob("*.py")
        if path.name not in before and VERSION_RE.match(path.stem)
    ]
    return sorted(found, key=lambda path: version_key(path.stem))


def load_migration(path: Path) -> Callable[[Path, dict[str, Any]], list[str]]:
    """The ``migrate`` function of a migration file."""
    spec = importlib.util.spec_from_file_location(f"atom_migration_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise UpgradeError(f"{path.name} cannot be loaded")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.migrate


def run_migrations(project: Path, migrations: list[Path], answers: dict[str, Any]) -> bool:
    """Run each migration, saying what it changed; False (and stop) at the first failure."""
    for path in migrations:
        title = (path.read_text(encoding="utf-8").split('"""')[1:2] or [""])[0].strip()
        say(f"  migration    {path.stem}: {title.splitlines()[0] if title else ''}")
        try:
            changes = load_migration(path)(project, answers)
        except Exception as exc:  # noqa: BLE001 - any failure of a migration is reported
            say(f"  FAILED       {path.stem}: {type(exc).__name__}: {exc}")
            return False
        for change in changes or ["(nothing to change)"]:
            say(f"               {change}")
    return True


def upgrading_notes(changelog: str, old: str, new: str) -> list[tuple[str, str]]:
    """The "Upgrading" notes of the CHANGELOG for the versions after ``old`` up to ``new``
    (and of the Unreleased section while ``new`` has no section of its own)."""
    low, high = version_key(old), version_key(new)
    sections = []
    for chunk in re.split(r"^## ", changelog, flags=re.M)[1:]:
        heading, _, body = chunk.partition("\n")
        name = heading.strip().removeprefix("[").split("]", 1)[0]
        sections.append((name, body))
    released = {name for name, _ in sections if VERSION_RE.match(name)}
    notes = []
    for name, body in sections:
        wanted = name == "Unreleased" and new not in released
        if VERSION_RE.match(name) and low and high:
            wanted = low < version_key(name) <= high
        found = re.search(r"^### Upgrading\n(.*?)(?=^##|\Z)", body, flags=re.M | re.S)
        if wanted and found and found.group(1).strip():
            notes.append((name, found.group(1).strip()))
    return notes


# ------------------------------------------------------------------------------ commands


def print_rows(report: Report) -> None:
    """The files, one line each."""
    for word, path, detail in report.rows:
        say(f"  {word:<12} {path}" + (f"  ({detail})" if detail else ""))
    if not report.rows:
        say("  (no file of the atom changes)")


def print_ending(report: Report, notes: list[tuple[str, str]], recorded: str) -> None:
    """The template's changes to your files, the notes, the conflicts and what to do next."""
    if report.changes_to_yours:
        say()
        say("The template changed files that are yours; make upgrade left them as they are.")
        say("Its changes, for you to take what you want:")
        for diff in report.changes_to_yours:
            say(diff.rstrip("\n"))
    for version, text in notes:
        say()
        say(f"Upgrading notes of atom-template {version} (its CHANGELOG):")
        say(text)
    say()
    say(recorded)
    if report.conflicts:
        say(f"CONFLICTS in {len(report.conflicts)} file(s), between <<<<<<< and >>>>>>> markers")
        say("(git status lists them as unmerged; git checkout --theirs FILE takes the template's):")
        for path in report.conflicts:
            say(f"  {path}")
        say("Resolve each one and `git add` it, run make test, then commit.")
    else:
        say("Review with git status and git diff, run make test, then commit.")
    say(f"To undo the whole upgrade: {UNDO}")


def locate(project: Path, ref: str | None, blobs: bool, folder: Path) -> tuple[dict, Template, str]:
    """The atom's record, the template's clone, and the target commit."""
    state = read_state(project)
    template = Template.clone(state, folder / "template", blobs)
    target = template.commit_of(ref)
    template.require(state["commit"])
    return state, template, target


def check(project: Path, ref: str | None) -> int:
    """Exit 1 when the template has changes for this atom that it lacks, 0 when it is current."""
    with tempfile.TemporaryDirectory(prefix="atom-upgrade-") as folder:
        state, template, target = locate(project, ref, False, Path(folder))
        recorded = state["commit"]
        here = f"atom-template {version_of(state)} ({recorded[:12]})"
        there = f"{template.version_at(target)} ({target[:12]}, {ref or 'the default branch'})"
        if target == recorded or not template.changes_atoms(recorded, target):
            say(f"upgrade-check: current: this atom is at {here}; the template at {there}")
            return EXIT_OK
        if template.is_ancestor(target, recorded):
            say(f"upgrade-check: current: this atom ({here}) is newer than {there}")
            return EXIT_OK
    say(f"upgrade-check: behind: this atom is at {here}; the template is at {there}.")
    say(f"Run `make upgrade{f' REF={ref}' if ref else ''}` to bring its changes in.")
    return EXIT_BEHIND


def upgrade(project: Path, ref: str | None) -> int:
    """Bring the template's changes since the recorded commit into the atom."""
    require_clean(project)
    require_cookiecutter()
    with tempfile.TemporaryDirectory(prefix="atom-upgrade-") as name:
        folder = Path(name)
        state, template, target = locate(project, ref, True, folder)
        recorded = state["commit"]
        if target == recorded or not template.changes_atoms(recorded, target):
            say(f"upgrade: current: nothing to bring from {target[:12]}")
            return EXIT_OK
        if template.is_ancestor(target, recorded):
            target_name = ref or "the default branch"
            raise UpgradeError(f"{target_name} is older than the atom's template: no going back")
        old = template.render(recorded, state, folder / "old", state.get("checkout"))
        new = template.render(target, state, folder / "new", ref or template.tag_at(target))
        try:
            new_state = json.loads((new / STATE_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UpgradeError(f"the new version wrote no readable {STATE_FILE}: {exc}") from exc
        versions = (version_of(state), version_of(new_state))
        labels = ("yours", f"template {versions[0]}", f"template {versions[1]}")
        say(
            f"Upgrading from atom-template {versions[0]} ({recorded[:12]}) to {versions[1]} "
            f"({target[:12]}) of {state['template']}"
        )
        report = Merger(project, old, new, yours_patterns(project, new), labels).run()
        print_rows(report)
        if not run_migrations(project, new_migrations(old, new), answers_of(state)):
            say(f"A migration failed: {STATE_FILE} still records {versions[0]}. Undo with {UNDO}.")
            return EXIT_FAILED
        write_state(project, state, new_state)
        changelog = template.repo / "CHANGELOG.md"
        text = changelog.read_text(encoding="utf-8") if changelog.is_file() else ""
        recorded_line = f"{STATE_FILE} now records {versions[1]} ({target[:12]})."
        print_ending(report, upgrading_notes(text, *versions), recorded_line)
    return EXIT_CONFLICTS if report.conflicts else EXIT_OK


COMMANDS = {"check": check, "apply": upgrade}


def main(argv: list[str] | None = None) -> int:
    """make upgrade-check runs ``check``, make upgrade runs ``apply``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
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
