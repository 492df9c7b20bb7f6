"""The upgrade lane: an atom over its lifetime, as its owner lives it.

A throw-away git repository of the template (this working tree, committed and released as
version N), an atom generated from its URL with plain cookiecutter and put in git, the
edits an owner makes (the example route changed, a second route module with its own model
the README's way, a setting in .env), then version N+1 of the template: a runtime file
changed (the ``Images`` dependency renamed ``ImageInputs``, with a migration for the route
modules that import it), one added, one removed, a new dependency. The tests run in file
order, as the owner lives it: the atom is current, then behind; cruft's check, diff and
update work on it; ``make upgrade`` brings N+1 in, equal to a fresh generation at N+1 in
every file of the template's, the owner's edits intact, the atom's lint and quick tests
passing; then, from the same starting point with a dependency the owner added too, a real
conflict, reported as one.
"""

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import run
from .test_add_model import EYES_CASCADE, add_route_module
from .throwaway import (
    commit_all,
    cookiecutter_config,
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
VERSION_N = template_version()
MAJOR, MINOR, _ = VERSION_N.split(".")
VERSION_N1 = f"{MAJOR}.{int(MINOR) + 1}.0"
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
    "tests/data/detect_before_router.py",
    "{{cookiecutter.package_name}}/lib/load_image.py",
    "README.md",
    "README.zh-CN.md",
)
ADDED = f"{PACKAGE}/lib/clock.py"
REMOVED = "deploy/k8s/hpa.yaml"


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


def make(atom: Path, *args: str) -> tuple[int, str, str]:
    """A make target of the atom; exit status, stdout and stderr."""
    result = run([*MAKE, *args], cwd=atom, timeout=600, env=environment())
    return result.returncode, result.stdout, result.stderr


def cruft(atom: Path, *args: str) -> tuple[int, str, str]:
    """A cruft command in the atom; exit status, stdout and stderr."""
    result = run([sys.executable, "-m", "cruft", *args], cwd=atom, timeout=300, env=environment())
    return result.returncode, result.stdout, result.stderr


def rows(output: str) -> dict[str, str]:
    """make upgrade's file lines: {path: what happened}."""
    found = {}
    for line in output.splitlines():
        match = re.match(
            r"^  (updated|added|removed|merged|kept|CONFLICT|not restored) +(\S+)", line
        )
        if match:
            found[match.group(2)] = match.group(1)
    return found


def owner_edits(atom: Path) -> None:
    """What an owner does first: the example route changed, a second route module with its own
    encrypted model (the README's way), a setting in .env (which git ignores)."""
    detect = atom / PACKAGE / "api" / "interface" / "detect.py"
    text = detect.read_text()
    assert text.count('summary="Detect faces"') == 1
    detect.write_text(text.replace('summary="Detect faces"', USER_SUMMARY))
    add_route_module(atom, PACKAGE)
    cascade = ok([sys.executable, "-c", "import cv2; print(cv2.data.haarcascades)"], atom).strip()
    assert make(atom, "model", "NAME=eyes", f"SRC={cascade}/{EYES_CASCADE}")[0] == 0
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
    """The template's next version: a renamed dependency with its migration, a file added,
    one removed, a new dependency, the version raised, its CHANGELOG section."""
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
    cookiecutter_json.write_text(
        cookiecutter_json.read_text().replace(f'"{VERSION_N}"', f'"{VERSION_N1}"')
    )
    changelog = repo / "CHANGELOG.md"
    section = (
        "## [Unreleased]\n\n### Changed\n\n- The `Images` dependency is `ImageInputs`.\n\n"
        "### Upgrading\n\n- Nothing by hand: make upgrade renames `Images` in your "
        "route modules (a migration).\n\n"
    )
    text = changelog.read_text()
    changelog.write_text(text.replace(f"## [{VERSION_N}]", section + f"## [{VERSION_N}]", 1))


