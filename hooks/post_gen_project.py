"""Finish the generated atom: the files of the options not chosen removed, the template it
came from recorded (.cruft.json, in cruft's format), its own model key, then the compiled
protector and the demo model when cookiecutter's Python can make them.

Runs in the new project's folder with the Python that runs cookiecutter, which may have no
Cython, no compiler, no cryptography, no OpenCV, or an OpenCV without the Haar cascades.
Nothing here fails the generation: `make run` and `make test` in the project set up what
the hook could not (a virtual environment with the pinned packages, the protector, the
demo model). The hook ends with a few lines: what it wrote, what it compiled and
encrypted or every reason it did not, and the command to run next. The answers come in
as JSON (``tojson``), so quotes or backslashes in them cannot break this file.

When cruft or the atom's `make upgrade` renders the template (to compare two versions),
the context names the commit (``_commit``): the hook then records it and builds nothing.
"""

import base64
import contextlib
import importlib.util
import json
import os
import re
import shlex
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
# What the demo model's encryption needs besides the protector: name shown -> module.
MODEL_MODULES = {"cryptography": "cryptography", "OpenCV": "cv2"}
TIMEOUT = 600
GIT_TIMEOUT = 30
STATE_FILE = Path(".cruft.json")
# Context entries that describe one run of cookiecutter on one machine, not the atom.
MACHINE_KEYS = ("_output_dir", "_repo_dir", "_checkout")
# The template's paths that reach atoms (the rest of its repository does not).
ATOM_SOURCES = ("cookiecutter.json", "hooks")
# A template given as a git URL or an abbreviation (cookiecutter clones it), not a folder.
URL_RE = re.compile(r"^([\w+.-]+://|[\w.-]+@[\w.-]+:|(gh|gl|bb):)")
# The files of each choice of an option: the hook removes those of the choices not taken.
OPTION_FILES = {
    "ci": {"gitlab": (".gitlab-ci.yml",), "github": (".github",), "none": ()},
}


def remove_unchosen(project: Path, answers: dict) -> list[str]:
    """Remove the files of the choices not taken (OPTION_FILES); return their names."""
    removed = []
    for option, choices in OPTION_FILES.items():
        for choice, names in choices.items():
            for name in names if choice != answers.get(option) else ():
                path = project / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
                removed.append(name)
    return removed


def git_output(folder: Path, *args: str, strip: bool = True) -> str | None:
    """git's answer in ``folder``, or None when git fails there (not a checkout, no git)."""
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() if strip else result.stdout


def template_folder(repo_dir: str) -> Path | None:
    """The folder cookiecutter rendered the atom from, absolute (None when not found).

    cookiecutter passes it as it was typed. A relative one is relative to where cookiecutter
    started; while a hook runs, cookiecutter works inside that folder, which Linux shows as
    /proc/<cookiecutter's pid>/cwd; elsewhere $PWD (the shell's folder) is tried.
    """
    if not repo_dir:
        return None
    given = Path(repo_dir).expanduser()
    candidates = [given] if given.is_absolute() else []
    with contextlib.suppress(OSError):
        candidates.append(Path(os.readlink(f"/proc/{os.getppid()}/cwd")))
    candidates.append(Path(os.environ.get("PWD", "."), given))
    for candidate in candidates:
        named = not given.name or candidate.resolve().name == given.resolve().name
        if named and (candidate / "cookiecutter.json").is_file() and (candidate / "hooks").is_dir():
            return candidate.resolve()
    return None


def unknown_commit(template: str, why: str) -> dict:
    """A record without a commit, saying why: make upgrade and cruft will refuse it."""
    note = (
        f"{why}: make upgrade and cruft need the template's git source; generate the atom "
        "from a git checkout or URL of the template"
    )
    return {"template": template, "commit": None, "checkout": None, "directory": None, "note": note}


def changed_sources(folder: Path, directory: str) -> list[str]:
    """Uncommitted changes in the template checkout to files that reach atoms (paths from
    the template's folder, ``directory`` inside its repository)."""
    entries = iter(
        (git_output(folder, "status", "--porcelain", "-z", strip=False) or "").split("\0")
    )
    changed = []
    for entry in entries:
        if entry[:1] in ("R", "C"):
            next(entries, None)  # a rename's or copy's source path follows
        path = entry[3:]
        if directory:
            path = path.removeprefix(directory + "/") if path.startswith(directory + "/") else ""
        first = path.split("/", 1)[0]
        if first in ATOM_SOURCES or first.startswith("{"):
            changed.append(path)
    return changed


