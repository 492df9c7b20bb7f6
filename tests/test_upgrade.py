"""The upgrade lane: an atom over its lifetime, as its owner lives it.

A throw-away git repository of the template (this working tree, committed and released as
version N), an atom generated from its URL with plain cookiecutter and put in git, the
edits an owner makes (the example route changed, a second route module with its own model
the README's way, a setting in .env), then version N+1 of the template, first unreleased
(N+1.dev0, two commits) and then released: a runtime file changed (the ``Images``
dependency renamed ``ImageInputs``, with a migration for the route modules that import
it), one added, one removed, a new dependency. The tests run in file order, as the owner
lives it: the atom is current, then behind; plain cruft update works on it (and leaves
``.rej`` files where make upgrade does not); ``make upgrade`` brings N+1 in, equal to a
fresh generation at N+1 in every file of the template's, the owner's edits intact, the
atom's lint and its tests of what the upgrade met passing; then, from the owner's files
committed in one go (git has no base version of them), a real conflict, reported as one.
An atom of N+1.dev0 reports so, and an upgrade between the two commits of N+1.dev0 crosses
no version. Last, an atom generated before make upgrade was built on cruft upgrades
through its own old script and then through the new one.
"""

import json
import re
import runpy
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.atomctl import TEMPLATE

from .conftest import run
from .test_add_model import EYES_CASCADE
from .test_bake import suite_failure
from .throwaway import (
    commit_all,
    cookiecutter_config,
    copy_template,
    environment,
    generate,
    git,
    new_repository,
    ok,
    release,
    template_version,
)

pytestmark = pytest.mark.upgrade

PACKAGE = "my_atom"
# The working tree declares N's development version; the throw-away repository releases N.
VERSION_N = template_version().split(".dev")[0]
MAJOR, MINOR, _ = VERSION_N.split(".")
VERSION_N1 = f"{MAJOR}.{int(MINOR) + 1}.0"
DEV_N1 = f"{VERSION_N1}.dev0"
# The last commit of the template whose atoms upgrade with the home-made upgrade.py (before
# make upgrade was built on cruft): an atom generated from it takes the bootstrap path.
BEFORE_CRUFT = "405ee75300cd8b3e10a532cbf81b3e138e58d948"
MAKE = ["make", f"PYTHON={sys.executable}"]  # this venv holds the atom's pinned packages
USER_SUMMARY = 'summary="Find the faces"'
USER_ENV = "IMAGE_URL_TIMEOUT=5\n"
NEW_DEPENDENCY = "packaging==26.4"
MIGRATION = '''"""The Images dependency is called ImageInputs: rename it in your route modules."""

import re
from pathlib import Path


def migrate(project: Path, answers: dict) -> list[str]:
    """Rename Images in every route module under api/interface/; say which files changed."""
    changed = []
    interface = project / answers["package_name"] / "api" / "interface"
    for path in sorted(interface.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        renamed = re.sub(r"\\bImages\\b", "ImageInputs", text)
        if renamed != text:
            path.write_text(renamed, encoding="utf-8")
            changed.append(path.relative_to(project).as_posix())
    return changed
'''
RENAMED_IN = (  # the template's files that name the dependency
    "{{cookiecutter.package_name}}/api/__init__.py",
    "{{cookiecutter.package_name}}/api/dependencies.py",
    "{{cookiecutter.package_name}}/api/interface/detect.py",
    "scaffold/route_module.py.tmpl",  # what make route writes
    "tests/data/detect_before_router.py",
    "{{cookiecutter.package_name}}/lib/load_image.py",
    "docs/models.md",
    "docs/models.zh-CN.md",
)
ADDED = f"{PACKAGE}/lib/clock.py"
REMOVED = "deploy/k8s/hpa.yaml"
NOTES_N1 = f"Upgrading notes of atom-template {VERSION_N1} (its CHANGELOG):"


