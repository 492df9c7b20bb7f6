"""The post-gen hook: the project's key, the compiled protector, the demo model, never a failure."""

import base64
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


def test_missing_cython_is_named(hook: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python without Cython gets 'pip install Cython'."""
    monkeypatch.setitem(sys.modules, "Cython", None)  # import Cython now fails
    assert hook.missing_modules(hook.BUILD_MODULES) == ["Cython"]
    assert hook.build_problems() == ["pip install Cython"]


def test_missing_compiler_is_named(hook: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """No C compiler (CC points nowhere) is said with the package to install."""
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert hook.c_compiler() is None
    assert hook.build_problems() == ["a C compiler (Debian/Ubuntu: apt-get install gcc)"]


def test_main_without_cython_succeeds_and_says_what_to_do(
    hook: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without Cython the hook still exits 0, makes the key, and prints what to install."""
    monkeypatch.setitem(sys.modules, "Cython", None)
    monkeypatch.chdir(tmp_path)
    assert hook.main() == 0
    err = capsys.readouterr().err
    assert "post-gen: the model protector was not compiled: it needs pip install Cython" in err
    assert "make protector model" in err
    assert (tmp_path / "secrets" / "model.key").is_file()
    assert not list(tmp_path.rglob("*.so"))


def test_failed_build_is_reported_not_raised(hook: ModuleType, tmp_path: Path) -> None:
    """A build command that fails gives its last error line, and the make target to run."""
    (tmp_path / "build_protector.py").write_text("raise SystemExit('gcc: fatal error: boom')\n")
    todo = hook.finish(tmp_path, "my_atom")
    assert todo == [
        "the model protector did not compile: gcc: fatal error: boom",
        "then: make protector model",
    ]


def test_answers_are_read_as_json() -> None:
    """Quotes, backslashes and newlines in the answers cannot break the rendered hook."""
    hostile = {**ANSWERS, "project_name": 'a "q" \\ \'s\' """ \n end'}
    line = next(line for line in render(hostile).splitlines() if "json.loads" in line)
    literal = line.split("json.loads(", 1)[1].rsplit(")", 1)[0]
    assert json.loads(eval(literal)) == hostile  # the literal the hook evaluates


def test_generation_without_a_compiler_then_make(tmp_path: Path) -> None:
    """cookiecutter succeeds without a C compiler; `make protector model` finishes later."""
    env = {**os.environ, "CC": "/nonexistent/cc"}
    command = [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(tmp_path)]
    result = run([*command, str(TEMPLATE)], cwd=tmp_path, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert "it needs a C compiler (Debian/Ubuntu: apt-get install gcc)" in result.stderr
    assert "make protector model" in result.stderr
    project = tmp_path / "my-atom"
    ext_suffix = sysconfig.get_config_var("EXT_SUFFIX")
    module = project / "my_atom" / "dependency" / f"model_protector{ext_suffix}"
    assert not module.exists() and not (project / "models" / "face.enc").exists()
    assert (project / "secrets" / "model.key").is_file()
    make = run(["make", "protector", "model", f"PYTHON={sys.executable}"], cwd=project)
    assert make.returncode == 0, make.stdout + make.stderr
    assert module.is_file()
    check = (
        "from my_atom.dependency.model_protector import ModelProtector as P; "
        "p = P.from_key_file('secrets/model.key'); "
        "print(p.decrypt('models/face.enc', 'face')[:5].decode())"
    )
    opened = subprocess.run(
        [sys.executable, "-c", check], cwd=project, capture_output=True, text=True, timeout=60
    )
    assert opened.stdout.strip() == "<?xml", opened.stderr
