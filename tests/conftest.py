"""Fixtures of the template tests: baked projects and subprocess helpers."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.atomctl import TEMPLATE, cached_bake

PYTHON312 = TEMPLATE / ".venv-py312" / "bin" / "python"
# The answers of a default bake, as the hooks see them.
DEFAULT_ANSWERS = {
    "project_name": "My Atom",
    "project_slug": "my-atom",
    "package_name": "my_atom",
    "api_prefix": "/d2atom",
    "port": "8000",
    "workers": "1",
    "ci": "gitlab",
}

# The supported combinations of answers; test_bake.py bakes, lints and type-checks each.
# Together they cover every prompt: a custom name, a 38-character package (lines stay
# within the line length), a two-segment prefix, another port and worker count; a Chinese
# name without a prefix; the Python 3.12 image; each CI choice (gitlab by default).
COMBINATIONS = {
    "default": {},
    "custom": {
        "project_name": "Vehicle Plate Reader",
        "package_name": "a_rather_long_package_name_for_an_atom",
        "api_prefix": "/v1atom/plates",
        "port": "8080",
        "workers": "4",
        "ci": "github",
    },
    "chinese-no-prefix": {
        "project_name": "人脸检测",
        "project_description": "人脸检测服务",
        "api_prefix": "",
        "ci": "none",
    },
    "python312": {"python_version": "3.12"},
}


@dataclass(frozen=True)
class Lane:
    """A lane of `make test`: a pytest marker (registered here), run by scripts/gate.py in
    a pytest process of its own, beside other lanes."""

    about: str  # the marker's description (pytest --markers)
    estimate: int  # its seconds in a `make test` here: the gate starts the longest first
    slow: bool = True  # every test of the lane is slow (make check leaves it out)


# Every test is in one lane: its lane marker, or "template" when it has none. A new lane: a
# row here and `pytestmark = pytest.mark.<name>` in its test module (DEVELOPERS.md).
LANES = {
    "template": Lane("hooks, CI files, releases, the gate: the template's quick checks", 55, False),
    "atom_suite": Lane(
        "the atom's own suite on the default bake (its unit tests quick)", 220, False
    ),
    "bake": Lane("each combination of answers baked, linted, type-checked, booted", 230, False),
    "python312": Lane("the atom baked for Python 3.12: its checks and unit tests, on 3.12", 180),
    "container": Lane("the container lane: podman builds and runs the image", 180),
    "upgrade": Lane("atoms over their lifetime: a throw-away template repository, cruft", 150),
    "answers": Lane("hostile answers (quotes, backslashes, newlines, Chinese) bake clean", 135),
    "fuzz": Lane("the fuzz lane: schemathesis against a real server", 135),
    "add_model": Lane("a second route module with its own model, the README's way", 65),
    "nginx": Lane("the nginx lane: nginx_run.py with real nginx and workers", 75),
    "migration": Lane("linker_atom services moved into a baked atom, run for real", 40),
    "hostile_input": Lane(
        "the attacks of issues 12 and 22 against nginx_run.py and 2 workers, root or not", 45
    ),
    "prompts": Lane("a person answers the real cookiecutter prompts in a pseudo-terminal", 30),
    "upstream": Lane("the default atom's suite and mypy on the newest FastAPI and co.", 300),
    "soak": Lane("the soak lane: thousands of detect calls through nginx", 35),
    "demo": Lane("make demo, run for real", 35),
    "stream": Lane("detect/stream through nginx_run and 2 workers", 20),
    "docs_render": Lane("/docs and /redoc in headless Chromium: every route, one called", 15),
    "boot": Lane("python server.py in the default atom: health, detect, errors, logs", 15),
    "readme_blocks": Lane(
        "a fresh machine: every README command block, as a plain user in a login shell", 200
    ),
    "k8s": Lane("the Kubernetes manifests of several combinations validate offline", 10),
}
DEFAULT_LANE = "template"

# Unrendered template syntax that must never reach a generated file (an atom may name the
# template's cookiecutter.json).
LEFTOVER_RE = re.compile(r"\{\{\s*cookiecutter|\{%|\{#|cookiecutter\.(?!json\b)\w")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".cfg", ".ini", ".yml", ".yaml", ".example", ""}
# Folders the atom's tools make in a baked atom once its suite or linters have run.
MADE_LATER = {".venv", ".ruff_cache", ".mypy_cache", ".pytest_cache", "__pycache__", "build"}


# The variables by which `make test` (the make running pytest) reaches every make below it.
OUTER_MAKE = ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")


def run(
    args: list[str], cwd: Path, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command with a time bound; return its result (never raises on failure).

    Its temporary files go where this session's go (a cookiecutter run leaves its hook
    scripts there: see hook_scripts_in_pytest_tmp).
    """
    env = {**(os.environ if env is None else env), "TMPDIR": tempfile.gettempdir()}
    for name in OUTER_MAKE:  # a make the test runs is not a sub-make of `make test`
        env.pop(name, None)
    return subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def python_for(context: dict[str, str]) -> str:
    """The interpreter that runs an atom baked with this context."""
    if context.get("python_version") == "3.12":
        assert PYTHON312.exists(), (
            f"{PYTHON312} is missing: run scripts/setup.sh on a machine with python3.12"
        )
        return str(PYTHON312)
    return sys.executable


