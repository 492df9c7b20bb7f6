"""A person generating an atom in a terminal: the real `cookiecutter <template>` in a
pseudo-terminal, each prompt shown exactly as cookiecutter.json writes it and answered by
keys (Enter for a default, a choice's number, a non-ASCII name), then the atom made of
those answers. The prompts lane (`pytest -m prompts`) drives the terminal; the plain-text
check of the prompt texts runs in `make check`."""

import ast
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pexpect
import pytest
from rich.text import Text

from scripts.atomctl import TEMPLATE

from .throwaway import cookiecutter_config

CONTEXT = json.loads((TEMPLATE / "cookiecutter.json").read_text(encoding="utf-8"))
PROMPTS: dict[str, str] = CONTEXT["__prompts__"]
# The questions cookiecutter asks, in its order (keys starting with "_" are not asked).
ASKED = [key for key in CONTEXT if not key.startswith("_")]
COOKIECUTTER = Path(sys.executable).with_name("cookiecutter")
# Terminal control sequences (colours, bold, cursor): what a person sees is the rest.
CONTROL_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# What a renderer could take for markup rather than text: rich's [tags] and :emoji: codes,
# backslash escapes.
MARKUP_RE = re.compile(r"[\[\]\\]|:[^\s:]+:")
ANSWER_TIMEOUT = 30  # seconds for cookiecutter to show the next prompt
FINISH_TIMEOUT = 180  # seconds for the hooks after the last answer (a protector build)
SIZE = (40, 200)  # the terminal's rows and columns: wide enough that no prompt wraps


@dataclass
class Person:
    """One generation: what the person types at each prompt ("" is Enter), the defaults
    the derived prompts show, what the atom must then hold, and the environment's extras."""

    name: str
    typed: dict[str, str]
    shown: dict[str, str]
    atom: dict[str, object]
    env: dict[str, str] = field(default_factory=dict)


PEOPLE = [
    Person(
        "defaults",
        typed=dict.fromkeys(ASKED, ""),
        shown={"project_slug": "my-atom", "package_name": "my_atom"},
        atom={
            "project_name": "My Atom",
            "project_slug": "my-atom",
            "package_name": "my_atom",
            "project_description": "An AI-inference atom served over HTTP.",
            "api_prefix": "/d2atom",
            "port": 8000,
            "workers": 1,
            "python_version": "3.11",
            "ci": "gitlab",
        },
    ),
    Person(
        "chinese-name",
        typed={
            "project_name": "人脸检测",
            "project_slug": "",
            "package_name": "",
            "project_description": "人脸检测服务",
            "api_prefix": "/vision/v1",
            "port": "9000",
            "workers": "4",
            "python_version": "2",
            "ci": "2",
        },
        shown={"project_slug": "ren-lian-jian-ce", "package_name": "ren_lian_jian_ce"},
        atom={
            "project_name": "人脸检测",
            "project_slug": "ren-lian-jian-ce",
            "package_name": "ren_lian_jian_ce",
            "project_description": "人脸检测服务",
            "api_prefix": "/vision/v1",
            "port": 9000,
            "workers": 4,
            "python_version": "3.12",
            "ci": "github",
        },
        env={"CC": "/nonexistent/cc"},  # the hook builds nothing: a person without gcc
    ),
    Person(
        "typed-names",
        typed={
            "project_name": "Edge Atom",
            "project_slug": "edge",
            "package_name": "edge_core",
            "project_description": "",
            "api_prefix": " ",
            "port": "8080",
            "workers": "2",
            "python_version": "1",
            "ci": "3",
        },
        shown={"project_slug": "edge-atom", "package_name": "edge"},
        atom={
            "project_name": "Edge Atom",
            "project_slug": "edge",
            "package_name": "edge_core",
            "project_description": "An AI-inference atom served over HTTP.",
            "api_prefix": "",
            "port": 8080,
            "workers": 2,
            "python_version": "3.11",
            "ci": "none",
        },
        env={"CC": "/nonexistent/cc"},
    ),
]
# The CI file of each choice (the hook removes the others).
CI_FILES = {"gitlab": ".gitlab-ci.yml", "github": ".github/workflows/ci.yml", "none": None}


def test_prompt_texts_are_plain_text() -> None:
    """Every question has a prompt text, and no text or choice holds anything a renderer
    could take for markup (rich, which cookiecutter 2.7.1 uses, shows each as written)."""
    assert set(PROMPTS) == set(ASKED)
    texts = [
        *PROMPTS.values(),
        *(str(c) for v in CONTEXT.values() if isinstance(v, list) for c in v),
    ]
    for text in texts:
        assert not MARKUP_RE.search(text), f"{text!r} could be read as markup"
        assert Text.from_markup(text).plain == text


def expected_prompt(number: int, key: str, default: str) -> str:
    """The prompt as cookiecutter 2.7.1 shows it: the counter, our text, the choices
    (numbered) or the default, and ': '."""
    head = f"  [{number}/{len(ASKED)}] {PROMPTS[key]}"
    choices = CONTEXT[key]
    if not isinstance(choices, list):
        return f"{head} ({default}): "
    lines = [f"    {index} - {choice}\n" for index, choice in enumerate(choices, 1)]
    numbers = "/".join(str(index) for index in range(1, len(choices) + 1))
    return f"{head}\n{''.join(lines)}    Choose from [{numbers}] (1): "