@dataclass
class World:
    """The throw-away template repository, its URL, and the owner's atom."""

    root: Path
    repo: Path
    url: str
    config: Path
    atom: Path
    commit_n: str
    owner_commit: str  # the atom with the owner's edits, before any upgrade


@dataclass
class Commits:
    """Version N+1 in the template's history: two commits of N+1.dev0, then its release."""

    dev: str
    dev_again: str
    release: str


def make(atom: Path, *args: str) -> tuple[int, str, str]:
    """A make target of the atom; exit status, stdout and stderr."""
    result = run([*MAKE, *args], cwd=atom, timeout=600, env=environment())
    return result.returncode, result.stdout, result.stderr


def cruft(atom: Path, *args: str) -> tuple[int, str, str]:
    """A cruft command in the atom; exit status, stdout and stderr."""
    result = run([sys.executable, "-m", "cruft", *args], cwd=atom, timeout=300, env=environment())
    return result.returncode, result.stdout, result.stderr


def script(atom: Path, *args: str) -> tuple[int, str, str]:
    """The atom's upgrade script with this Python (make upgrade's recipe without make setup,
    which atoms generated without the demo model would spend a minute on)."""
    command = [sys.executable, "upgrade/upgrade.py", *args]
    result = run(command, cwd=atom, timeout=600, env=environment())
    return result.returncode, result.stdout, result.stderr


def rows(output: str) -> dict[str, str]:
    """make upgrade's file lines (git status --short, and "kept"): {path: status}."""
    found = {}
    for line in output.splitlines():
        match = re.match(r"^  ([MADRU ]{2}|kept) (\S+)", line)
        if match:
            found[match.group(2)] = match.group(1).strip()
    return found


def reported_version(atom: Path) -> str:
    """The template version the atom reports (about.py's TEMPLATE_VERSION)."""
    return runpy.run_path(str(atom / PACKAGE / "about.py"))["TEMPLATE_VERSION"]