def leftovers(project: Path) -> list[str]:
    """Files (with line numbers) that still hold template syntax."""
    found = []
    for path in sorted(project.rglob("*")):
        if not path.is_file() or path.suffix not in TEXT_SUFFIXES:
            continue
        if MADE_LATER & set(path.relative_to(project).parts):
            continue  # written by the atom's own tools after the bake (ruff's cache is binary)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if LEFTOVER_RE.search(line):
                found.append(f"{path.relative_to(project)}:{number}: {line.strip()}")
    return found


def pytest_configure(config: pytest.Config) -> None:
    """Register each lane's marker (``--strict-markers`` refuses any other) and the clock
    that times the lanes."""
    for name, lane in LANES.items():
        config.addinivalue_line("markers", f"{name}: {lane.about}")
    config.pluginmanager.register(LaneClock(), "lane-clock")


def lane_of(item: pytest.Item) -> str:
    """The lane of a test: its one lane marker (`pytest -m <lane>` selects it), else
    DEFAULT_LANE."""
    marked = {mark.name for mark in item.iter_markers() if mark.name in LANES}
    if len(marked) > 1:
        raise pytest.UsageError(f"{item.nodeid} is in several lanes: {sorted(marked)}")
    return marked.pop() if marked else DEFAULT_LANE


@pytest.hookimpl(tryfirst=True)  # before -m selects: the markers added here count
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test gets its lane's marker; a test of a slow lane is slow too (`make check`,
    `pytest -m "not slow"`, leaves it out)."""
    for item in items:
        name = lane_of(item)
        if not item.get_closest_marker(name):
            item.add_marker(getattr(pytest.mark, name))
        if LANES[name].slow:
            item.add_marker(pytest.mark.slow)


class LaneClock:
    """Times each test's phases by lane and prints the lane table at the end of the run.

    For scripts/gate.py: with ATOM_GATE_COLLECT set, the lane of every collected test is
    written to that file (JSON); with ATOM_GATE_RECORD set, each phase is appended to that
    file (JSON lines)."""

    def __init__(self) -> None:
        self.lanes: dict[str, str] = {}
        self.phases: list[dict] = []

    @pytest.hookimpl(trylast=True)  # after -m deselected
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Remember the lane of each test that will run."""
        self.lanes = {item.nodeid: lane_of(item) for item in items}
        listing = os.environ.get("ATOM_GATE_COLLECT")
        if listing:
            Path(listing).write_text(json.dumps(self.lanes, indent=0), encoding="utf-8")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Note one phase (setup, call, teardown) of a test."""
        phase = {
            "nodeid": report.nodeid,
            "lane": self.lanes.get(report.nodeid, DEFAULT_LANE),
            "when": report.when,
            "outcome": report.outcome,
            "duration": round(report.duration, 3),
            "start": report.start,
            "stop": report.stop,
        }
        self.phases.append(phase)
        record = os.environ.get("ATOM_GATE_RECORD")
        if record:
            with open(record, "a", encoding="utf-8") as out:
                out.write(json.dumps(phase) + "\n")

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        """The lane table, after pytest's own summary."""
        if self.phases:
            terminalreporter.write_sep("=", "time per lane")
            terminalreporter.write_line(f"{'lane':<16} {LaneTime.HEADER}")
            for name, times in lane_times(self.phases).items():
                terminalreporter.write_line(f"{name:<16} {times}")


