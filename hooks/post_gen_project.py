"""Finish the generated atom: its own model key, then the compiled protector and the demo
model when cookiecutter's Python can make them.

Runs in the new project's folder with the Python that runs cookiecutter, which may have no
Cython, no OpenCV, or an OpenCV without the Haar cascades. Nothing here fails the
generation: `make run` and `make test` in the project set up whatever the hook could not
(a virtual environment with the pinned packages, the protector, the demo model), so the
hook says what it skipped, why, and that those two commands finish the job. The answers
come in as JSON (``tojson``), so quotes or backslashes in them cannot break this file.
"""

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

KEY_FILE = Path("secrets", "model.key")
MODEL_FILE = Path("models", "face.enc")
MODEL_ID = "face"
CASCADE = "haarcascade_frontalface_default.xml"
# The protector's in-place build, declared once in the project's setup.py.
BUILD_COMMAND = ("setup.py", "--quiet", "build_ext", "--inplace")
BUILD_MODULES = ("Cython", "setuptools")
TIMEOUT = 600


def write_key(project: Path) -> Path:
    """Create the project's model key (32 random bytes as base64, mode 600) unless it exists."""
    path = project / KEY_FILE
    if path.exists():
        return path
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as out:
        out.write(base64.b64encode(os.urandom(32)).decode("ascii") + "\n")
    return path


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """The modules this Python cannot import."""
    return [module for module in modules if importlib.util.find_spec(module) is None]


def c_compiler() -> str | None:
    """The C compiler the build would call (CC, or the one Python was built with), if found."""
    command = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shutil.which(command.split()[0])


def python_headers() -> bool:
    """True when this Python's Python.h is installed."""
    return Path(sysconfig.get_paths()["include"], "Python.h").is_file()


def build_problems() -> list[str]:
    """Why the protector cannot be compiled with this Python here (empty: it can)."""
    problems = []
    missing = missing_modules(BUILD_MODULES)
    if missing:
        problems.append(f"cookiecutter's Python ({sys.executable}) has no {' or '.join(missing)}")
    if c_compiler() is None:
        problems.append("there is no C compiler (Debian/Ubuntu: apt-get install gcc)")
    if not python_headers():
        problems.append("there are no Python headers (Debian/Ubuntu: apt-get install python3-dev)")
    return problems


def run_python(project: Path, *args: str) -> str | None:
    """Run this Python in the project; None when it succeeds, else its last error line."""
    try:
        result = subprocess.run(
            [sys.executable, *args],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if result.returncode == 0:
        return None
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


def opencv_folders() -> list[Path]:
    """Where this Python's ``cv2`` package is, found without importing it (empty: none)."""
    spec = importlib.util.find_spec("cv2")
    return [Path(location) for location in (spec and spec.submodule_search_locations) or []]


def opencv_version(folder: Path) -> str:
    """The version an OpenCV wheel records in cv2/version.py ("?" when unknown)."""
    try:
        text = (folder / "version.py").read_text(encoding="utf-8")
    except OSError:
        return "?"
    match = re.search(r"""opencv_version\s*=\s*["']([^"']+)""", text)
    return match.group(1) if match else "?"


def find_cascade() -> Path | None:
    """OpenCV's frontal-face cascade, found without importing OpenCV (None if absent)."""
    for folder in opencv_folders():
        path = folder / "data" / CASCADE
        if path.is_file():
            return path
    return None


def cascade_problem() -> str | None:
    """Why the demo model's source, OpenCV's face cascade, is not here (None: it is)."""
    folders = opencv_folders()
    if not folders:
        return f"cookiecutter's Python ({sys.executable}) has no OpenCV"
    if find_cascade() is None:
        version = opencv_version(folders[0])
        return (
            f"the OpenCV next to cookiecutter ({version}) has no Haar cascades: "
            "OpenCV 5 wheels no longer ship them (the atom pins 4.x)"
        )
    if missing_modules(("cryptography",)):
        return f"cookiecutter's Python ({sys.executable}) has no cryptography"
    return None


def encrypt_demo_model(project: Path, package: str, cascade: Path) -> str | None:
    """Encrypt the cascade into models/face.enc with the project's key; None, or why not."""
    command = [*("-m", f"{package}.dependency.protect", "encrypt", "--quiet", "--force")]
    options = [*("--key-file", str(KEY_FILE), "--model-id", MODEL_ID)]
    return run_python(project, *command, *options, str(cascade), str(MODEL_FILE))


def finish(project: Path, package: str) -> list[str]:
    """Build the protector and encrypt the demo model; return what was skipped, and why."""
    problems = build_problems()
    if problems:
        return [f"the model protector was not compiled here: {'; '.join(problems)}"]
    sys.stderr.write("post-gen: compiling the model protector (Cython, about 10 s)\n")
    failure = run_python(project, *BUILD_COMMAND)
    if failure:
        return [f"the model protector did not compile here: {failure}"]
    problem = cascade_problem()
    if problem:
        return [f"the demo model was not encrypted here: {problem}"]
    failure = encrypt_demo_model(project, package, find_cascade() or Path(CASCADE))
    if failure:
        return [f"the demo model was not encrypted here: {failure}"]
    return []


def main() -> int:
    """Create the key, build the protector, encrypt the demo model; say what is left to do."""
    answers = json.loads(r"""{{ cookiecutter | tojson }}""")
    project = Path.cwd()
    todo = []
    try:
        write_key(project)
    except OSError as exc:
        todo.append(f"the model key was not created here ({exc})")
    todo += finish(project, answers["package_name"])
    for line in todo:
        sys.stderr.write(f"post-gen: {line}\n")
    if todo:
        sys.stderr.write(
            f"post-gen: `cd {project.name}`, then `make run` or `make test` set up the rest "
            "(a .venv with the pinned packages, the protector, the key, the demo model)\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