def owner_edits(atom: Path) -> None:
    """What an owner does first: the example route changed, a second route module with its own
    encrypted model (the README's way), a setting in .env (which git ignores)."""
    detect = atom / PACKAGE / "api" / "interface" / "detect.py"
    text = detect.read_text()
    assert text.count('summary="Detect faces"') == 1
    detect.write_text(text.replace('summary="Detect faces"', USER_SUMMARY))
    cascade = ok([sys.executable, "-c", "import cv2; print(cv2.data.haarcascades)"], atom).strip()
    assert make(atom, "route", "NAME=eyes", f"SRC={cascade}/{EYES_CASCADE}")[0] == 0
    (atom / ".env").write_text(USER_ENV)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Version N of the template in a throw-away repository; an atom generated from its URL
    at tag vN, committed, then edited and committed by its owner."""
    root = tmp_path_factory.mktemp("lifetime")
    repo = new_repository(root / "atom-template")
    config = cookiecutter_config(root)
    url = "git+" + repo.as_uri()  # cookiecutter takes a file:// URL for git's with "git+"
    atom, _ = generate(url, root / "atoms", config, "--checkout", f"v{VERSION_N}")
    git(atom, "init", "--quiet", "--initial-branch=main")
    commit_all(atom, "The generated atom")
    owner_edits(atom)
    owner_commit = commit_all(atom, "My model")
    assert (atom / ".env").read_text() == USER_ENV  # kept, never committed
    commit_n = git(repo, "rev-parse", "HEAD")
    return World(root, repo, url, config, atom, commit_n, owner_commit)


def version_n1(repo: Path) -> None:
    """The template's next version, unreleased: a renamed dependency with its migration, a
    file added, one removed, a new dependency, the version raised to N+1.dev0, its CHANGELOG
    section (Unreleased)."""
    slug = repo / "{{cookiecutter.project_slug}}"
    for name in RENAMED_IN:
        path = slug / name
        path.write_text(re.sub(r"\bImages\b", "ImageInputs", path.read_text()))
    clock = slug / "{{cookiecutter.package_name}}" / "lib" / "clock.py"
    clock.write_text(
        '"""Monotonic time in milliseconds."""\n\nimport time\n\n\n'
        'def now_ms() -> float:\n    """Milliseconds of a monotonic clock."""\n'
        "    return time.monotonic() * 1000\n"
    )
    (slug / REMOVED).unlink()
    requirements = slug / "requirements.txt"
    requirements.write_text(requirements.read_text() + NEW_DEPENDENCY + "\n")
    pyproject = slug / "pyproject.toml"
    text = pyproject.read_text()
    assert text.count('    "apache-skywalking==1.3.0",\n]') == 1
    pyproject.write_text(
        text.replace(
            '    "apache-skywalking==1.3.0",\n]',
            f'    "apache-skywalking==1.3.0",\n    "{NEW_DEPENDENCY}",\n]',
        )
    )
    (slug / "upgrade" / "migrations" / f"{VERSION_N1}.py").write_text(MIGRATION)
    cookiecutter_json = repo / "cookiecutter.json"
    text = cookiecutter_json.read_text()
    assert text.count(f'"_template_version": "{VERSION_N}"') == 1
    cookiecutter_json.write_text(text.replace(f'"{VERSION_N}"', f'"{DEV_N1}"'))
    changelog = repo / "CHANGELOG.md"
    section = (
        "## [Unreleased]\n\n### Changed\n\n- The `Images` dependency is `ImageInputs`.\n\n"
        "### Upgrading\n\n- Nothing by hand: make upgrade renames `Images` in your "
        "route modules (a migration).\n\n"
    )
    text = changelog.read_text()
    changelog.write_text(text.replace(f"## [{VERSION_N}]", section + f"## [{VERSION_N}]", 1))


@pytest.fixture(scope="module")
def released(world: World) -> Commits:
    """Version N+1 in the throw-away repository: committed as N+1.dev0, a second commit of
    N+1.dev0 (a comment in the Makefile), then released (tag vN+1)."""
    version_n1(world.repo)
    dev = commit_all(world.repo, f"atom-template {DEV_N1}")
    makefile = world.repo / "{{cookiecutter.project_slug}}" / "Makefile"
    makefile.write_text(makefile.read_text() + "# Tasks of the atom.\n")
    dev_again = commit_all(world.repo, "A comment in the Makefile")
    assert release(world.repo) == f"v{VERSION_N1}"
    return Commits(dev, dev_again, git(world.repo, "rev-parse", "HEAD"))


def state(atom: Path) -> dict:
    """The atom's .cruft.json."""
    return json.loads((atom / ".cruft.json").read_text())


def test_generation_records_the_template(world: World) -> None:
    """Plain cookiecutter from a git URL writes .cruft.json in cruft's format, and about.py
    carries the same commit; a release reports its version as it is."""
    recorded = state(world.atom)
    assert recorded["template"] == world.repo.as_uri()  # the clone's origin
    assert recorded["commit"] == world.commit_n
    assert recorded["checkout"] == f"v{VERSION_N}"
    assert recorded["directory"] is None and recorded["skip"] == [".cruft.json"]
    assert "note" not in recorded
    context = recorded["context"]["cookiecutter"]
    assert context["_template_version"] == VERSION_N and context["_commit"] == world.commit_n
    assert context["project_name"] == "My Atom" and context["ci"] == "gitlab"
    assert not {"_output_dir", "_repo_dir", "_checkout"} & set(context)
    about = (world.atom / PACKAGE / "about.py").read_text()
    assert f'TEMPLATE_COMMIT = "{world.commit_n}"\n' in about
    assert reported_version(world.atom) == VERSION_N


