"""Every supported combination of answers bakes a clean project that works.

Each combination gets its render (no template syntax, its CI files), lint, types and the
hook's work, its settings; each other than the default its own boot (the real model behind
its prefix, on its Python) and the atom's tests that read the answers (ANSWER_TESTS). The
atom's whole suite runs once, on the default bake, and its unit tests on Python 3.12
(test_atom_suite.py).
"""

import base64
import json
import stat
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from scripts.atomctl import AtomServer, http

from .conftest import COMBINATIONS, Bakes, leftovers, python_for, run

# The CI files of each choice of the `ci` prompt (test_ci.py validates them).
CI_FILES = {"gitlab": {".gitlab-ci.yml"}, "github": {".github/workflows/ci.yml"}, "none": set()}
# The atom's test modules whose outcome the answers change: the package name (every
# module imported), the name and description (settings, OpenAPI, README), the prefix (every
# route), the port and workers (settings, deploy files), the template's record.
ANSWER_TESTS = (
    "test_settings.py",
    "test_structure.py",
    "test_template_info.py",
    "test_configuration_docs.py",
    "test_deploy.py",
    "test_health.py",
    "test_docs.py",
    "test_detect.py",
    "test_handler.py",
    "test_metrics.py",
    "test_v2.py",
)
# xdist workers for all the atom's unit tests, which mostly wait (threads, timeouts,
# retries); a few modules of them, or its slow tests (real server.py processes bounded in
# time), run in one process.
SUITE_WORKERS = "3"

# make check bakes only the default answers; make test bakes them all. The Python 3.12
# combination's tests are in the python312 lane, with its suite (test_atom_suite.py): one
# protector build for 3.12. Its suite runs all the atom's unit tests, ANSWER_TESTS among them.
# Every test here takes a combination: the lane is the combination's.
LANE_MARKS = {
    "default": [pytest.mark.bake],
    "python312": [pytest.mark.python312, pytest.mark.slow],
}
PARAMS = [
    pytest.param(name, marks=LANE_MARKS.get(name, [pytest.mark.bake, pytest.mark.slow]))
    for name in COMBINATIONS
]
OTHERS = [param for param in PARAMS if param.values != ("default",)]
ANSWERED = [param for param in OTHERS if param.values != ("python312",)]


@pytest.fixture(scope="module", params=PARAMS)
def baked(request: pytest.FixtureRequest, bakes: Bakes) -> tuple[Path, dict[str, str]]:
    """One baked project per combination."""
    return bakes(request.param)


@pytest.fixture(scope="module", params=OTHERS)
def other(request: pytest.FixtureRequest, bakes: Bakes) -> tuple[Path, dict[str, str]]:
    """One baked project per combination other than the default."""
    return bakes(request.param)


def test_no_template_syntax_left(baked: tuple[Path, dict[str, str]]) -> None:
    """No generated file holds unrendered cookiecutter syntax."""
    project, _ = baked
    assert leftovers(project) == []


def test_ci_files_follow_the_choice(baked: tuple[Path, dict[str, str]]) -> None:
    """The atom holds the CI file of its `ci` answer and none of the other choices'."""
    project, context = baked
    found = {name for names in CI_FILES.values() for name in names if (project / name).exists()}
    assert found == CI_FILES[context.get("ci", "gitlab")]
    assert (project / ".github").exists() == (context.get("ci") == "github")


