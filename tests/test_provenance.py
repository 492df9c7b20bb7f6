"""Every atom knows where it came from: the post-gen hook's record (.cruft.json, about.py),
its table of option files, the one list of the owner's files; then real generations from
a relative path and from a folder that is not a git checkout (the upgrade lane)."""

import importlib.util
import json
import os
import re
import runpy
import sys
from pathlib import Path
from types import ModuleType

import jinja2
import pytest
from cookiecutter.main import cookiecutter

from scripts.atomctl import TEMPLATE, hook_scripts_contained

from .conftest import DEFAULT_ANSWERS, run
from .throwaway import (
    cookiecutter_config,
    copy_template,
    generate,
    git,
    new_repository,
    template_version,
)

HOOK = TEMPLATE / "hooks" / "post_gen_project.py"
CHOICES = json.loads((TEMPLATE / "cookiecutter.json").read_text())["ci"]


def load_hook(folder: Path, answers: dict) -> ModuleType:
    """The post-gen hook rendered with ``answers``, imported as a module."""
    path = folder / "post_gen_project.py"
    path.write_text(jinja2.Environment().from_string(HOOK.read_text()).render(cookiecutter=answers))
    spec = importlib.util.spec_from_file_location(f"post_gen_{folder.name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def hook(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The hook rendered with the default answers."""
    return load_hook(tmp_path_factory.mktemp("hook"), DEFAULT_ANSWERS)


def fake_template(folder: Path, tag: str | None = "v9.9.9") -> Path:
    """A git repository that looks like a template (cookiecutter.json, hooks/), committed."""
    (folder / "hooks").mkdir(parents=True)
    (folder / "hooks" / "post_gen_project.py").write_text("")
    (folder / "cookiecutter.json").write_text('{"_template_version": "9.9.9"}\n')
    (folder / "README.md").write_text("the template\n")
    git(folder, "init", "--quiet")
    git(folder, "add", "--all")
    git(folder, "commit", "--quiet", "-m", "template")
    if tag:
        git(folder, "tag", tag)
    return folder


@pytest.mark.parametrize("choice", CHOICES)
def test_only_the_chosen_ci_files_stay(hook: ModuleType, tmp_path: Path, choice: str) -> None:
    """The option table removes the files of every other choice, and covers every choice."""
    assert set(hook.OPTION_FILES["ci"]) == set(CHOICES)
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    (tmp_path / ".gitlab-ci.yml").write_text("test: {}\n")
    removed = hook.remove_unchosen(tmp_path, {"ci": choice})
    kept = {
        ".github": (tmp_path / ".github").exists(),
        ".gitlab-ci.yml": (tmp_path / ".gitlab-ci.yml").exists(),
    }
    wanted = {".github": choice == "github", ".gitlab-ci.yml": choice == "gitlab"}
    assert kept == wanted
    assert sorted(removed) == sorted(name for name, stays in wanted.items() if not stays)


def test_a_git_checkout_is_recorded(hook: ModuleType, tmp_path: Path) -> None:
    """A local checkout: its absolute path, HEAD, the tag on it, no note."""
    repo = fake_template(tmp_path / "atom-template")
    origin = hook.provenance({"_repo_dir": str(repo), "_template": str(repo)})
    assert origin == {
        "template": str(repo.resolve()),
        "commit": git(repo, "rev-parse", "HEAD"),
        "checkout": "v9.9.9",
        "directory": None,
        "note": None,
    }


def test_uncommitted_changes_are_noted(hook: ModuleType, tmp_path: Path) -> None:
    """A change to a file that reaches atoms is noted; one to the template's own docs is not."""
    repo = fake_template(tmp_path / "atom-template", tag=None)
    (repo / "README.md").write_text("edited\n")
    answers = {"_repo_dir": str(repo), "_template": str(repo)}
    assert hook.provenance(answers)["note"] is None
    (repo / "cookiecutter.json").write_text('{"_template_version": "9.9.10"}\n')
    origin = hook.provenance(answers)
    assert origin["checkout"] is None
    assert origin["note"] == (
        "the template checkout had uncommitted changes (cookiecutter.json): "
        f"this atom may differ from commit {origin['commit'][:12]}"
    )


def test_a_template_in_a_subfolder(hook: ModuleType, tmp_path: Path) -> None:
    """A template in a folder of its repository: recorded as cruft's ``directory``, and its
    uncommitted changes (not the repository's other files) noted."""
    repo = tmp_path / "repo"
    template = repo / "templates" / "atom"
    (template / "hooks").mkdir(parents=True)
    (template / "hooks" / "post_gen_project.py").write_text("")
    (template / "cookiecutter.json").write_text("{}\n")
    (repo / "README.md").write_text("the repository\n")
    git(repo, "init", "--quiet")
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", "templates")
    (repo / "README.md").write_text("edited\n")  # outside the template: not noted
    answers = {"_repo_dir": str(template), "_template": str(template)}
    origin = hook.provenance(answers)
    assert (origin["template"], origin["directory"]) == (str(repo.resolve()), "templates/atom")
    assert origin["note"] is None
    (template / "hooks" / "post_gen_project.py").write_text("# edited\n")
    assert "(hooks/post_gen_project.py)" in hook.provenance(answers)["note"]


def test_a_url_records_the_clones_origin(hook: ModuleType, tmp_path: Path) -> None:
    """gh:org/atom-template: cookiecutter's clone is recorded by its origin URL."""
    clone = fake_template(tmp_path / "cookiecutters" / "atom-template")
    git(clone, "remote", "add", "origin", "https://github.com/org/atom-template.git")
    origin = hook.provenance({"_repo_dir": str(clone), "_template": "gh:org/atom-template"})
    assert origin["template"] == "https://github.com/org/atom-template.git"
    assert origin["commit"] == git(clone, "rev-parse", "HEAD")


def test_a_relative_path_is_found_where_cookiecutter_works(
    hook: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative path is resolved in cookiecutter's working folder (the template's, while
    its hooks run), read from /proc; a folder of another name is not taken for it."""
    repo = fake_template(tmp_path / "atom-template")
    monkeypatch.chdir(repo)
    monkeypatch.setattr(os, "getppid", os.getpid)  # this process plays cookiecutter
    monkeypatch.setenv("PWD", "/nonexistent")
    assert hook.template_folder("atom-template") == repo.resolve()
    assert hook.template_folder("../elsewhere/other-template") is None


def test_a_folder_that_is_not_git_gets_no_commit(hook: ModuleType, tmp_path: Path) -> None:
    """No invented commit: the record says why there is none."""
    folder = tmp_path / "plain"
    (folder / "hooks").mkdir(parents=True)
    (folder / "cookiecutter.json").write_text("{}")
    origin = hook.provenance({"_repo_dir": str(folder), "_template": str(folder)})
    assert origin["commit"] is None and origin["template"] == str(folder.resolve())
    assert origin["note"].startswith(f"the template at {folder.resolve()} is not a git checkout")


def test_the_record_is_cruft_s_format(hook: ModuleType, tmp_path: Path) -> None:
    """.cruft.json: cruft's keys and layout, the answers sorted, no machine-specific entries,
    and the commit written into about.py."""
    package = tmp_path / "my_atom"
    package.mkdir()
    (package / "about.py").write_text('TEMPLATE_VERSION = "0.2.0"\nTEMPLATE_COMMIT = ""\n')
    answers = {
        **DEFAULT_ANSWERS,
        "_template": "gh:org/atom-template",
        "_output_dir": "/home/me",
        "_repo_dir": "/home/me/.cookiecutters/atom-template",
        "_checkout": None,
    }
    origin = {
        "template": "https://x/t.git",
        "commit": "c" * 40,
        "checkout": "v0.2.0",
        "directory": None,
        "note": None,
    }
    hook.write_state(tmp_path, answers, origin)
    hook.record_commit(tmp_path, "my_atom", origin["commit"])
    text = (tmp_path / ".cruft.json").read_text()
    state = json.loads(text)
    assert text == json.dumps(state, ensure_ascii=False, indent=2, separators=(",", ": ")) + "\n"
    assert list(state) == ["template", "commit", "checkout", "context", "directory", "skip"]
    context = state["context"]["cookiecutter"]
    assert list(context) == sorted(context)
    assert context == {
        **DEFAULT_ANSWERS,
        "_template": "https://x/t.git",
        "_commit": "c" * 40,
    }
    assert state["skip"] == [".cruft.json"]
    assert (package / "about.py").read_text().endswith(f'TEMPLATE_COMMIT = "{"c" * 40}"\n')


def test_a_rendering_for_an_upgrade_builds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the commit in its context (cruft, make upgrade), the hook records it, says nothing,
    and makes no key, protector or model."""
    answers = {**DEFAULT_ANSWERS, "_template": "https://x/t.git", "_commit": "d" * 40}
    rendering = load_hook(tmp_path, answers)
    project = tmp_path / "my-atom"
    project.mkdir()
    monkeypatch.chdir(project)
    assert rendering.main() == 0
    assert capsys.readouterr().err == ""
    assert [path.name for path in project.iterdir()] == [".cruft.json"]
    assert json.loads((project / ".cruft.json").read_text())["commit"] == "d" * 40


def test_the_readmes_name_every_file_that_is_yours(tmp_path: Path) -> None:
    """The one list of the owner's files ([tool.cruft] skip) is what both READMEs name."""
    with hook_scripts_contained():
        atom = Path(
            cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(tmp_path), accept_hooks=False)
        )
    skip = re.search(
        r"^\[tool\.cruft\]\n(?:#.*\n)*skip = \[\n(.*?)^\]",
        (atom / "pyproject.toml").read_text(),
        re.M | re.S,
    )
    assert skip, "pyproject.toml has no [tool.cruft] skip list"
    yours = re.findall(r'^    "([^"]+)",$', skip.group(1), re.M)
    assert "my_atom/api/route.py" in yours
    for readme in ("README.md", "README.zh-CN.md"):
        text = (atom / readme).read_text()
        missing = [path for path in yours if f"`{path}`" not in text]
        assert missing == [], f"{readme} does not name {missing}"