@pytest.fixture(scope="module")
def released(world: World) -> str:
    """Version N+1 committed and released (tag vN+1) in the throw-away repository."""
    version_n1(world.repo)
    commit_all(world.repo, f"atom-template {VERSION_N1}")
    assert release(world.repo) == f"v{VERSION_N1}"
    return git(world.repo, "rev-parse", "HEAD")  # the release's commit


def state(atom: Path) -> dict:
    """The atom's .cruft.json."""
    return json.loads((atom / ".cruft.json").read_text())


def test_generation_records_the_template(world: World) -> None:
    """Plain cookiecutter from a git URL writes .cruft.json in cruft's format, and about.py
    carries the same commit."""
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
    assert f'TEMPLATE_VERSION = "{VERSION_N}"\n' in about


def test_a_current_atom_is_current(world: World) -> None:
    """Before N+1: upgrade-check and cruft check say current, cruft diff shows nothing (the
    owner's files are skipped), make upgrade has nothing to bring."""
    status, out, err = make(world.atom, "upgrade-check")
    assert status == 0 and "upgrade-check: current" in out, out + err
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


def test_behind_after_a_release(world: World, released: str) -> None:
    """After N+1: upgrade-check's script exits 1 naming both versions (make reports it as
    its own status 2, "Error 1"); cruft check exits 1 too."""
    status, out, err = make(world.atom, "upgrade-check")
    assert status == 2 and "upgrade-check] Error 1" in err, out + err
    assert f"behind: this atom is at atom-template {VERSION_N} ({world.commit_n[:12]})" in out
    assert f"the template is at {VERSION_N1} ({released[:12]}" in out
    script = run([sys.executable, "upgrade/upgrade.py", "check"], cwd=world.atom, timeout=120)
    assert script.returncode == 1, script.stdout + script.stderr
    assert cruft(world.atom, "check")[0] == 1


def test_cruft_update_works_on_the_atom(world: World, released: str) -> None:
    """cruft update brings N+1's files into a clone of the atom (skipping the owner's files,
    running no migration), records the commit; cruft diff then shows nothing."""
    clone = world.root / "cruft-atom"
    git(world.root, "clone", "--quiet", str(world.atom), str(clone))
    status, out, err = cruft(clone, "update", "--skip-apply-ask")
    assert status == 0, out + err
    assert state(clone)["commit"] == released
    assert "ImageInputs = Annotated" in (clone / PACKAGE / "api" / "dependencies.py").read_text()
    assert (clone / ADDED).is_file() and not (clone / REMOVED).exists()
    assert NEW_DEPENDENCY in (clone / "requirements.txt").read_text()
    detect = (clone / PACKAGE / "api" / "interface" / "detect.py").read_text()
    assert USER_SUMMARY in detect and "Images," in detect  # skipped: the owner's
    assert list(clone.rglob("*.rej")) == []
    status, out, err = cruft(clone, "diff", "--exit-code")
    assert (status, out) == (0, ""), out + err


def test_make_upgrade_brings_the_new_version(world: World, released: str) -> None:
    """make upgrade: runtime files updated, added, removed; the owner's files kept and the
    template's change to them shown; the migration run; the notes printed; commit recorded."""
    status, out, err = make(world.atom, "upgrade")
    assert status == 0, out + err
    files = rows(out)
    assert files[f"{PACKAGE}/api/dependencies.py"] == "updated"
    assert files[ADDED] == "added" and files[REMOVED] == "removed"
    assert files["requirements.txt"] == "updated" and files["pyproject.toml"] == "updated"
    assert files[f"{PACKAGE}/api/interface/detect.py"] == "kept"
    assert "CONFLICT" not in files.values()
    assert "-    Images,\n" in out  # the change shown (detect.py imports from <package>.api)
    assert f"  migration    {VERSION_N1}: The Images dependency is called ImageInputs" in out
    interface = world.atom / PACKAGE / "api" / "interface"
    for name in ("detect.py", "eyes.py"):
        assert f"               {PACKAGE}/api/interface/{name}" in out
        assert not re.search(r"\bImages\b", (interface / name).read_text())
    assert f"Upgrading notes of atom-template {VERSION_N1}" in out
    assert USER_SUMMARY in (interface / "detect.py").read_text()
    assert '"/eyes"' in (interface / "eyes.py").read_text()
    assert '    "eyes",\n' in (world.atom / PACKAGE / "api" / "route.py").read_text()
    assert git(world.atom, "diff", "--quiet", world.owner_commit, "--", "models") == ""
    assert (world.atom / ".env").read_text() == USER_ENV
    recorded = state(world.atom)
    assert (recorded["commit"], recorded["checkout"]) == (released, f"v{VERSION_N1}")
    assert list(world.atom.rglob("*.rej")) + list(world.atom.rglob("*.orig")) == []
    status, out, err = make(world.atom, "upgrade-check")
    assert status == 0 and "current" in out, out + err
    commit_all(world.atom, f"Upgrade to atom-template {VERSION_N1}")