def test_ruff_is_clean(baked: tuple[Path, dict[str, str]]) -> None:
    """The generated code passes its own ruff lint and format checks."""
    project, _ = baked
    for args in (["check", "--no-cache", "."], ["format", "--check", "--no-cache", "."]):
        result = run([sys.executable, "-m", "ruff", *args], cwd=project, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr


def test_types_are_clean(
    baked: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The generated package passes mypy with its own configuration (make lint runs it).

    The combinations share one cache, made new in each run: the installed packages are
    analysed once per Python, each atom's own modules every time (their names differ)."""
    project, context = baked
    cache = tmp_path_factory.getbasetemp() / "mypy-cache"
    result = run([python_for(context), "-m", "mypy", "--cache-dir", str(cache)], project, 300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert result.stdout.startswith("Success: no issues found")


def test_hook_finished_the_project(baked: tuple[Path, dict[str, str]]) -> None:
    """The post-gen hook compiled the protector, made a private key, encrypted the demo model."""
    project, context = baked
    package = context.get("package_name", project.name.replace("-", "_"))
    ext_suffix = sysconfig.get_config_var("EXT_SUFFIX")
    assert (project / package / "protection" / f"model_protector{ext_suffix}").is_file()
    key = project / "secrets" / "model.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (project / "models" / "face.enc").read_bytes().startswith(b"\x89ATOMGCM")
    assert "secrets/" in (project / ".gitignore").read_text().splitlines()


def test_answers_reach_the_code(baked: tuple[Path, dict[str, str]]) -> None:
    """The answers become the package directory and the settings' defaults."""
    project, context = baked
    package = context.get("package_name", project.name.replace("-", "_"))
    assert (project / package / "api" / "app.py").is_file()
    code = (
        f"import json; from {package}.config import Settings; s = Settings(_env_file=None); "
        "print(json.dumps([s.atom_api_prefix, s.atom_port, s.atom_workers]))"
    )
    result = run([python_for(context), "-c", code], cwd=project, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        context.get("api_prefix", "/d2atom"),
        int(context.get("port", "8000")),
        int(context.get("workers", "1")),
    ]


# Where the part of a failed suite's output worth reading starts: pytest-timeout's dump
# (the test's captured output, then every thread's stack) or pytest's failure report.
FAILURE_MARKERS = ("+++++ Timeout +++++", "= FAILURES =", "= ERRORS =")


def failure_excerpt(output: str, size: int = 8000) -> str:
    """The start of the first failure report in ``output`` and its last lines (a timeout's
    dump can be longer than what the tail alone kept, and its start was lost)."""
    starts = [output.find(marker) for marker in FAILURE_MARKERS if marker in output]
    if not starts:
        return output[-size:]
    start = min(starts)
    head = output[start : start + size]
    tail = output[max(start + size, len(output) - size // 2) :]
    return head + ("\n[...]\n" if tail else "") + tail


def test_a_failure_excerpt_keeps_both_ends_of_a_timeout_dump() -> None:
    """A timeout's dump keeps its start and its end, however long the output around it."""
    output = (
        "." * 20_000
        + "\n+++++ Timeout +++++\n~~ Stack of MainThread ~~\n  File test_x.py, line 7\n"
        + "idle thread stack\n" * 2_000
        + "= 1 failed, 99 passed =\n"
    )
    excerpt = failure_excerpt(output)
    assert excerpt.startswith("+++++ Timeout +++++\n~~ Stack of MainThread ~~")
    assert excerpt.endswith("= 1 failed, 99 passed =\n")
    assert len(excerpt) < 13_000
    assert failure_excerpt("short and no marker") == "short and no marker"


def suite_failure(result: subprocess.CompletedProcess[str]) -> str:
    """The message of a failed run of the atom's pytest: ``failure_excerpt`` of its output,
    the whole of which is kept in a file of the session's temporary directory."""
    kept = Path(tempfile.mkdtemp(prefix="atom-suite-")) / "output.txt"
    kept.write_text(result.stdout + "\n--- stderr ---\n" + result.stderr)
    excerpt = failure_excerpt(result.stdout) + result.stderr[-3000:]
    return f"the atom's suite failed (all of its output: {kept}):\n{excerpt}"


def atom_suite(project: Path, python: str, *args: str) -> None:
    """The atom's own pytest with ``args``, on ``python``; it must pass and skip nothing."""
    result = run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], project, 900)
    assert result.returncode == 0, suite_failure(result)
    assert " passed" in result.stdout
    assert " failed" not in result.stdout and " skipped" not in result.stdout


@pytest.fixture(scope="module", params=ANSWERED)
def answered(request: pytest.FixtureRequest, bakes: Bakes) -> tuple[Path, dict[str, str]]:
    """The combinations whose answers the atom's tests read differently (not Python 3.12's)."""
    return bakes(request.param)


def test_answer_tests_pass(answered: tuple[Path, dict[str, str]]) -> None:
    """The atom's tests that read the answers pass with this combination's answers."""
    project, context = answered
    tests = [f"tests/{name}" for name in ANSWER_TESTS]
    atom_suite(project, python_for(context), "-m", "not slow", *tests)


def test_boots_and_detects(other: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    """server.py of this combination, on its Python, becomes ready with the real model and
    finds the face in the photograph behind its own prefix."""
    project, context = other
    photo = project / "tests" / "data" / "astronaut.jpg"
    body = {"data": [base64.b64encode(photo.read_bytes()).decode()], "src_type": "base64"}
    prefix = context.get("api_prefix", "/d2atom")
    server = AtomServer(
        project, env={"LOG_ROOT": str(tmp_path)}, python=python_for(context), prefix=prefix
    )
    with server:
        status, _, ready = http("GET", server.url("/v1/health/ready"))
        assert (status, ready["models"]) == (200, {"face": "ready"})
        status, _, reply = http("POST", server.url("/detect"), body)
    assert status == 200
    assert [len(faces) for faces in reply["objects"]] == [1]
    assert server.stop() == 0
