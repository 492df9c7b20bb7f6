"""Finish the generated atom: its own model key, the compiled protector, the demo model.

Runs in the new project's folder with the Python that runs cookiecutter. Nothing here
fails the generation: when a tool is missing (Cython, a C compiler, OpenCV...), the hook
says what to install and which make target finishes the job later. The answers come in
as JSON (``tojson``), so quotes or backslashes in them cannot break this file.
"""

import base64
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

KEY_FILE = Path("secrets", "model.key")
MODEL_FILE = Path("models", "face.enc")
MODEL_ID = "face"
CASCADE = "haarcascade_frontalface_default.xml"
# Modules the protector's build needs -> the pip package that provides each.
BUILD_MODULES = {"Cython": "Cython", "setuptools": "setuptools"}
# Modules the demo model's encryption needs -> the pip package that provides each.
MODEL_MODULES = {"cryptography": "cryptography", "cv2": "opencv-python-headless"}
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


def missing_modules(modules: dict[str, str]) -> list[str]:
    """The pip packages whose module this Python cannot import."""
    return [
        package for module, package in modules.items() if importlib.util.find_spec(module) is None
    ]


def c_compiler() -> str | None:
    """The C compiler the build would call (CC, or the one Python was built with), if found."""
    command = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shutil.which(command.split()[0])


def python_headers() -> bool:
    """True when this Python's Python.h is installed."""
    return Path(sysconfig.get_paths()["include"], "Python.h").is_file()


def build_problems() -> list[str]:
    """What the protector's build lacks here, each said as what to install."""
    problems = []
    missing = missing_modules(BUILD_MODULES)
    if missing:
        problems.append(f"pip install {' '.join(missing)}")
    if c_compiler() is None:
        problems.append("a C compiler (Debian/Ubuntu: apt-get install gcc)")
    if not python_headers():
        problems.append("the Python headers (Debian/Ubuntu: apt-get install python3-dev)")
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


def find_cascade() -> Path | None:
    """OpenCV's frontal-face cascade, found without importing OpenCV (None if absent)."""
    spec = importlib.util.find_spec("cv2")
    for location in (spec and spec.submodule_search_locations) or []:
        path = Path(location, "data", CASCADE)
        if path.is_file():
            return path
    return None


def encrypt_demo_model(project: Path, package: str, cascade: Path) -> str | None:
    """Encrypt the cascade into models/face.enc with the project's key; None, or why not."""
    command = [*("-m", f"{package}.dependency.protect", "encrypt", "--quiet", "--force")]
    options = [*("--key-file", str(KEY_FILE), "--model-id", MODEL_ID)]
    return run_python(project, *command, *options, str(cascade), str(MODEL_FILE))


def finish(project: Path, package: str) -> list[str]:
    """Build the protector and encrypt the demo model; return what is left to do, and why."""
    problems = build_problems()
    if problems:
        return [
            f"the model protector was not compiled: it needs {'; '.join(problems)}",
            "then run in the project: make protector model",
        ]
    sys.stderr.write("post-gen: compiling the model protector (Cython, about 10 s)\n")
    failure = run_python(project, "build_protector.py")
    if failure:
        return [f"the model protector did not compile: {failure}", "then: make protector model"]
    missing = missing_modules(MODEL_MODULES)
    cascade = find_cascade()
    if missing or cascade is None:
        packages = " ".join(missing) or "opencv-python-headless"
        return [f"the demo model was not encrypted: pip install {packages}", "then: make model"]
    failure = encrypt_demo_model(project, package, cascade)
    if failure:
        return [f"the demo model was not encrypted: {failure}", "then: make model"]
    return []


def main() -> int:
    """Create the key, build the protector, encrypt the demo model; say what is left to do."""
    answers = json.loads(r"""{{ cookiecutter | tojson }}""")
    project = Path.cwd()
    try:
        write_key(project)
    except OSError as exc:
        sys.stderr.write(f"post-gen: the model key was not created ({exc}): run make key\n")
    todo = finish(project, answers["package_name"])
    for line in todo:
        sys.stderr.write(f"post-gen: {line}\n")
    if todo:
        sys.stderr.write("post-gen: (make PYTHON=/path/to/python ... when python3 is not it)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
