"""The atom's own pipeline (the ``ci`` prompt): the GitLab CI and GitHub Actions files
validate offline against those systems' published schemas (check-jsonschema ships them),
and every command they run is a make target of the atom that a template test runs."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cookiecutter.main import cookiecutter

from scripts.atomctl import TEMPLATE, hook_scripts_contained

# The CI file of each choice and its schema among check-jsonschema's vendored ones.
CI_FILES = {
    "gitlab": (".gitlab-ci.yml", "vendor.gitlab-ci"),
    "github": (".github/workflows/ci.yml", "vendor.github-workflows"),
}
# The make targets the CI files may run, and the template test that runs each for real.
EXERCISED = {
    "lint": "tests/test_upgrade.py",  # make lint in an upgraded atom
    "test": "tests/test_readme_blocks.py",  # make test on what make run set up from nothing
    "upgrade-check": "tests/test_upgrade.py",
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The atom rendered for each CI choice (files only: the hooks' work is test_bake's)."""
    atoms = {}
    for choice in CI_FILES:
        with hook_scripts_contained():
            atoms[choice] = Path(
                cookiecutter(
                    str(TEMPLATE),
                    no_input=True,
                    output_dir=str(tmp_path_factory.mktemp(choice)),
                    extra_context={"ci": choice},
                    accept_hooks=False,
                )
            )
    return atoms


def validate(path: Path, schema: str) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with a vendored schema, offline."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("choice", sorted(CI_FILES))
def test_ci_file_validates(rendered: dict[str, Path], choice: str) -> None:
    """The CI file of the choice is valid for its CI system."""
    name, schema = CI_FILES[choice]
    result = validate(rendered[choice] / name, schema)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("choice", "breakage"),
    [
        ("gitlab", ("allow_failure: true", "allow_failure: sometimes")),
        ("github", ("runs-on: ubuntu-latest", "runs-on: [")),
    ],
)
def test_the_schema_catches_a_broken_file(
    rendered: dict[str, Path], tmp_path: Path, choice: str, breakage: tuple[str, str]
) -> None:
    """The validation is real: the same file with one wrong value fails it."""
    name, schema = CI_FILES[choice]
    text = (rendered[choice] / name).read_text()
    assert breakage[0] in text
    broken = tmp_path / Path(name).name
    broken.write_text(text.replace(breakage[0], breakage[1], 1))
    assert validate(broken, schema).returncode != 0


def commands(choice: str, document: dict) -> list[str]:
    """Every shell command of a CI file."""
    if choice == "gitlab":
        jobs = [job for job in document.values() if isinstance(job, dict)]
        lines = [
            line for job in jobs for key in ("before_script", "script") for line in job.get(key, [])
        ]
    else:
        lines = [
            step["run"]
            for job in document["jobs"].values()
            for step in job["steps"]
            if "run" in step
        ]
    return lines


@pytest.mark.parametrize("choice", sorted(CI_FILES))
def test_ci_runs_tested_make_targets(rendered: dict[str, Path], choice: str) -> None:
    """Lint, tests and upgrade-check are make targets of the atom that a template test runs;
    the image is built with the BASE_IMAGE and PIP_INDEX_URL build arguments."""
    atom = rendered[choice]
    name, _ = CI_FILES[choice]
    lines = commands(choice, yaml.safe_load((atom / name).read_text()))
    targets = [target for line in lines for target in re.findall(r"\bmake ([\w-]+)", line)]
    assert sorted(targets) == ["lint", "test", "upgrade-check"]
    makefile = (atom / "Makefile").read_text()
    for target in targets:
        assert re.search(rf"^{target}:", makefile, re.M), f"no make target {target}"
        ran = (TEMPLATE / EXERCISED[target]).read_text()
        assert re.search(rf'"(make )?{target}"', ran), f"{EXERCISED[target]} runs no {target}"
    (build,) = [line for line in lines if line.startswith("docker build")]
    assert "--build-arg BASE_IMAGE=" in build and "--build-arg PIP_INDEX_URL=" in build
    assert build.rstrip().endswith(" .")
