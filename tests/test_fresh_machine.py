"""The two commands of a generated atom, from a machine with nothing but cookiecutter.

A new virtual environment gets cookiecutter alone (no Cython, no OpenCV), as
`pip install cookiecutter` gives a new user; its cookiecutter bakes the default atom, so
the post-gen hook compiles nothing. Then `make test` and `make run` in the atom must set
up everything themselves (.venv with every pinned package, protector, key, demo model)
and work.

What this lane adds to the bake lane (which runs the atom's whole suite, with the same
pins on the same Python) is the set-up from nothing: so `make test` runs the atom's tests
of what the set-up made (SETUP_TESTS, through PYTEST_ADDOPTS, which pytest reads), and
every test module of the atom must import in the new .venv (a package its tests need but
its requirements lack would fail there).
"""

import base64
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.atomctl import TEMPLATE, free_port, http

from .conftest import run

pytestmark = pytest.mark.fresh_machine

COOKIECUTTER = "cookiecutter==2.7.1"
# This run's variables that a new user's shell does not have: our venv, our choices, and
# those of the make (and gate) running this test.
NOT_ON_A_NEW_MACHINE = {
    "VIRTUAL_ENV",
    "PYTHON",
    "CC",
    "PYTEST_ADDOPTS",
    "MAKEFLAGS",
    "MAKELEVEL",
    "MFLAGS",
    "MAKEOVERRIDES",
    "ATOM_GATE_RECORD",
}
PREFIX = "/d2atom"
# The atom's tests of what `make test`'s set-up made: the compiled protector (and its
# command line), apache-skywalking built from its source distribution, every module
# importable, the real demo model behind detect.
SETUP_TESTS = (
    "tests/test_model_protector.py",
    "tests/test_protect_cli.py",
    "tests/test_skywalking.py",
    "tests/test_structure.py",
    "tests/test_detect.py",
)


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a fresh machine: cookiecutter alone in a new venv, on PATH."""
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    made = run([sys.executable, "-m", "venv", str(venv)], cwd=root, timeout=120)
    assert made.returncode == 0, made.stderr
    installed = run([str(venv / "bin" / "pip"), "install", "-q", COOKIECUTTER], cwd=root)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    env = {k: v for k, v in os.environ.items() if k not in NOT_ON_A_NEW_MACHINE}
    env["PATH"] = f"{venv / 'bin'}:{os.environ['PATH']}"
    for module in ("Cython", "cv2"):  # the hook really has neither
        probe = run([str(venv / "bin" / "python"), "-c", f"import {module}"], root, env=env)
        assert probe.returncode != 0, f"{module} is importable in the fresh venv"
    return env


@pytest.fixture(scope="module")
def atom(machine: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default atom, baked by the fresh venv's cookiecutter."""
    out = tmp_path_factory.mktemp("out")
    baked = run(["cookiecutter", "--no-input", "-o", str(out), str(TEMPLATE)], out, env=machine)
    assert baked.returncode == 0, baked.stderr
    assert "has no Cython" in baked.stderr
    assert "then `make run` or `make test` set up the rest" in baked.stderr
    project = out / "my-atom"
    assert not list(project.rglob("model_protector*.so"))
    assert not (project / "models" / "face.enc").exists()
    return project


def test_make_test_sets_up_and_passes(atom: Path, machine: dict[str, str]) -> None:
    """`make test` makes .venv, installs, compiles, encrypts the demo model; the atom's tests
    of what it made pass."""
    started = time.monotonic()
    env = {**machine, "PYTEST_ADDOPTS": " ".join(SETUP_TESTS)}
    result = run(["make", "test"], cwd=atom, timeout=1500, env=env)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-4000:]
    assert re.search(r"^=+ \d+ passed in ", result.stdout, re.M), result.stdout[-3000:]
    assert " failed" not in result.stdout and " skipped" not in result.stdout
    assert "[setup] creating .venv" in result.stderr
    assert (atom / "models" / "face.enc").is_file()
    print(f"make test from scratch: {took:.0f} s")  # noqa: T201 - shown with -s


def test_every_test_module_imports(atom: Path, machine: dict[str, str]) -> None:
    """The new .venv holds what every test module of the atom imports."""
    python = atom / ".venv" / "bin" / "python"
    assert python.is_file(), "no .venv: test_make_test_sets_up_and_passes makes it first"
    result = run([str(python), "-m", "pytest", "--collect-only", "-q"], cwd=atom, env=machine)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert re.search(r"^\d+ tests collected", result.stdout.strip().splitlines()[-1])


@pytest.fixture
def make_run(atom: Path, machine: dict[str, str]) -> Iterator[tuple[subprocess.Popen, str]]:
    """`make run` in the background, in its own process group, killed with it at the end."""
    port = free_port()
    output = (atom / "make-run.log").open("wb")
    process = subprocess.Popen(
        ["make", "run"],
        cwd=atom,
        env={**machine, "ATOM_PORT": str(port), "ATOM_HOST": "127.0.0.1"},
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process, f"http://127.0.0.1:{port}{PREFIX}"
    finally:
        output.close()
        if group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def group_alive(pgid: int) -> bool:
    """True while a process of the group still runs."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_ready(process: subprocess.Popen, base: str, log: Path, timeout: float = 300) -> None:
    """Wait until the ready route answers 200 (make run may set up first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"make run exited:\n{log.read_text()[-4000:]}"
        try:
            if http("GET", f"{base}/v1/health/ready", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"make run did not become ready:\n{log.read_text()[-4000:]}")


def test_make_run_serves_detect_and_stops(
    atom: Path, make_run: tuple[subprocess.Popen, str]
) -> None:
    """`make run` serves: ready, a face found in the photograph; SIGTERM stops it all."""
    process, base = make_run
    started = time.monotonic()
    wait_ready(process, base, atom / "make-run.log")
    print(f"make run to ready (set up already): {time.monotonic() - started:.1f} s")  # noqa: T201
    photo = atom / "tests" / "data" / "astronaut.jpg"
    body = {"data": [base64.b64encode(photo.read_bytes()).decode()], "src_type": "base64"}
    status, _, reply = http("POST", f"{base}/detect", body)
    assert status == 200, reply
    assert len(reply["objects"][0]) == 1
    os.killpg(process.pid, signal.SIGTERM)  # what Ctrl-C or a job stop sends: make and server.py
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        process.poll()  # reaps make once it ends; server.py is then reaped by init
        if not group_alive(process.pid):
            break
        time.sleep(0.1)
    assert not group_alive(process.pid), "make run or server.py still runs 15 s after SIGTERM"
    with pytest.raises(OSError):
        http("GET", f"{base}/v1/health/ping", timeout=2)
    assert "Application shutdown complete" in (atom / "make-run.log").read_text()
