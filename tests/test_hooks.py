"""The pre-gen hook: bad answers are refused with one line naming the prompt."""

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import jinja2
import pytest

from scripts.atomctl import TEMPLATE

from .conftest import DEFAULT_ANSWERS, run

REJECTED = [
    ("project_name", "   "),
    ("project_slug", "my atom"),
    ("project_slug", "-atom"),
    ("project_slug", "../evil"),
    ("project_slug", "a/b"),
    ("package_name", "my-atom"),
    ("package_name", "1atom"),
    ("package_name", "MyAtom"),
    ("package_name", "class"),
    ("package_name", "match"),
    ("package_name", "json"),
    ("package_name", "logging"),
    ("package_name", "fastapi"),
    ("package_name", "numpy"),
    ("package_name", "cv2"),
    ("package_name", "tests"),
    ("package_name", "atom\u00e9"),
    ("api_prefix", "/d2atom/"),
    ("api_prefix", "d2atom"),
    ("api_prefix", "/"),
    ("api_prefix", "/a//b"),
    ("api_prefix", "/a b"),
    ("api_prefix", "/a?b"),
    ("api_prefix", "/d2atom\n"),  # a regex's $ matches before a final newline
    ("project_slug", "my-atom\n"),
    ("package_name", "my_atom\n"),
    ("port", "0"),
    ("port", "65536"),
    ("port", "-1"),
    ("port", "http"),
    ("port", "80.5"),
    ("port", "8_000"),  # int() accepts underscores
    ("port", "\u0668\u0660\u0660\u0660"),  # and other scripts' digits
    ("port", " 8000"),
    ("workers", "0"),
    ("workers", "-2"),
    ("workers", "two"),
    ("workers", "1_0"),
]

ACCEPTED = [
    ("api_prefix", ""),
    ("api_prefix", "/a/b-c_d.e~f"),
    ("port", "1"),
    ("port", "65535"),
    ("workers", "64"),
    ("package_name", "_private_atom"),
    ("project_slug", "atom.v2_x-y"),
]

DEFAULTS = DEFAULT_ANSWERS


@pytest.fixture(scope="module")
def hook(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The pre-gen hook rendered as cookiecutter renders it, imported as a module."""
    source = (TEMPLATE / "hooks" / "pre_gen_project.py").read_text()
    rendered = jinja2.Environment().from_string(source).render(cookiecutter=DEFAULTS)
    path = tmp_path_factory.mktemp("hook") / "pre_gen_project.py"
    path.write_text(rendered)
    spec = importlib.util.spec_from_file_location("pre_gen_project", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("key", "value"), REJECTED)
def test_validate_rejects(hook: ModuleType, key: str, value: str) -> None:
    """validate() returns one message, starting with the prompt's name."""
    errors = hook.validate({**DEFAULTS, key: value})
    assert len(errors) == 1
    assert errors[0].startswith(f"{key}: ")
    assert "\n" not in errors[0]


@pytest.mark.parametrize(("key", "value"), ACCEPTED)
def test_validate_accepts(hook: ModuleType, key: str, value: str) -> None:
    """Edge values that are valid pass."""
    assert hook.validate({**DEFAULTS, key: value}) == []


def test_rendered_hook_reads_answers_as_json(hook: ModuleType) -> None:
    """The hook's answers come from tojson, so quotes and backslashes survive intact."""
    source = (TEMPLATE / "hooks" / "pre_gen_project.py").read_text()
    hostile = {**DEFAULTS, "project_name": 'a "q" \\ \'s\' """ \n end'}
    rendered = jinja2.Environment().from_string(source).render(cookiecutter=hostile)
    line = next(line for line in rendered.splitlines() if "json.loads" in line)
    literal = line.split("json.loads(", 1)[1].rsplit(")", 1)[0]
    assert json.loads(eval(literal)) == hostile  # the literal the hook evaluates


@pytest.mark.parametrize(("key", "value"), REJECTED[::3])
def test_cookiecutter_stops_with_one_line(tmp_path: Path, key: str, value: str) -> None:
    """The real cookiecutter run fails, prints one ERROR line naming the prompt, creates nothing."""
    result = run(
        [
            *(sys.executable, "-m", "cookiecutter", "--no-input"),
            *("-o", str(tmp_path), str(TEMPLATE), f"{key}={value}"),
        ],
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith(f"ERROR: {key}: ")]
    assert len(ours) == 1, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_cookiecutter_names_every_bad_answer_at_once(tmp_path: Path) -> None:
    """Two bad answers give two ERROR lines in prompt order: the person fixes both in one go."""
    result = run(
        [
            *(sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(tmp_path)),
            *(str(TEMPLATE), "api_prefix=/d2atom/", "port=80a"),
        ],
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    ours = [line for line in lines if line.startswith(("ERROR: api_prefix: ", "ERROR: port: "))]
    assert [line.split(":")[1].strip() for line in ours] == ["api_prefix", "port"], result.stderr
    assert list(tmp_path.iterdir()) == []
