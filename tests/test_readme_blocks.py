"""The READMEs as tests: every command block of the template's README.md and of a generated
atom's README.md runs as written, by a plain user in a fresh login shell (`runuser -l`: no
virtual environment active, the user's own PATH and pip configuration), and as root where
the block installs Debian packages.

The blocks are read out of the Markdown (fenced ```sh, ```bash or ```console blocks), and
each must be in BLOCKS below, which says how it runs (by its first line): a README edit
that adds a block, or breaks a command, breaks this test. The Chinese READMEs must hold the
same blocks. Where a run differs from a person's, the table says so:

- `cookiecutter https://github.com/org/atom-template` is run with the path of a git copy
  of this working tree instead of that address (the lane has no network), and answered
  through its standard input as a person answers at a terminal: Enter for every prompt but
  the port, which gets a free port of this machine (the lane shares the machine with other
  lanes; the generated README's commands then hold that port as written);
- the template README's `curl` names port 8000, the default: it is sent to that free port;
- `make test` in the atom runs with PYTEST_ADDOPTS naming the atom's tests of what the
  set-up made and the route contract test (the atom_suite lane runs the whole suite on the
  same pins; this lane checks that the command works for a plain user, on what `make run`
  set up from nothing and on the route `make route` just added).

This is also the fresh machine's lane: cookiecutter comes alone from pipx (no Cython, no
OpenCV: the hook compiles nothing and says so), so `make run` sets up everything itself
(.venv with every pinned package, the protector, the key, the demo model); every test
module of the atom then imports in that .venv, and SIGTERM to `make run`'s process group
(a terminal's Ctrl-C) stops the server cleanly.

The user (USER) is this lane's own: made with useradd when missing, its atom, template copy
and pipx environments removed before each run (its pip cache kept). Every process is
bounded in time; a server block runs in a process group of its own, killed by its pid.
"""

import concurrent.futures
import fcntl
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.atomctl import TEMPLATE, free_port, http

from .throwaway import copy_template

pytestmark = pytest.mark.readme_blocks

USER = "atomreadme"
TEMPLATE_URL = "https://github.com/org/atom-template"
BLOCK_RE = re.compile(r"^```(?:sh|bash|console)\n(.*?)^```$", re.M | re.S)
PORT_PROMPT = 6  # the port is the 6th of cookiecutter.json's prompts
PROMPTS = 9
SETUP_SECONDS = 900  # a first `make run`: .venv and every pinned package, the protector
LOCK = Path("/tmp/atom-readme-blocks.lock")  # the user is machine-wide: one run at a time


@dataclass(frozen=True)
class How:
    """How a block runs: as whom, where, and what it must show."""

    who: str  # "user" or "root"
    where: str = "~"  # the folder it runs in, from the user's home
    server: bool = False  # it ends in a server: run in the background until ready
    shows: str = ""  # a text its output holds
    answers: str = ""  # its standard input: what a person types at its questions


# Every block of both READMEs, by its first line. None is left out: no block of these
# READMEs needs a registry, a cluster or anything else this machine lacks.
BLOCKS = {
    "README.md": {
        # apt-get asks before it upgrades one of them (setup.sh installed them all): yes.
        "sudo apt-get install pipx python3-venv gcc python3-dev make git curl": How(
            "root", answers="Y\n"
        ),
        "pipx install cookiecutter": How("user", shows="cookiecutter"),
        # The hook of a cookiecutter without Cython compiles nothing and says who will.
        f"cookiecutter {TEMPLATE_URL}": How(
            "user", server=True, shows="then `make run` or `make test` set up the rest"
        ),
        "curl -s -w '\\n' http://127.0.0.1:8000/d2atom/v1/health/ready": How(
            "user", shows='"is_ready":true'
        ),
    },
    "my-atom/README.md": {
        "make run": How("user", "~/my-atom", server=True),
        "make test": How("user", "~/my-atom", shows=" passed in "),
        "curl -s -w '\\n' http://127.0.0.1:{port}/d2atom/v1/health/ready": How(
            "user", "~/my-atom", shows='"label":"face"'
        ),
        "make route NAME=plates": How("user", "~/my-atom", shows="plates"),
        "make upgrade-check": How("user", "~/my-atom"),
    },
}
# The order the blocks run in, by their index in the README: a server block with the blocks
# sent to it while it serves, then the rest (make test after make route, which it tests).
ORDER = [
    ("README.md", [0, 1, (2, [3])]),
    ("my-atom/README.md", [(0, [2]), 3, 1, 4]),
]