def screen(raw: str) -> str:
    """The text a person sees in the terminal's output: no control sequences, no CRs."""
    return CONTROL_RE.sub("", raw).replace("\r\n", "\n")


def read_prompt(child: pexpect.spawn, so_far: str = "") -> str:
    """What the terminal shows until cookiecutter waits for an answer (a prompt ends with
    the default in brackets and ': ')."""
    while not screen(so_far).endswith("): "):
        try:
            so_far += child.read_nonblocking(4096, timeout=ANSWER_TIMEOUT)
        except (pexpect.TIMEOUT, pexpect.EOF) as exc:
            pytest.fail(f"no prompt ({type(exc).__name__}); the terminal showed:\n{screen(so_far)}")
    return screen(so_far)


def environment(folder: Path, extra: dict[str, str]) -> dict[str, str]:
    """A person's terminal in ``folder``: UTF-8, colours, cookiecutter's clones and replays
    kept in ``folder``, none of this session's terminal or colour settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "CC"}
    }
    return {
        **env,
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PWD": str(folder),
        "COOKIECUTTER_CONFIG": str(cookiecutter_config(folder)),
        "TMPDIR": tempfile.gettempdir(),  # the hook scripts cookiecutter leaves (conftest)
        **extra,
    }


def generate(person: Person, folder: Path) -> str:
    """Run `cookiecutter <template>` in a terminal in ``folder``, answer as ``person``, and
    check every prompt as shown; return what the terminal showed after the last answer."""
    assert COOKIECUTTER.is_file(), f"{COOKIECUTTER} is missing: run scripts/setup.sh"
    child = pexpect.spawn(
        str(COOKIECUTTER),
        [str(TEMPLATE)],
        cwd=str(folder),
        env=environment(folder, person.env),
        encoding="utf-8",
        dimensions=SIZE,
        timeout=ANSWER_TIMEOUT,
    )
    try:
        echo = ""
        for number, key in enumerate(ASKED, 1):
            default = person.shown.get(key, str(CONTEXT[key]))
            assert read_prompt(child) == echo + expected_prompt(number, key, default), key
            child.sendline(person.typed[key])
            echo = person.typed[key] + "\n"
        child.expect(pexpect.EOF, timeout=FINISH_TIMEOUT)
        shown = screen(child.before)
        child.close()
        assert child.exitstatus == 0, shown
    finally:
        child.close(force=True)
    assert shown.startswith(echo), shown
    return shown[len(echo) :]


def about(package: Path) -> dict[str, object]:
    """The answers the atom's about.py holds (its constants; names computed from others,
    such as TEMPLATE_VERSION, left out)."""
    tree = ast.parse((package / "about.py").read_text(encoding="utf-8"))
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }


def check_atom(project: Path, want: dict[str, object]) -> None:
    """The atom in ``project`` is made of the answers ``want``."""
    package = project / str(want["package_name"])
    constants = about(package)
    assert {key.lower(): constants[key] for key in ("PORT", "WORKERS", "API_PREFIX")} == {
        key: want[key] for key in ("port", "workers", "api_prefix")
    }
    assert constants["PROJECT_NAME"] == want["project_name"]
    assert constants["PROJECT_DESCRIPTION"] == want["project_description"]
    dockerfile = (project / "Dockerfile").read_text(encoding="utf-8")
    assert f"ARG PYTHON_VERSION={want['python_version']}\n" in dockerfile
    for choice, name in CI_FILES.items():
        if name:
            assert (project / name).is_file() == (choice == want["ci"]), name
    recorded = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    answers = recorded["context"]["cookiecutter"]
    assert {key: answers[key] for key in want} == {key: str(value) for key, value in want.items()}


@pytest.mark.prompts
@pytest.mark.timeout(300)
@pytest.mark.parametrize("person", PEOPLE, ids=[person.name for person in PEOPLE])
def test_a_person_answers_the_prompts_in_a_terminal(person: Person, tmp_path: Path) -> None:
    """Each prompt appears as written in cookiecutter.json, the answers typed (Enter, a
    choice's number, a space for no prefix, Chinese) make the atom, and the hook's last
    line tells the person what to run next."""
    after = generate(person, tmp_path)
    project = tmp_path / str(person.atom["project_slug"])
    assert project.is_dir(), after
    check_atom(project, person.atom)
    lines = after.splitlines()
    assert lines[-1].startswith("post-gen: next: ") and f"`cd {project.name}`" in lines[-1]
    built = "CC" not in person.env
    assert ("post-gen: protector compiled, models/face.enc encrypted" in lines) == built, after
    assert (project / "models" / "face.enc").is_file() == built
    # The next step names only what is still to make: nothing of the hook's when it built.
    assert ("the protector" in lines[-1]) != built, lines[-1]
