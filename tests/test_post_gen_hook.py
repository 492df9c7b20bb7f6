"""The post-gen hook: the project's key, the protector and demo model when it can, every
reason when it cannot, never a failure, and a few lines saying what it did and what to run
next, checked word for word in each case; then the atom's make setup and make model."""

import base64
import importlib.machinery
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import jinja2
import pytest

from scripts.atomctl import TEMPLATE

from .conftest import DEFAULT_ANSWERS, run

ANSWERS = {**DEFAULT_ANSWERS, "python_version": "3.11"}
SOURCE = TEMPLATE / "hooks" / "post_gen_project.py"
PYTHON = f"cookiecutter's Python ({sys.executable})"
OPENCV_5 = (
    "the OpenCV next to cookiecutter (5.0.0.20) has no Haar cascades: "
    "OpenCV 5 wheels no longer ship them (the atom pins 4.x)"
)


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
    assert hook.model_problems() == []


def test_missing_cython_is_named(hook: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python without Cython is named as the reason, with its path."""
    monkeypatch.setitem(sys.modules, "Cython", None)  # import Cython now fails
    assert hook.missing_modules(hook.BUILD_MODULES) == ["Cython"]
    assert hook.build_problems() == [f"cookiecutter's Python ({sys.executable}) has no Cython"]


def test_missing_compiler_is_named(hook: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """No C compiler (CC points nowhere) is named, and gcc is the package to install."""
    monkeypatch.setenv("CC", "/nonexistent/cc")
    assert hook.c_compiler() is None
    assert hook.build_problems() == ["there is no C compiler (/nonexistent/cc)"]
    assert hook.system_packages() == ["gcc"]


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
    assert hook.model_problems() == [OPENCV_5]


def test_missing_opencv_is_named(hook: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python without OpenCV is named as the reason the demo model was not made."""
    monkeypatch.setitem(sys.modules, "cv2", None)
    assert hook.model_problems() == [f"cookiecutter's Python ({sys.executable}) has no OpenCV"]


def test_a_failed_build_gives_its_last_error_line(hook: ModuleType, tmp_path: Path) -> None:
    """A build that really fails gives its last error line as the reason, not an exception."""
    (tmp_path / "setup.py").write_text("raise SystemExit('gcc: fatal error: boom')\n")
    assert hook.build_protector(tmp_path) == "the build failed: gcc: fatal error: boom"


# The hook's first lines when it records the template and writes a new key.
RECORDED = [
    "post-gen: .cruft.json written (template /src/atom-template, commit cccccccccccc)",
    "post-gen: secrets/model.key written (the atom's model key, mode 600; git and docker "
    "ignore it)",
]
NO_HEADERS = Path("/nonexistent/include/Python.h")
COMPILING = "post-gen: compiling the model protector (Cython, about 10 s)"
NOT_COMPILED = "post-gen: models/face.enc left to `make run`: the protector was not compiled"
NEXT_DONE = (
    "post-gen: next: `cd my-atom`, then `make run` or `make test` (whichever runs first makes "
    "the atom's .venv with its pinned packages, a minute or two)"
)
REST = "then `make run` or `make test` set up the rest: a .venv with the pinned packages"
NEXT_ALL = f"post-gen: next: `cd my-atom`, {REST}, the protector, models/face.enc"
NEXT_MODEL = f"post-gen: next: `cd my-atom`, {REST}, models/face.enc"
# Each case: what is missing next to cookiecutter, then the hook's lines after RECORDED.
CASES = {
    "all present": (
        (),
        [COMPILING, "post-gen: protector compiled, models/face.enc encrypted", NEXT_DONE],
    ),
    "no Cython": (
        ("Cython",),
        [f"post-gen: protector left to `make run`: {PYTHON} has no Cython", NOT_COMPILED, NEXT_ALL],
    ),
    "no compiler": (
        ("compiler",),
        [
            "post-gen: protector left to `make run`: there is no C compiler (/nonexistent/cc)",
            NOT_COMPILED,
            "post-gen: next: install gcc (Debian/Ubuntu: sudo apt-get install gcc), "
            f"`cd my-atom`, {REST}, the protector, models/face.enc",
        ],
    ),
    "no Python headers": (
        ("headers",),
        [
            "post-gen: protector left to `make run`: there are no Python headers "
            "(/nonexistent/include/Python.h)",
            NOT_COMPILED,
            "post-gen: next: install python3-dev (Debian/Ubuntu: sudo apt-get install "
            f"python3-dev), `cd my-atom`, {REST}, the protector, models/face.enc",
        ],
    ),
    "no cryptography": (
        ("cryptography",),
        [
            COMPILING,
            "post-gen: protector compiled",
            f"post-gen: models/face.enc left to `make run`: {PYTHON} has no cryptography",
            NEXT_MODEL,
        ],
    ),
    "no OpenCV": (
        ("cv2",),
        [
            COMPILING,
            "post-gen: protector compiled",
            f"post-gen: models/face.enc left to `make run`: {PYTHON} has no OpenCV",
            NEXT_MODEL,
        ],
    ),
    "OpenCV 5": (
        ("opencv5",),
        [
            COMPILING,
            "post-gen: protector compiled",
            f"post-gen: models/face.enc left to `make run`: {OPENCV_5}",
            NEXT_MODEL,
        ],
    ),
    "several missing": (
        ("Cython", "cryptography", "opencv5"),
        [
            f"post-gen: protector left to `make run`: {PYTHON} has no Cython",
            f"{NOT_COMPILED}; {PYTHON} has no cryptography; {OPENCV_5}",
            NEXT_ALL,
        ],
    ),
    "nothing present": (
        ("Cython", "setuptools", "compiler", "headers", "cryptography", "cv2"),
        [
            f"post-gen: protector left to `make run`: {PYTHON} has no Cython or setuptools; "
            "there is no C compiler (/nonexistent/cc); "
            "there are no Python headers (/nonexistent/include/Python.h)",
            f"{NOT_COMPILED}; {PYTHON} has no cryptography or OpenCV",
            "post-gen: next: install gcc python3-dev (Debian/Ubuntu: sudo apt-get install gcc "
            f"python3-dev), `cd my-atom`, {REST}, the protector, models/face.enc",
        ],
    ),
    "build failure": (
        ("build fails",),
        [
            COMPILING,
            "post-gen: protector left to `make run`: the build failed: gcc: fatal error: boom",
            NOT_COMPILED,
            NEXT_ALL,
        ],
    ),
}


def take_away(
    hook: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pieces: tuple[str, ...]
) -> None:
    """Make the hook find these pieces missing (modules, compiler, headers, OpenCV's cascades)."""
    for piece in pieces:
        if piece == "compiler":
            monkeypatch.setenv("CC", "/nonexistent/cc")
        elif piece == "headers":
            monkeypatch.setattr(hook, "headers_file", lambda: NO_HEADERS)
        elif piece == "opencv5":
            (tmp_path / "version.py").write_text('opencv_version = "5.0.0.20"\n')
            fake_opencv(monkeypatch, tmp_path)
        elif piece != "build fails":
            monkeypatch.setitem(sys.modules, piece, None)  # find_spec now says: not installed


@pytest.fixture
def project(hook: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """An empty atom folder as the hook sees it: its working folder, reached from the shell
    as ``my-atom``, the template recorded at a fixed commit, builds that succeed at once
    (they write what the real ones would) unless a test says otherwise."""
    shell = tmp_path / "shell"
    folder = shell / "my-atom"
    folder.mkdir(parents=True)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("PWD", str(shell))
    origin = {"template": "/src/atom-template", "commit": "c" * 40, "checkout": None}
    monkeypatch.setattr(
        hook, "provenance", lambda answers: {**origin, "directory": None, "note": None}
    )
    monkeypatch.setattr(hook, "run_python", fake_run_python(hook, None))
    yield folder


def fake_run_python(hook: ModuleType, failure: str | None) -> Callable[..., str | None]:
    """A stand-in for the hook's run_python: fails with ``failure``, or writes the file the
    real command makes (the compiled protector, the encrypted model) and succeeds."""

    def run_python(project: Path, *args: str) -> str | None:
        if failure:
            return failure
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        made = {
            hook.BUILD_COMMAND: project / "my_atom" / "protection" / f"model_protector{suffix}"
        }.get(args, project / hook.MODEL_FILE)
        made.parent.mkdir(parents=True, exist_ok=True)
        made.write_bytes(b"made")
        return None

    return run_python


def main_lines(hook: ModuleType, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Run the hook's main (it must succeed); the lines it showed."""
    assert hook.main() == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.splitlines()


@pytest.mark.parametrize("case", CASES)
def test_the_hook_says_what_it_did_and_what_is_next(
    case: str,
    hook: ModuleType,
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """In each case the hook names every missing piece, what it made, what it did not and
    why, and the next command with what it will set up, word for word; it never fails."""
    missing, expected = CASES[case]
    take_away(hook, monkeypatch, tmp_path, missing)
    if "build fails" in missing:
        monkeypatch.setattr(hook, "run_python", fake_run_python(hook, "gcc: fatal error: boom"))
    assert main_lines(hook, capsys) == RECORDED + expected
    assert (project / "secrets" / "model.key").is_file()
    assert (project / ".cruft.json").is_file()
    assert (project / "models" / "face.enc").is_file() == (case == "all present")


def test_a_key_kept_or_not_written_is_said(
    hook: ModuleType, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key already there is kept and said so; one that cannot be written is named, and
    only then is the key among what `make run` sets up."""
    (project / "secrets").mkdir()
    (project / "secrets" / "model.key").write_text("kept\n")
    lines = main_lines(hook, capsys)
    assert lines[1] == "post-gen: secrets/model.key kept (it was already there)"
    assert (project / "secrets" / "model.key").read_text() == "kept\n"
    assert "the key" not in lines[-1]
    shutil.rmtree(project / "secrets")
    (project / "models" / "face.enc").unlink()
    (project / "secrets").write_text("a file where the folder should be\n")
    lines = main_lines(hook, capsys)
    assert lines[1].startswith("post-gen: secrets/model.key not written ([Errno 17] File exists")
    assert lines[3:] == [
        "post-gen: protector compiled",
        "post-gen: models/face.enc left to `make run`: there is no secrets/model.key",
        f"post-gen: next: `cd my-atom`, {REST}, the key, models/face.enc",
    ]


def test_the_record_is_said_with_its_note_or_its_failure(
    hook: ModuleType,
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """.cruft.json's line names the template and commit, or says there is none and why
    (the note follows), or says it was not written and why."""
    note = "the template at /src/t is not a git checkout: make upgrade and cruft need ..."
    origin = {"template": "/src/t", "commit": None, "checkout": None, "directory": None}
    monkeypatch.setattr(hook, "provenance", lambda answers: {**origin, "note": note})
    assert main_lines(hook, capsys)[:2] == [
        "post-gen: .cruft.json written without a template commit",
        f"post-gen: .cruft.json: {note}",
    ]
    (project / ".cruft.json").unlink()
    (project / ".cruft.json").mkdir()
    assert main_lines(hook, capsys)[0] == (
        f"post-gen: .cruft.json not written ([Errno 21] Is a directory: "
        f"'{project / '.cruft.json'}'): make upgrade and cruft need it"
    )


def test_the_next_command_reaches_the_atom_from_the_shell(
    hook: ModuleType, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cd` names the atom's folder relative to the shell's, else its whole path, quoted."""
    monkeypatch.setenv("PWD", str(project.parent.parent))
    assert hook.shell_path(project) == "shell/my-atom"
    monkeypatch.setenv("PWD", "/elsewhere")
    assert hook.shell_path(project) == str(project)
    monkeypatch.delenv("PWD")
    assert hook.shell_path(Path("/out dir/my-atom")) == "'/out dir/my-atom'"


def test_a_render_to_compare_versions_builds_and_says_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ``_commit`` (cruft or make upgrade rendering a version) the hook records the
    commit and makes no key, protector or model, silently."""
    commit = "d" * 40
    path = tmp_path / "post_gen_commit.py"
    path.write_text(render({**ANSWERS, "_commit": commit, "_template": "/src/atom-template"}))
    spec = importlib.util.spec_from_file_location("post_gen_commit", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "run_python", lambda *args: pytest.fail(f"ran {args}"))
    project = tmp_path / "my-atom"
    (project / "my_atom").mkdir(parents=True)
    (project / "my_atom" / "about.py").write_text('TEMPLATE_COMMIT = ""\n')
    monkeypatch.chdir(project)
    assert main_lines(module, capsys) == []
    assert json.loads((project / ".cruft.json").read_text())["commit"] == commit
    assert (project / "my_atom" / "about.py").read_text() == f'TEMPLATE_COMMIT = "{commit}"\n'
    assert not (project / "secrets").exists() and not (project / "models").exists()


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
    assert "post-gen: protector left to `make run`: there is no C compiler (/nonexistent/cc)\n" in (
        result.stderr
    )
    assert "post-gen: next: install gcc (Debian/Ubuntu: sudo apt-get install gcc), `cd " in (
        result.stderr
    )
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