# What `make test` runs here: the atom's tests of what the set-up made from nothing (the
# compiled protector and its command line, apache-skywalking built from its source, every
# module importable, the real demo model behind detect), the route contract test, and the
# v2 tests, which name a model that must not exist (the README's example route is there).
MAKE_TEST = (
    "-q tests/test_model_protector.py tests/test_protect_cli.py tests/test_skywalking.py"
    " tests/test_structure.py tests/test_detect.py tests/test_route_contract.py"
    " tests/test_v2.py tests/test_v2_tritonclient.py"
)


def blocks(text: str) -> list[str]:
    """The command blocks of a Markdown text, in order."""
    return BLOCK_RE.findall(text)


def commands(block: str) -> list[str]:
    """A block's lines without their comments (the Chinese READMEs translate those)."""
    return [re.sub(r"\s+#\s.*$", "", line) for line in block.splitlines()]


def run_as(who: str, script: str, cwd: str, **popen: object) -> subprocess.Popen:
    """Start ``script`` (a block, as written) in a fresh login shell of ``who``, in ``cwd``
    (relative to the home folder), in a process group of its own: the caller bounds it in
    time and kills the group by its pid (``finish``, ``serve``)."""
    command = f"cd {cwd} && bash -e -o pipefail -c {shquote(script)}"
    shell = ["runuser", "-l", USER if who == "user" else "root", "-c", command]
    return subprocess.Popen(
        shell,
        start_new_session=True,
        text=True,
        **popen,  # type: ignore[arg-type]
    )


def shquote(text: str) -> str:
    """``text`` as one word of sh."""
    return "'" + text.replace("'", "'\\''") + "'"


def finish(process: subprocess.Popen, timeout: float, answers: str = "") -> tuple[int, str]:
    """Wait for a block (``answers`` on its standard input); its exit status and output.

    The input stays open until the block ends, as a terminal's does."""
    assert process.stdout is not None
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        reading = pool.submit(process.stdout.read)
        if process.stdin is not None:
            process.stdin.write(answers)
            process.stdin.flush()
        try:
            status = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop(process)
            status = -1
        if process.stdin is not None:
            process.stdin.close()
        output = reading.result(timeout=30)
    if status == -1:
        output += f"\n(killed after {timeout:.0f} s)"
    return status, output


def stop(process: subprocess.Popen) -> bool:
    """SIGTERM to the block's process group (Ctrl-C's reach), SIGKILL after 20 s; whether
    the whole group ended on SIGTERM."""
    if process.poll() is not None:
        return True
    os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        process.poll()  # reaps the shell once it ends; its children go to init
        if not group_alive(process.pid):
            return True
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    return False


