"""Every supported combination of answers bakes a clean project that passes its own tests."""

import json
import stat
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from scripts.atomctl import TEMPLATE

from .conftest import leftovers, python_for, run

# The supported combinations; each one is baked, linted and tested. Together they cover
# every prompt: a custom name, a 38-character package (lines stay within the line length),
# a two-segment prefix, another port and worker count; a Chinese name without a prefix;
# the Python 3.12 image; each CI choice (gitlab by default).
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
# The CI files of each choice of the `ci` prompt (test_ci.py validates them).
CI_FILES = {"gitlab": {".gitlab-ci.yml"}, "github": {".github/workflows/ci.yml"}, "none": set()}


# make check bakes only the default answers; make test bakes them all.
PARAMS = [
    name if name == "default" else pytest.param(name, marks=pytest.mark.slow)
    for name in COMBINATIONS
]


@pytest.fixture(scope="module", params=PARAMS)
def baked(request: pytest.FixtureRequest, cookies_session: Any) -> tuple[Path, dict[str, str]]:
    """One baked project per combination, made with pytest-cookies."""
    context = COMBINATIONS[request.param]
    result = cookies_session.bake(extra_context=context, template=str(TEMPLATE))
    assert result.exit_code == 0, result.exception
    assert result.exception is None
    return Path(result.project_path), context


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


def test_types_are_clean(baked: tuple[Path, dict[str, str]]) -> None:
    """The generated package passes mypy with its own configuration (make lint runs it)."""
    project, context = baked
    result = run(
        [python_for(context), "-m", "mypy", "--no-incremental", "--cache-dir", "/dev/null"],
        cwd=project,
        timeout=300,
    )
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


@pytest.mark.parametrize(
    "selection",
    [
        pytest.param("not slow", id="unit"),
        pytest.param("slow", id="slow", marks=pytest.mark.slow),
    ],
)
def test_own_suite_passes(baked: tuple[Path, dict[str, str]], selection: str) -> None:
    """The generated project's own tests pass, on the Python it was baked for: its unit
    tests (pytest -m "not slow", make check) and its slow ones (real servers, the wheel)."""
    project, context = baked
    python = python_for(context)
    if python != sys.executable:  # the hook compiled the protector for cookiecutter's Python
        build = run([python, "setup.py", "--quiet", "build_ext", "--inplace"], cwd=project)
        assert build.returncode == 0, build.stdout + build.stderr
    result = run(
        [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", selection],
        cwd=project,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
    assert " failed" not in result.stdout and " skipped" not in result.stdout


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
