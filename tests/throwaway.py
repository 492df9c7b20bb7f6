"""A throw-away git repository of the template, and plain cookiecutter runs against it: what
the upgrade lane (test_upgrade.py, test_provenance.py) builds atoms from."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from scripts.atomctl import TEMPLATE

from .conftest import run

# Commits in the throw-away repositories and atoms need an identity, whatever the machine's.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Atom Tester",
    "GIT_AUTHOR_EMAIL": "atom-tester@example.invalid",
    "GIT_COMMITTER_NAME": "Atom Tester",
    "GIT_COMMITTER_EMAIL": "atom-tester@example.invalid",
    "GIT_TERMINAL_PROMPT": "0",
}


def environment(**extra: str) -> dict[str, str]:
    """This process's environment with the git identity (and ``extra``)."""
    return {**os.environ, **GIT_ENV, **extra}


def ok(args: list[str], cwd: Path, timeout: float = 600, **extra: str) -> str:
    """Run a command that must succeed; its stdout."""
    result = run(args, cwd=cwd, timeout=timeout, env=environment(**extra))
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def git(cwd: Path, *args: str) -> str:
    """git in ``cwd`` (must succeed); its output, stripped."""
    return ok(["git", *args], cwd, timeout=120).strip()


def template_version(root: Path = TEMPLATE) -> str:
    """The version cookiecutter.json declares."""
    return json.loads((root / "cookiecutter.json").read_text())["_template_version"]


def copy_template(dest: Path) -> Path:
    """The template's working tree as git would commit it (tracked and new files, nothing
    ignored, deletions applied), copied to ``dest``."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=TEMPLATE,
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout
    for name in filter(None, listing.decode().split("\0")):
        source = TEMPLATE / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def new_repository(dest: Path) -> Path:
    """A git repository holding a copy of the template, committed on ``main`` and released
    with its own ``scripts/release.py`` (the CHANGELOG dated, tag v<version>)."""
    copy_template(dest)
    git(dest, "init", "--quiet", "--initial-branch=main")
    git(dest, "add", "--all")
    git(dest, "commit", "--quiet", "-m", "atom-template, a copy of the working tree")
    release(dest)
    return dest


def release(repo: Path) -> str:
    """``make release``'s script in the throw-away repository; the tag it made."""
    ok([sys.executable, "scripts/release.py", "--root", str(repo)], repo)
    return f"v{template_version(repo)}"


def cookiecutter_config(folder: Path) -> Path:
    """A cookiecutter config whose clones and replays stay in ``folder`` (not in $HOME)."""
    config = folder / "cookiecutter-config.yaml"
    config.write_text(
        f"cookiecutters_dir: {folder / 'cookiecutters'}\nreplay_dir: {folder / 'replay'}\n"
    )
    return config


def generate(
    template: str, output: Path, config: Path, *args: str, cwd: Path | None = None, **env: str
) -> tuple[Path, str]:
    """Plain ``cookiecutter --no-input`` of ``template`` (a URL or a path) into ``output``;
    the atom's folder and cookiecutter's stderr (the hooks' messages)."""
    command = [sys.executable, "-m", "cookiecutter", "--no-input", "--config-file", str(config)]
    output.mkdir(parents=True, exist_ok=True)
    result = run(
        [*command, "-o", str(output), *args, template],
        cwd=cwd or output,
        timeout=300,
        env=environment(**env),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (atom,) = [path for path in output.iterdir() if path.is_dir()]
    return atom, result.stderr


def commit_all(repo: Path, message: str) -> str:
    """Commit everything in ``repo``; the new commit."""
    git(repo, "add", "--all")
    git(repo, "commit", "--quiet", "-m", message)
    return git(repo, "rev-parse", "HEAD")