def test_a_current_atom_is_current(world: World) -> None:
    """Before N+1: upgrade-check and cruft check say current, cruft diff shows nothing (the
    owner's files are skipped), make upgrade has nothing to bring."""
    status, out, err = make(world.atom, "upgrade-check")
    assert status == 0 and "upgrade-check: current" in out, out + err
    assert f"atom-template {VERSION_N} ({world.commit_n[:12]})" in out
    assert cruft(world.atom, "check")[0] == 0
    status, out, err = cruft(world.atom, "diff", "--exit-code")
    assert (status, out) == (0, ""), out + err
    status, out, err = make(world.atom, "upgrade")
    assert status == 0 and "upgrade: current" in out, out + err


def test_a_dirty_tree_is_refused(world: World) -> None:
    """make upgrade refuses uncommitted changes, names them, and changes nothing."""
    server = world.atom / "server.py"
    original = server.read_text()
    server.write_text(original + "# mine\n")
    try:
        status, _, err = make(world.atom, "upgrade")
        assert status != 0
        assert "make upgrade needs a clean git work tree" in err and " M server.py" in err
        assert git(world.atom, "status", "--porcelain") == "M server.py"
    finally:
        server.write_text(original)


def test_behind_after_a_release(world: World, released: Commits) -> None:
    """After N+1: upgrade-check's script exits 1 naming both versions (make reports it as
    its own status 2, "Error 1"); cruft check exits 1 too."""
    status, out, err = make(world.atom, "upgrade-check")
    assert status == 2 and "upgrade-check] Error 1" in err, out + err
    assert f"behind: this atom is at atom-template {VERSION_N} ({world.commit_n[:12]})" in out
    assert f"the default branch is at {VERSION_N1} ({released.release[:12]})" in out
    script = run([sys.executable, "upgrade/upgrade.py", "check"], cwd=world.atom, timeout=120)
    assert script.returncode == 1, script.stdout + script.stderr
    assert cruft(world.atom, "check")[0] == 1


def test_plain_cruft_update(world: World, released: Commits) -> None:
    """Plain cruft update, the left column of docs/upgrades.md: on the owner's atom it brings
    N+1's files (skipping the owner's, running no migration) and records the commit, but
    copies the skip list of pyproject.toml into .cruft.json; where the owner changed a file
    that N+1 removes, it drops git's three-way merge for the whole update: it exits 0 all
    the same, a .rej file where the owner's lines meet N+1's, no conflict marker."""
    clone = world.root / "cruft-atom"
    git(world.root, "clone", "--quiet", str(world.atom), str(clone))
    status, out, err = cruft(clone, "update", "--skip-apply-ask")
    assert status == 0, out + err
    recorded = state(clone)
    assert recorded["commit"] == released.release and recorded["checkout"] is None
    assert f"{PACKAGE}/api/route.py" in recorded["skip"]
    assert "ImageInputs = Annotated" in (clone / PACKAGE / "api" / "dependencies.py").read_text()
    assert (clone / ADDED).is_file() and not (clone / REMOVED).exists()
    detect = (clone / PACKAGE / "api" / "interface" / "detect.py").read_text()
    assert USER_SUMMARY in detect and "Images," in detect  # skipped, and not migrated
    assert list(clone.rglob("*.rej")) == []
    git(clone, "reset", "--quiet", "--hard", world.owner_commit)
    hpa = clone / REMOVED
    hpa.write_text(hpa.read_text().replace("maxReplicas: 10", "maxReplicas: 4"))
    requirements = clone / "requirements.txt"
    requirements.write_text(requirements.read_text() + "onnxruntime==1.23.2\n")
    commit_all(clone, "Fewer replicas, my dependency")
    status, out, err = cruft(clone, "update", "--skip-apply-ask")
    assert status == 0 and "Good work!" in out, out + err
    assert "Retrying again with a different update strategy" in out + err
    assert [path.name for path in clone.rglob("*.rej")] == ["requirements.txt.rej"]
    assert git(clone, "diff", "--name-only", "--diff-filter=U") == ""
    assert "<<<<<<<" not in requirements.read_text() and hpa.is_file()