def test_the_runtime_equals_a_fresh_generation(world: World, released: str) -> None:
    """Every file of the template's in the upgraded atom is the one a fresh generation at
    N+1 has; the atom holds no other file but the owner's own."""
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


def test_the_upgraded_atom_lints_and_passes_its_tests(world: World, released: str) -> None:
    """make lint (ruff, mypy) is clean and the atom's quick suite (-m "not slow") passes."""
    status, out, err = make(world.atom, "lint")
    assert status == 0, out[-3000:] + err[-3000:]
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow"],
        cwd=world.atom,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


def test_a_real_conflict_is_reported(world: World, released: str) -> None:
    """From the owner's commit again, with a dependency of their own at the end of
    requirements.txt (where N+1 adds one) and their own skip entry: make upgrade exits 1,
    lists the conflict, leaves git's markers and an unmerged index entry (no .rej), merges
    pyproject.toml cleanly and keeps a removed file the owner had changed."""
    atom = world.atom
    git(atom, "reset", "--quiet", "--hard", world.owner_commit)
    git(atom, "clean", "--quiet", "-fd")
    requirements = atom / "requirements.txt"
    requirements.write_text(requirements.read_text() + "onnxruntime==1.23.2\n")
    pyproject = atom / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(
        text.replace('    "models",\n]', '    "models",\n    "deploy/k8s/configmap.yaml",\n]')
    )
    hpa = atom / REMOVED
    hpa.write_text(hpa.read_text().replace("maxReplicas: 10", "maxReplicas: 4"))
    commit_all(atom, "My dependency, my configmap, fewer replicas")
    status, out, err = make(atom, "upgrade", f"REF=v{VERSION_N1}")
    assert status == 2 and "upgrade] Error 1" in err, out + err  # the script's 1: conflicts
    files = rows(out)
    assert files["requirements.txt"] == "CONFLICT"
    assert files["pyproject.toml"] == "merged" and files[REMOVED] == "kept"
    assert "CONFLICTS in 1 file(s)" in out and "\n  requirements.txt\n" in out
    merged = requirements.read_text()
    assert re.search(
        r"^<<<<<<< yours\nonnxruntime==1\.23\.2\n=======\n"
        + re.escape(NEW_DEPENDENCY)
        + rf"\n>>>>>>> template {re.escape(VERSION_N1)}\n",
        merged,
        re.M,
    ), merged
    assert git(atom, "diff", "--name-only", "--diff-filter=U") == "requirements.txt"
    assert list(atom.rglob("*.rej")) + list(atom.rglob("*.orig")) == []
    both = pyproject.read_text()
    assert '"deploy/k8s/configmap.yaml"' in both and f'"{NEW_DEPENDENCY}"' in both
    assert "maxReplicas: 4" in hpa.read_text()
    assert "ImageInputs = Annotated" in (atom / PACKAGE / "api" / "dependencies.py").read_text()
    assert state(atom)["commit"] == released
    git(atom, "checkout", "--theirs", "--", "requirements.txt")
    theirs = requirements.read_text()
    assert NEW_DEPENDENCY in theirs and "onnxruntime" not in theirs