# ------------------------------------------------------------------ real generations (slow)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throw-away git repository of the template, released at its version."""
    return new_repository(tmp_path_factory.mktemp("provenance") / "atom-template")


@pytest.mark.upgrade
def test_generation_from_a_relative_path(repository: Path) -> None:
    """cookiecutter atom-template (a relative path) records the absolute checkout and tag."""
    output = repository.parent / "from-relative"
    config = cookiecutter_config(repository.parent)
    atom, _ = generate(repository.name, output, config, cwd=repository.parent, CC="/nonexistent/cc")
    state = json.loads((atom / ".cruft.json").read_text())
    assert state["template"] == str(repository.resolve())
    assert state["commit"] == git(repository, "rev-parse", "HEAD")
    assert state["checkout"] == f"v{template_version(repository)}"
    assert "note" not in state
    about = runpy.run_path(str(atom / "my_atom" / "about.py"))
    assert about["TEMPLATE_VERSION"] == template_version(repository)  # a release, as it is


@pytest.mark.upgrade
def test_generation_from_a_folder_without_git(tmp_path: Path) -> None:
    """A copy that is not a git checkout: no commit recorded, the hook says why, and the
    atom's upgrade commands refuse with that reason."""
    plain = copy_template(tmp_path / "atom-template")
    atom, stderr = generate(
        str(plain), tmp_path / "atoms", cookiecutter_config(tmp_path), CC="/nonexistent/cc"
    )
    state = json.loads((atom / ".cruft.json").read_text())
    assert state["commit"] is None and state["template"] == str(plain)
    assert state["note"].startswith(f"the template at {plain} is not a git checkout")
    assert f"post-gen: .cruft.json: {state['note']}\n" in stderr
    assert 'TEMPLATE_COMMIT = ""\n' in (atom / "my_atom" / "about.py").read_text()
    about = runpy.run_path(str(atom / "my_atom" / "about.py"))
    assert about["TEMPLATE_VERSION"] == template_version()  # no commit to name
    git(atom, "init", "--quiet")
    git(atom, "add", "--all")
    git(atom, "commit", "--quiet", "-m", "generated")
    for command in ("check", "apply"):
        result = run([sys.executable, "upgrade/upgrade.py", command], cwd=atom, timeout=120)
        assert result.returncode == 2
        assert ".cruft.json records no template commit (the template at" in result.stderr