def group_alive(pgid: int) -> bool:
    """True while a process of the group still runs."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def report(readme: str, first: str, how: str, status: int, output: str) -> None:
    """Print one block's run (shown with -s, and in the gate's log on failure)."""
    lines = output.strip().splitlines()
    if len(lines) > 24:
        lines = [*lines[:12], f"... ({len(lines) - 24} lines)", *lines[-12:]]
    shown = "\n".join(f"    {line[:200]}" for line in lines)
    print(f"\n[{readme}] {first!r} ({how}) -> exit {status}\n{shown}")  # noqa: T201


@pytest.fixture(scope="module")
def home() -> Iterator[Path]:
    """The plain user's home, with nothing of an earlier run but its pip cache, and a git
    copy of this working tree in it; the lane's lock held throughout."""
    assert os.geteuid() == 0, "the readme_blocks lane runs blocks as a plain user and as root"
    for tool in ("runuser", "useradd", "pipx", "sudo", "git", "curl", "make", "timeout"):
        assert shutil.which(tool), f"{tool} is missing: scripts/setup.sh installs it"
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(USER)
        except KeyError:
            made = subprocess.run(
                ["useradd", "--create-home", "--shell", "/bin/bash", USER],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert made.returncode == 0, f"useradd {USER} failed: {made.stderr}"
        user = pwd.getpwnam(USER)
        folder = Path(user.pw_dir)
        for old in ("my-atom", "atom-template", ".local/pipx", ".local/bin/cookiecutter"):
            path = folder / old
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        # A person's git knows their name: the README's `git commit` needs one.
        gitconfig = folder / ".gitconfig"
        gitconfig.write_text("[user]\n\tname = README reader\n\temail = reader@localhost\n")
        os.chown(gitconfig, user.pw_uid, user.pw_gid)
        own_template(folder / "atom-template", user.pw_uid, user.pw_gid)
        yield folder


def own_template(target: Path, uid: int, gid: int) -> None:
    """This working tree's files (committed or not, ignored ones aside) as the user's own
    git repository, committed: where `cookiecutter <address>` would have cloned it from."""
    copy_template(target)
    subprocess.run(["chown", "-R", f"{uid}:{gid}", str(target)], timeout=60, check=True)
    commit = "git init -q && git add -A && git commit -qm template"
    status, output = finish(run_as("user", commit, "~/atom-template", **pipes()), 120)
    assert status == 0, output


def pipes(stdin: object = subprocess.DEVNULL) -> dict[str, object]:
    """Standard input from ``stdin``, output and errors together to a pipe."""
    return {"stdin": stdin, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}


def ready(port: int, process: subprocess.Popen, timeout: float) -> bool:
    """Whether the atom on ``port`` became ready before ``process`` ended or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            status, _, _ = http("GET", f"http://127.0.0.1:{port}/d2atom/v1/health/ready", timeout=5)
        except OSError:
            status = 0
        if status == 200:
            return True
        time.sleep(1)
    return False


def run_blocks(readme: str, texts: list[str], port: int, order: list) -> None:
    """Run the blocks of one README in ``order``, each checked against BLOCKS."""
    table = BLOCKS[readme]
    for step in order:
        index, during = step if isinstance(step, tuple) else (step, [])
        script = texts[index]
        first = script.splitlines()[0].split("#")[0].strip()
        how = table[first.replace(f":{port}/", ":{port}/")]
        if how.server:
            serve(readme, script, first, how, port, [texts[i] for i in during], table)
        else:
            run_one(readme, script, first, how, port)


def prepared(script: str, port: int) -> tuple[str, str]:
    """The block as run (the template's address and port substituted), and how."""
    notes = []
    if TEMPLATE_URL in script:
        script = script.replace(TEMPLATE_URL, "~/atom-template")
        notes.append("the template's address replaced by a git copy of this tree")
    if "127.0.0.1:8000/" in script:
        script = script.replace("127.0.0.1:8000/", f"127.0.0.1:{port}/")
        notes.append(f"port 8000 sent to the free port {port}")
    return script, "; ".join(notes)


def run_one(readme: str, script: str, first: str, how: How, port: int) -> None:
    """Run a block to its end: exit status 0, its expected text shown."""
    script, notes = prepared(script, port)
    env = {}
    if first == "make test":
        env = {"PYTEST_ADDOPTS": MAKE_TEST}
        notes = f"PYTEST_ADDOPTS={MAKE_TEST}"
    popen = pipes(subprocess.PIPE if how.answers else subprocess.DEVNULL)
    if env:
        script = "".join(f"export {k}={shquote(v)}\n" for k, v in env.items()) + script
    process = run_as(how.who, script, how.where, **popen)
    status, output = finish(process, SETUP_SECONDS + 30, how.answers)
    if how.answers:
        notes += ("; " if notes else "") + f"standard input {how.answers!r}"
    shown = f"as {how.who} in {how.where}" + (f"; {notes}" if notes else "")
    report(readme, first, shown, status, output)
    assert status == 0, f"{readme}: {first!r} failed:\n{output[-3000:]}"
    assert how.shows in output, f"{readme}: {first!r} did not show {how.shows!r}:\n{output[-3000:]}"


def serve(
    readme: str, script: str, first: str, how: How, port: int, during: list[str], table: dict
) -> None:
    """Start a block that ends in a server, run ``during`` while it serves, then stop it."""
    script, notes = prepared(script, port)
    answers = "".join(f"{port}\n" if n == PORT_PROMPT else "\n" for n in range(1, PROMPTS + 1))
    if "cookiecutter " in script:
        notes += "; the prompts answered on standard input: Enter, and the port"
    with tempfile.TemporaryFile("w+") as log:  # a pipe would fill up and stall the server
        process = run_as(
            how.who,
            script,
            how.where,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        assert process.stdin is not None
        process.stdin.write(answers)
        process.stdin.close()
        try:
            up = ready(port, process, SETUP_SECONDS)
            if up:
                for other in during:
                    head = other.splitlines()[0].split("#")[0].strip()
                    run_one(readme, other, head, table[head.replace(f":{port}/", ":{port}/")], port)
        finally:
            stopped = stop(process)
        log.seek(0)
        output = log.read()
    shown = f"as {how.who} in {how.where}, until ready, then SIGTERM to its group"
    shown += f"; {notes}" if notes else ""
    report(readme, first, shown, process.returncode, output)
    assert up, f"{readme}: {first!r} never became ready on {port}:\n{output[-4000:]}"
    assert how.shows in output, f"{readme}: {first!r} did not show {how.shows!r}:\n{output[-3000:]}"
    assert stopped, f"{readme}: {first!r} still ran 20 s after SIGTERM:\n{output[-3000:]}"
    assert "Application shutdown complete" in output, f"{first!r}: no clean stop:\n{output[-3000:]}"
    # Debian 12's pip 23.0 warned about requirements.txt's --no-binary: setup upgrades it.
    assert "DEPRECATION" not in output, f"{first!r} printed a deprecation:\n{output[-3000:]}"


def test_the_chinese_readmes_hold_the_same_blocks(home: Path) -> None:
    """Each Chinese README's command blocks are its English README's, comments aside."""
    atom = home / "atom-template" / "{{cookiecutter.project_slug}}"
    for folder in (TEMPLATE, atom):
        english = blocks((folder / "README.md").read_text(encoding="utf-8"))
        chinese = blocks((folder / "README.zh-CN.md").read_text(encoding="utf-8"))
        assert [commands(b) for b in english] == [commands(b) for b in chinese], folder


def test_every_readme_block_runs_as_written(home: Path) -> None:
    """Every block of the template's README, then of the atom it generates, runs as BLOCKS
    says, in order, and shows what it must."""
    port = free_port()
    template = blocks((TEMPLATE / "README.md").read_text(encoding="utf-8"))
    firsts = [block.splitlines()[0].split("#")[0].strip() for block in template]
    assert firsts == list(BLOCKS["README.md"]), "a block of README.md is not in BLOCKS"
    run_blocks("README.md", template, port, ORDER[0][1])
    atom = blocks((home / "my-atom" / "README.md").read_text(encoding="utf-8"))
    firsts = [block.splitlines()[0].split("#")[0].strip() for block in atom]
    expected = [first.replace("{port}", str(port)) for first in BLOCKS["my-atom/README.md"]]
    assert firsts == expected, "a block of the generated README.md is not in BLOCKS"
    run_blocks("my-atom/README.md", atom, port, ORDER[1][1])
    # The .venv that make run set up from nothing holds what every test module imports.
    collect = ".venv/bin/python -m pytest --collect-only -q"
    status, output = finish(run_as("user", collect, "~/my-atom", **pipes()), 300)
    assert status == 0, output[-4000:]
    assert re.search(r"^\d+ tests collected", output.strip().splitlines()[-1]), output[-2000:]