def test_make_upgrade_brings_the_new_version(world: World, released: Commits) -> None:
    """make upgrade: runtime files updated, added, removed; the owner's files kept; the
    migration run; the notes of N+1 printed; the commit and the tag recorded."""
    status, out, err = make(world.atom, "upgrade")
    assert status == 0, out + err
    assert (
        f"Upgrading from atom-template {VERSION_N} ({world.commit_n[:12]}) to "
        f"{VERSION_N1} ({released.release[:12]})"
    ) in out
    files = rows(out)
    assert files[f"{PACKAGE}/api/dependencies.py"] == "M"
    assert files[ADDED] == "A" and files[REMOVED] == "D"
    assert files["requirements.txt"] == "M" and files["pyproject.toml"] == "M"
    assert files[f"{PACKAGE}/api/interface/detect.py"] == "M"  # by the migration only
    assert "CONFLICT" not in out
    assert f"  migration {VERSION_N1}: The Images dependency is called ImageInputs" in out
    interface = world.atom / PACKAGE / "api" / "interface"
    for name in ("detect.py", "eyes.py"):
        assert f"      {PACKAGE}/api/interface/{name}" in out
        assert not re.search(r"\bImages\b", (interface / name).read_text())
    assert NOTES_N1 in out and out.count("Upgrading notes") == 1
    assert USER_SUMMARY in (interface / "detect.py").read_text()
    assert '"/eyes"' in (interface / "eyes.py").read_text()
    assert '    "eyes",\n' in (world.atom / PACKAGE / "api" / "route.py").read_text()
    assert git(world.atom, "diff", "--quiet", world.owner_commit, "--", "models") == ""
    assert (world.atom / ".env").read_text() == USER_ENV
    recorded = state(world.atom)
    assert (recorded["commit"], recorded["checkout"]) == (released.release, f"v{VERSION_N1}")
    assert reported_version(world.atom) == VERSION_N1
    assert list(world.atom.rglob("*.rej")) + list(world.atom.rglob("*.orig")) == []
    status, out, err = make(world.atom, "upgrade-check")
    assert status == 0 and "current" in out, out + err
    commit_all(world.atom, f"Upgrade to atom-template {VERSION_N1}")


def test_the_runtime_equals_a_fresh_generation(world: World, released: Commits) -> None:
    """Every file of the template's in the upgraded atom is the one a fresh generation at
    N+1 has; the atom holds no other file but the owner's own; the records are equal."""
    fresh, _ = generate(
        world.url,
        world.root / "fresh",
        world.config,
        "--checkout",
        f"v{VERSION_N1}",
        CC="/nonexistent/cc",  # no compiled protector: the build's files are compared by no one
    )
    git(fresh, "init", "--quiet")
    git(fresh, "add", "--all")
    template_files = set(git(fresh, "ls-files").splitlines())
    atom_files = set(git(world.atom, "ls-files").splitlines())
    yours = re.findall(r'^    "([^"]+)",$', (fresh / "pyproject.toml").read_text(), re.M)
    assert f"{PACKAGE}/api/route.py" in yours
    theirs = {
        path
        for path in template_files
        if not any(path == mine or path.startswith(mine + "/") for mine in yours)
    }
    assert len(theirs) > 100
    different = [
        path
        for path in sorted(theirs)
        if (world.atom / path).read_bytes() != (fresh / path).read_bytes()
    ]
    assert different == []
    assert template_files - atom_files == set()
    owner_files = {f"{PACKAGE}/api/interface/eyes.py", "models/eyes.enc", "models/face.enc"}
    assert atom_files - template_files == owner_files
    assert state(world.atom) == state(fresh)


