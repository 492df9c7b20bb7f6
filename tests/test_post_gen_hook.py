"""The post-gen hook: the project's key, the protector and demo model when it can, the real
reason when it cannot, and never a failure; then the atom's make setup and make model."""

import base64
import importlib.machinery
import importlib.util
import json
import os
import stat
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import jinja2
import pytest

from scripts.atomctl import TEMPLATE

from .conftest import DEFAULT_ANSWERS, run

ANSWERS = {**DEFAULT_ANSWERS, "python_version": "3.11"}
SOURCE = TEMPLATE / "hooks" / "post_gen_project.py"


def render(answers: dict[str, str]) -> str:
    """The hook as cookiecutter renders it."""
    return jinja2.Environment().from_string(SOURCE.read_text()).render(cookiecutter=answers)


@pytest.fixture(scope="module")
def hook(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The rendered post-gen hook, imported as a module."""
    path = tmp_path_factory.mktemp("hook") / "post_gen_project.py"
    path.write_text(render(ANSWERS))
    spec = importlib.util.spec_from_file_location("post_gen_project", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_write_key_makes_a_private_key_once(hook: ModuleType, tmp_path: Path) -> None:
    """The key is 32 random bytes as base64, mode 600 in a 700 folder; a second run keeps it."""
    path = hook.write_key(tmp_path)
    assert path == tmp_path / "secrets" / "model.key"
    assert len(base64.b64decode(path.read_text().strip(), validate=True)) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    first = path.read_text()
    hook.write_key(tmp_path)
    assert path.read_text() == first


def test_tools_found_here(hook: ModuleType) -> None:
    """On this machine the build has everything, and OpenCV's cascade is found."""
    assert hook.build_problems() == []
    cascade = hook.find_cascade()
    assert cascade is not None and cascade.name == hook.CASCADE and cascade.is_file()
    assert hook.cascade_problem() is None


def test_missing_cython_is_named(hook: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python without Cython is named as the reason, with its path."""
    monkeypatch.setitem(sys.modules, "Cython", None)  # import Cython now fails
    assert hook.missing_modules(hook.BUILD_MODULES) == ["Cython"]
    assert hook.build_problems() == [f"cookiecutter's Python ({sys.executable}) has no Cython"]


def test_missing_compiler_is_named(hook: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """No C compiler (CC points nowhere) is said with the package to install."""
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert hook.c_compiler() is None
    assert hook.build_problems() == ["there is no C compiler (Debian/Ubuntu: apt-get install gcc)"]


def fake_opencv(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make ``cv2`` resolve to ``folder`` (as find_spec sees it) without importing anything."""
    spec = importlib.machinery.ModuleSpec("cv2", None, is_package=True)
    spec.submodule_search_locations = [str(folder)]
    module = ModuleType("cv2")
    module.__spec__ = spec
    monkeypatch.setitem(sys.modules, "cv2", module)


def test_opencv_5_without_cascades_is_named(
    hook: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An OpenCV whose wheel has no Haar cascades is named as such, with its version."""
    (tmp_path / "version.py").write_text('opencv_version = "5.0.0.20"\ncontrib = False\n')
    fake_opencv(monkeypatch, tmp_path)
    assert hook.find_cascade() is None
    assert hook.cascade_problem() == (
        "the OpenCV next to cookiecutter (5.0.0.20) has no Haar cascades: "
        "OpenCV 5 wheels no longer ship them (the atom pins 4.x)"
    )


def test_missing_opencv_is_named(hook: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python without OpenCV is named as the reason the demo model was not made."""
    monkeypatch.setitem(sys.modules, "cv2", None)
    assert hook.cascade_problem() == f"cookiecutter's Python ({sys.executable}) has no OpenCV"


def test_main_without_cython_succeeds_and_points_to_make(
    hook: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without Cython the hook still exits 0, makes the key, and points to make run/test."""
    monkeypatch.setitem(sys.modules, "Cython", None)
    project = tmp_path / "my-atom"
    project.mkdir()
    monkeypatch.chdir(project)
    assert hook.main() == 0
    assert capsys.readouterr().err.splitlines() == [
        "post-gen: .cruft.json: the template's folder ('') was not found: make upgrade and "
        "cruft need the template's git source; generate the atom from a git checkout or URL "
        "of the template",  # this test renders the hook without cookiecutter's context
        "post-gen: the model protector was not compiled here: "
        f"cookiecutter's Python ({sys.executable}) has no Cython",
        "post-gen: `cd my-atom`, then `make run` or `make test` set up the rest "
        "(a .venv with the pinned packages, the protector, the key, the demo model)",
    ]
    assert (project / "secrets" / "model.key").is_file()
    assert not list(project.rglob("*.so"))


def test_failed_build_is_reported_not_raised(hook: ModuleType, tmp_path: Path) -> None:
    """A build that fails gives its last error line, not an exception."""
    (tmp_path / "setup.py").write_text("raise SystemExit('gcc: fatal error: boom')\n")
    todo = hook.finish(tmp_path, "my_atom")
    assert todo == ["the model protector did not compile here: gcc: fatal error: boom"]


def test_answers_are_read_as_json() -> None:
    """Quotes, backslashes and newlines in the answers cannot break the rendered hook."""
    hostile = {**ANSWERS, "project_name": 'a "q" \\ \'s\' """ \n end'}
    line = next(line for line in render(hostile).splitlines() if "json.loads" in line)
    literal = line.split("json.loads(", 1)[1].rsplit(")", 1)[0]
    assert json.loads(eval(literal)) == hostile  # the literal the hook evaluates


def decrypt_head(project: Path, model: str, model_id: str) -> str:
    """The first bytes of an encrypted model of the project, decrypted with its key."""
    check = (
        "import sys; from my_atom.protection.model_protector import ModelProtector as P; "
        "p = P.from_key_file('secrets/model.key'); "
        "print(p.decrypt(sys.argv[1], sys.argv[2])[:5].decode())"
    )
    opened = subprocess.run(
        [sys.executable, "-c", check, model, model_id],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert opened.returncode == 0, opened.stderr
    return opened.stdout.strip()


def test_generation_without_a_compiler_then_make(tmp_path: Path) -> None:
    """cookiecutter succeeds without a C compiler; `make setup` and `make model` finish later."""
    env = {**os.environ, "CC": "/nonexistent/cc"}
    command = [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(tmp_path)]
    result = run([*command, str(TEMPLATE)], cwd=tmp_path, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert "there is no C compiler (Debian/Ubuntu: apt-get install gcc)" in result.stderr
    assert "then `make run` or `make test` set up the rest" in result.stderr
    project = tmp_path / "my-atom"
    ext_suffix = sysconfig.get_config_var("EXT_SUFFIX")
    module = project / "my_atom" / "protection" / f"model_protector{ext_suffix}"
    assert not module.exists() and not (project / "models" / "face.enc").exists()
    assert (project / "secrets" / "model.key").is_file()
    python = f"PYTHON={sys.executable}"  # this venv already holds the pinned packages
    broken = run(["make", "setup", python], cwd=project, env=env)
    assert broken.returncode != 0
    assert "[setup] error: no C compiler (/nonexistent/cc)" in broken.stderr
    assert "sudo apt-get install gcc" in broken.stderr
    make = run(["make", "setup", python], cwd=project)
    assert make.returncode == 0, make.stdout + make.stderr
    assert module.is_file()
    assert decrypt_head(project, "models/face.enc", "face") == "<?xml"
    (tmp_path / "plain.bin").write_bytes(b"hello, model")
    other = run(["make", "model", python, "NAME=other", f"SRC={tmp_path / 'plain.bin'}"], project)
    assert other.returncode == 0, other.stdout + other.stderr
    assert decrypt_head(project, "models/other.enc", "other") == "hello"
    again = run(["make", "setup", python], cwd=project)
    assert again.returncode == 0 and again.stderr == "", again.stderr  # nothing left to do