def provenance(answers: dict) -> dict:
    """Where the template came from: source, commit, checkout (the tag), the folder of
    cookiecutter.json in the repository, and a note when the commit is not the whole truth."""
    if answers.get("_commit"):  # cruft or make upgrade renders a commit it names
        return {
            "template": answers.get("_template"),
            "commit": answers["_commit"],
            "checkout": answers.get("_checkout"),
            "directory": None,
            "note": None,
        }
    repo_dir = str(answers.get("_repo_dir") or "")
    if shutil.which("git") is None:
        return unknown_commit(repo_dir, "git is not installed here")
    folder = template_folder(repo_dir)
    if folder is None:
        return unknown_commit(repo_dir, f"the template's folder ({repo_dir!r}) was not found")
    top = git_output(folder, "rev-parse", "--show-toplevel")
    commit = git_output(folder, "rev-parse", "--verify", "HEAD") if top else None
    if not top or not commit:
        return unknown_commit(str(folder), f"the template at {folder} is not a git checkout")
    given = str(answers.get("_template") or "")
    source = git_output(folder, "remote", "get-url", "origin") if URL_RE.match(given) else None
    directory = folder.relative_to(Path(top).resolve()).as_posix()
    changed = changed_sources(folder, "" if directory == "." else directory)
    note = None
    if changed:
        shown = ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")
        note = (
            f"the template checkout had uncommitted changes ({shown}): "
            f"this atom may differ from commit {commit[:12]}"
        )
    return {
        "template": source or top,
        "commit": commit,
        "checkout": git_output(folder, "describe", "--tags", "--exact-match", "HEAD")
        or answers.get("_checkout"),
        "directory": None if directory == "." else directory,
        "note": note,
    }


def write_state(project: Path, answers: dict, origin: dict) -> None:
    """Record the template in .cruft.json, in cruft's format: cruft's check, diff and update
    and the atom's make upgrade read it."""
    context = {key: value for key, value in answers.items() if key not in MACHINE_KEYS}
    context["_template"] = origin["template"]
    if origin["commit"]:
        context["_commit"] = origin["commit"]
    state = {
        "template": origin["template"],
        "commit": origin["commit"],
        "checkout": origin["checkout"],
        "context": {"cookiecutter": dict(sorted(context.items()))},  # the same bytes each time
        "directory": origin["directory"],
        "skip": [str(STATE_FILE)],
    }
    if origin["note"]:
        state["note"] = origin["note"]
    text = json.dumps(state, ensure_ascii=False, indent=2, separators=(",", ": "))
    (project / STATE_FILE).write_text(text + "\n", encoding="utf-8")


def record_commit(project: Path, package: str, commit: str | None) -> None:
    """Write the template's commit into the package's about.py, which the runtime shows."""
    path = project / package / "about.py"
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        line = f"TEMPLATE_COMMIT = {json.dumps(commit or '')}\n"
        path.write_text(text.replace('TEMPLATE_COMMIT = ""\n', line, 1), encoding="utf-8")


def record_template(project: Path, answers: dict) -> list[str]:
    """Record where the template came from; return the lines that say what was written."""
    origin = provenance(answers)
    try:
        write_state(project, answers, origin)
        record_commit(project, answers.get("package_name", ""), origin["commit"])
    except OSError as exc:
        return [f"{STATE_FILE} not written ({exc}): make upgrade and cruft need it"]
    commit = origin["commit"]
    written = (
        f"{STATE_FILE} written (template {origin['template']}, commit {commit[:12]})"
        if commit
        else f"{STATE_FILE} written without a template commit"
    )
    return [written, f"{STATE_FILE}: {origin['note']}"] if origin["note"] else [written]


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


def key_line(project: Path) -> str:
    """Create the model key unless it exists; say which happened."""
    if (project / KEY_FILE).exists():
        return f"{KEY_FILE} kept (it was already there)"
    try:
        write_key(project)
    except OSError as exc:
        return f"{KEY_FILE} not written ({exc})"
    return f"{KEY_FILE} written (the atom's model key, mode 600; git and docker ignore it)"


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """The modules this Python cannot import."""
    return [module for module in modules if importlib.util.find_spec(module) is None]


def compiler_command() -> str:
    """The C compiler the build would call: CC, or the one Python was built with."""
    return (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]


def c_compiler() -> str | None:
    """The C compiler's path, if it is installed."""
    return shutil.which(compiler_command())


def headers_file() -> Path:
    """This Python's Python.h, which the build compiles against."""
    return Path(sysconfig.get_paths()["include"], "Python.h")


def python_headers() -> bool:
    """True when this Python's Python.h is installed."""
    return headers_file().is_file()


def build_problems() -> list[str]:
    """Why the protector cannot be compiled with this Python here (empty: it can)."""
    problems = []
    missing = missing_modules(BUILD_MODULES)
    if missing:
        problems.append(f"cookiecutter's Python ({sys.executable}) has no {' or '.join(missing)}")
    if c_compiler() is None:
        problems.append(f"there is no C compiler ({compiler_command()})")
    if not python_headers():
        problems.append(f"there are no Python headers ({headers_file()})")
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