# The atom's tests of what an upgrade meets: the owner's route modules beside the runtime
# (the contract test runs over each, the example's own tests), the module layout, make
# route, settings from the owner's .env, the template version. Every other file is the
# fresh generation's at N+1 (a test above compares them), whose whole suite the atom_suite
# lane runs.
UPGRADE_TESTS = (
    "tests/test_route_contract.py",
    "tests/test_detect.py",
    "tests/test_structure.py",
    "tests/test_make_route.py",
    "tests/test_settings.py",
    "tests/test_template_info.py",
)


def test_the_upgraded_atom_lints_and_passes_its_tests(world: World, released: Commits) -> None:
    """make lint (ruff, mypy) is clean and the atom's tests of what the upgrade met pass."""
    status, out, err = make(world.atom, "lint")
    assert status == 0, out[-3000:] + err[-3000:]
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *UPGRADE_TESTS],
        cwd=world.atom,
        timeout=600,
    )
    assert result.returncode == 0, suite_failure(result)
    assert " passed" in result.stdout and " failed" not in result.stdout


def test_a_real_conflict_is_reported(world: World, released: Commits) -> None:
    """The owner's atom committed in one go (git holds no generated version of its files),
    with a dependency of their own at the end of requirements.txt (where N+1 adds one), a
    file of their own where N+1 adds one, their own skip entry, a changed file that N+1
    removes: make upgrade exits 1, lists both conflicts, leaves git's markers and unmerged
    index entries (no .rej), merges pyproject.toml cleanly and keeps the removed file."""
    atom = world.root / "one-commit"
    atom.mkdir()
    archive = subprocess.run(
        ["git", "archive", world.owner_commit], cwd=world.atom, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x"], cwd=atom, input=archive, check=True)
    requirements = atom / "requirements.txt"
    requirements.write_text(requirements.read_text() + "onnxruntime==1.23.2\n")
    pyproject = atom / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(
        text.replace('    "models",\n]', '    "models",\n    "deploy/k8s/configmap.yaml",\n]')
    )
    hpa = atom / REMOVED
    hpa.write_text(hpa.read_text().replace("maxReplicas: 10", "maxReplicas: 4"))
    (atom / ADDED).write_text('"""My clock."""\n')
    git(atom, "init", "--quiet", "--initial-branch=main")
    commit_all(atom, "My atom, in one commit")
    status, out, err = script(atom, "apply", "--ref", f"v{VERSION_N1}")
    assert status == 1, out + err  # conflicts
    files = rows(out)
    assert files["requirements.txt"] == "UU" and files[ADDED] == "AA"
    assert files["pyproject.toml"] == "M" and files[REMOVED] == "kept"
    assert "CONFLICTS in 2 file(s)" in out and "\n  requirements.txt\n" in out
    merged = requirements.read_text()
    assert re.search(
        r"^<<<<<<< ours\nonnxruntime==1\.23\.2\n=======\n"
        + re.escape(NEW_DEPENDENCY)
        + r"\n>>>>>>> theirs\n",
        merged,
        re.M,
    ), merged
    unmerged = git(atom, "diff", "--name-only", "--diff-filter=U").splitlines()
    assert unmerged == [ADDED, "requirements.txt"]
    assert list(atom.rglob("*.rej")) + list(atom.rglob("*.orig")) == []
    both = pyproject.read_text()
    assert '"deploy/k8s/configmap.yaml"' in both and f'"{NEW_DEPENDENCY}"' in both
    assert "maxReplicas: 4" in hpa.read_text()
    assert "ImageInputs = Annotated" in (atom / PACKAGE / "api" / "dependencies.py").read_text()
    recorded = state(atom)
    assert recorded["commit"] == released.release and recorded["skip"] == [".cruft.json"]
    git(atom, "checkout", "--theirs", "--", "requirements.txt")
    theirs = requirements.read_text()
    assert NEW_DEPENDENCY in theirs and "onnxruntime" not in theirs


def test_versions_between_releases(world: World, released: Commits) -> None:
    """An atom generated from a commit of N+1.dev0 reports it with its commit; an upgrade to
    the other commit of N+1.dev0 crosses no version (no notes), and from there to the
    release crosses N+1 (its notes)."""
    atom, _ = generate(
        world.url, world.root / "dev", world.config, "--checkout", released.dev,
        CC="/nonexistent/cc",
    )  # fmt: skip
    assert reported_version(atom) == f"{DEV_N1}+{released.dev[:12]}"
    assert state(atom)["context"]["cookiecutter"]["_template_version"] == DEV_N1
    git(atom, "init", "--quiet", "--initial-branch=main")
    commit_all(atom, "The generated atom")
    status, out, err = script(atom, "apply", "--ref", released.dev_again)
    assert status == 0, out + err
    assert (
        f"Upgrading from atom-template {DEV_N1} ({released.dev[:12]}) to "
        f"{DEV_N1} ({released.dev_again[:12]})"
    ) in out
    assert "Upgrading notes" not in out
    assert rows(out) == {
        "Makefile": "M",
        f"{PACKAGE}/about.py": "M",
        ".cruft.json": "M",
    }  # and the commit
    assert reported_version(atom) == f"{DEV_N1}+{released.dev_again[:12]}"
    commit_all(atom, "Upgraded")
    status, out, err = script(atom, "apply")
    assert status == 0, out + err
    assert NOTES_N1 in out and out.count("Upgrading notes") == 1
    assert reported_version(atom) == VERSION_N1


def test_an_atom_from_before_cruft_upgrades(tmp_path: Path) -> None:
    """An atom generated when make upgrade was the home-made script: its first upgrade
    (`upgrade/upgrade.py apply`, its make upgrade's recipe) runs that old script, which
    brings the new one (and cruft in requirements-dev.txt); the next one runs on cruft."""
    repo = tmp_path / "atom-template"
    repo.mkdir()
    archive = subprocess.run(
        ["git", "archive", BEFORE_CRUFT], cwd=TEMPLATE, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x"], cwd=repo, input=archive, check=True)
    git(repo, "init", "--quiet", "--initial-branch=main")
    old = commit_all(repo, "atom-template before cruft")
    for path in repo.iterdir():
        if path.name != ".git":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    copy_template(repo)
    new = commit_all(repo, "atom-template on cruft")
    url, config = "git+" + repo.as_uri(), cookiecutter_config(tmp_path)
    atom, _ = generate(url, tmp_path / "atoms", config, "--checkout", old, CC="/nonexistent/cc")
    git(atom, "init", "--quiet", "--initial-branch=main")
    commit_all(atom, "The generated atom")
    status, out, err = script(atom, "apply", "--ref", new)
    assert status == 0, out + err
    assert "  updated      upgrade/upgrade.py" in out  # the old script's words
    fresh = repo / "{{cookiecutter.project_slug}}"
    assert (atom / "upgrade" / "upgrade.py").read_text() == (
        fresh / "upgrade" / "upgrade.py"
    ).read_text()
    assert "cruft==" in (atom / "requirements-dev.txt").read_text()
    assert state(atom)["commit"] == new
    commit_all(atom, "Upgraded to the template on cruft")
    status, out, err = script(atom, "check", "--ref", old)  # older: current
    assert status == 0, out + err
    # The old commit said 0.2.0 under an Unreleased section: a development version.
    here = f"at atom-template {template_version()} ({new[:12]})"
    assert f"{here}; {old} at 0.2.0.dev0 ({old[:12]})" in out
    makefile = fresh / "Makefile"
    makefile.write_text(makefile.read_text() + "# Tasks of the atom.\n")
    newer = commit_all(repo, "A comment in the Makefile")
    status, out, err = script(atom, "apply")
    assert status == 0, out + err
    assert rows(out) == {"Makefile": "M", f"{PACKAGE}/about.py": "M", ".cruft.json": "M"}
    assert state(atom)["commit"] == newer
    assert "Upgrading notes" not in out  # two commits of one unreleased version