@dataclass
class LaneTime:
    """The tests of a lane that ran, those that failed, its wall time (first start to last
    stop) and the sum of its tests' phases."""

    HEADER = f"{'tests':>5} {'failed':>6} {'wall s':>7} {'sum s':>7}"
    tests: set[str]
    failed: set[str]
    start: float
    stop: float
    total: float = 0.0

    def __str__(self) -> str:
        wall = self.stop - self.start
        return f"{len(self.tests):>5} {len(self.failed):>6} {wall:>7.1f} {self.total:>7.1f}"


def lane_times(phases: list[dict]) -> dict[str, LaneTime]:
    """The LaneTime of each lane in ``phases``, the longest wall time first."""
    lanes: dict[str, LaneTime] = {}
    for phase in phases:
        times = lanes.setdefault(
            phase["lane"], LaneTime(set(), set(), phase["start"], phase["stop"])
        )
        times.tests.add(phase["nodeid"])
        if phase["outcome"] == "failed":
            times.failed.add(phase["nodeid"])
        times.start = min(times.start, phase["start"])
        times.stop = max(times.stop, phase["stop"])
        times.total += phase["duration"]
    return dict(sorted(lanes.items(), key=lambda item: item[1].start - item[1].stop))


@pytest.fixture(scope="session", autouse=True)
def hook_scripts_in_pytest_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """cookiecutter leaves each hook it runs as a ``.py`` file in the temporary folder
    (scripts/atomctl.hook_scripts_contained): for pytest-cookies' bakes, that folder is
    one of pytest's, which keeps only its last runs. pytest's own folder is made first."""
    folder = tmp_path_factory.mktemp("hook-scripts")
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = previous


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """An ATOM_RUNTIME_DIR that nginx's workers can reach when the launcher runs as root:
    they run as nobody then, and pytest's own folders (tempfile's here) are private."""
    folder = Path(tempfile.mkdtemp(prefix="atom-run-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


Bakes = Callable[[str], tuple[Path, dict[str, str]]]


def bake_of(name: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A combination baked (copied from the bake cache) and runnable on its Python: the
    hook compiled the protector for cookiecutter's Python, another one rebuilds it."""
    context = COMBINATIONS[name]
    project = cached_bake(tmp_path_factory.mktemp(name), **context)
    python = python_for(context)
    if python != sys.executable:
        build = run([python, "setup.py", "--quiet", "build_ext", "--inplace"], cwd=project)
        assert build.returncode == 0, build.stdout + build.stderr
    return project, context


@pytest.fixture(scope="session")
def bakes(tmp_path_factory: pytest.TempPathFactory) -> Bakes:
    """The combinations by name (COMBINATIONS), each made once in the session."""
    made: dict[str, tuple[Path, dict[str, str]]] = {}

    def get(name: str) -> tuple[Path, dict[str, str]]:
        if name not in made:
            made[name] = bake_of(name, tmp_path_factory)
        return made[name]

    return get


@pytest.fixture(scope="session")
def default_atom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The atom baked with the default answers, this session's own copy (shared by the
    lanes of the session, which may add files to it)."""
    return cached_bake(tmp_path_factory.mktemp("default"))