def model_problems() -> list[str]:
    """What this Python lacks to encrypt the demo model, OpenCV's face cascade (empty: none)."""
    problems = []
    missing = [name for name, module in MODEL_MODULES.items() if missing_modules((module,))]
    if missing:
        problems.append(f"cookiecutter's Python ({sys.executable}) has no {' or '.join(missing)}")
    if "OpenCV" not in missing and find_cascade() is None:
        version = opencv_version(opencv_folders()[0])
        problems.append(
            f"the OpenCV next to cookiecutter ({version}) has no Haar cascades: "
            "OpenCV 5 wheels no longer ship them (the atom pins 4.x)"
        )
    return problems


def encrypt_demo_model(project: Path, package: str, cascade: Path) -> str | None:
    """Encrypt the cascade into models/face.enc with the project's key; None, or why not."""
    command = [*("-m", f"{package}.protection.protect", "encrypt", "--quiet", "--force")]
    options = [*("--key-file", str(KEY_FILE), "--model-id", MODEL_ID)]
    return run_python(project, *command, *options, str(cascade), str(MODEL_FILE))


def build_protector(project: Path) -> str | None:
    """Compile the protector in the project; None, or why it was not compiled."""
    problems = build_problems()
    if problems:
        return "; ".join(problems)
    say("compiling the model protector (Cython, about 10 s)")
    failure = run_python(project, *BUILD_COMMAND)
    return f"the build failed: {failure}" if failure else None


def encrypt_model(project: Path, package: str, compiled: bool) -> str | None:
    """Encrypt the demo model; None, or every reason it was not encrypted."""
    problems = [] if compiled else ["the protector was not compiled"]
    if not (project / KEY_FILE).is_file():
        problems.append(f"there is no {KEY_FILE}")
    problems += model_problems()
    if problems:
        return "; ".join(problems)
    return encrypt_demo_model(project, package, find_cascade() or Path(CASCADE))


def build_lines(project: Path, package: str) -> list[str]:
    """Compile the protector and encrypt the demo model; say what came of each, and why."""
    protector = build_protector(project)
    model = encrypt_model(project, package, compiled=protector is None)
    if protector is None and model is None:
        return [f"protector compiled, {MODEL_FILE} encrypted"]
    return [
        "protector compiled" if protector is None else f"protector left to `make run`: {protector}",
        f"{MODEL_FILE} encrypted" if model is None else f"{MODEL_FILE} left to `make run`: {model}",
    ]


def left_to_make(project: Path, package: str) -> list[str]:
    """What the atom's setup (`make run`, `make test`) still has to make in the project."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    made = {
        "the protector": project / package / "protection" / f"model_protector{suffix}",
        "the key": project / KEY_FILE,
        str(MODEL_FILE): project / MODEL_FILE,
    }
    return [name for name, path in made.items() if not path.is_file()]


def system_packages() -> list[str]:
    """The Debian/Ubuntu packages the atom's setup needs and this machine lacks."""
    return [
        name
        for name, present in (("gcc", c_compiler() is not None), ("python3-dev", python_headers()))
        if not present
    ]


def shell_path(project: Path) -> str:
    """The project's folder as the shell that ran cookiecutter reaches it, quoted."""
    shell = os.environ.get("PWD", "")
    with contextlib.suppress(ValueError):
        if os.path.isabs(shell):
            return shlex.quote(str(project.relative_to(Path(shell).resolve())))
    return shlex.quote(str(project))


def next_line(project: Path, package: str) -> str:
    """What to run next, and what it will set up."""
    cd = f"`cd {shell_path(project)}`"
    rest = left_to_make(project, package)
    if not rest:
        return (
            f"next: {cd}, then `make run` or `make test` (whichever runs first makes "
            "the atom's .venv with its pinned packages, a minute or two)"
        )
    install = " ".join(system_packages())
    first = ""
    if install:  # make run needs them too, and cannot install them
        first = f"install {install} (Debian/Ubuntu: sudo apt-get install {install}), "
    return (
        f"next: {first}{cd}, then `make run` or `make test` set up the rest: "
        f"a .venv with the pinned packages, {', '.join(rest)}"
    )


def say(*lines: str) -> None:
    """Show lines to the person running cookiecutter."""
    for line in lines:
        sys.stderr.write(f"post-gen: {line}\n")


def main() -> int:
    """Remove unchosen files, record the template, create the key, build the protector,
    encrypt the demo model; say what was done and what to run next."""
    answers = json.loads(r"""{{ cookiecutter | tojson }}""")
    project = Path.cwd()
    package = answers["package_name"]
    remove_unchosen(project, answers)
    recorded = record_template(project, answers)
    if answers.get("_commit"):  # a rendering to compare versions (cruft, make upgrade)
        return 0
    say(*recorded, key_line(project))
    say(*build_lines(project, package))
    say(next_line(project, package))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
