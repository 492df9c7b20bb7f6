"""``make route`` (scaffold/new_route.py): the module it writes, the line it adds to
``ROUTE_MODULES``, and the names it refuses; on a copy of the atom's route files.

The module it writes keeps the contract (test_route_contract.py renders it); a template
test runs ``make route`` itself, with a model, and serves the new route from server.py.
"""

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from {{ cookiecutter.package_name }}.config import Settings

from .conftest import ROOT

PACKAGE = Settings.__module__.split(".")[0]
NEW = "scaffolded"  # a name the atom has no module, model or path for


def scaffold_script() -> ModuleType:
    """scaffold/new_route.py, imported (it is a script, not a module of the package)."""
    spec = importlib.util.spec_from_file_location("new_route", ROOT / "scaffold" / "new_route.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def new_route() -> ModuleType:
    """The script's functions."""
    return scaffold_script()


@pytest.fixture
def atom(tmp_path: Path, new_route: ModuleType) -> Any:
    """A copy of the atom's route modules, api/route.py and about.py, as make route sees
    them."""
    api = tmp_path / PACKAGE / "api"
    shutil.copytree(ROOT / PACKAGE / "api" / "interface", api / "interface")
    shutil.copy(ROOT / PACKAGE / "api" / "route.py", api / "route.py")
    shutil.copy(ROOT / PACKAGE / "about.py", tmp_path / PACKAGE / "about.py")
    return new_route.Atom(tmp_path)


def test_the_module_is_written_and_listed(new_route: ModuleType, atom: Any) -> None:
    """The module is the template rendered for the name, listed after the others, once."""
    listed = new_route.listed_modules(atom)[1]
    todo = new_route.plan(atom, NEW, "")
    new_route.write(atom, todo)
    assert (atom.interface / f"{NEW}.py").read_text() == new_route.render(NEW)
    assert new_route.listed_modules(atom)[1] == [*listed, NEW]
    with pytest.raises(new_route.RefusedError, match=f"'{NEW}' is in ROUTE_MODULES"):
        new_route.plan(atom, NEW, "")


@pytest.mark.parametrize(
    ("name", "refusal"),
    [
        ("", "give the route a name"),
        ("Eyes", "is not a route name"),
        ("eyes__left", "is not a route name"),
        ("eyes_", "is not a route name"),
        ("2eyes", "is not a route name"),
        ("eyes-left", "is not a route name"),
        ("e" * 33, "is not a route name"),
        ("class", "is a Python keyword"),
        ("v2", "the atom's runtime serves /v2 itself"),
        ("metrics", "the atom's runtime serves /metrics itself"),
        ("predict", "the route module uses 'predict' for something else"),
        ("time", "the route module uses 'time' for something else"),
        ("healthcheck", "healthcheck.py exists already"),
    ],
)
def test_names_are_refused(new_route: ModuleType, atom: Any, name: str, refusal: str) -> None:
    """A name that cannot be a module, a model id, a path and ATOM_BATCH__<NAME>, or that
    the runtime or the module already use, is refused before anything is written."""
    before = sorted(path.name for path in atom.interface.iterdir())
    with pytest.raises(new_route.RefusedError, match=re.escape(refusal)):
        new_route.plan(atom, name, "")
    assert sorted(path.name for path in atom.interface.iterdir()) == before


def test_a_model_or_path_of_another_module_is_refused(new_route: ModuleType, atom: Any) -> None:
    """A module named otherwise that declares the model, or serves the path, refuses it."""
    (atom.interface / "plates.py").write_text(
        'ROUTE = "/lens"\nrouter.model_loader("ocr")\nrouter.post(f"{ROUTE}/read")\n'
    )
    with pytest.raises(new_route.RefusedError, match="declares the model 'ocr' already"):
        new_route.plan(atom, "ocr", "")
    with pytest.raises(new_route.RefusedError, match="serves /lens already"):
        new_route.plan(atom, "lens", "")


def test_a_missing_model_file_is_refused(new_route: ModuleType, atom: Any) -> None:
    """SRC must be a file: the check comes before the model is encrypted or a file written."""
    with pytest.raises(
        new_route.RefusedError, match=re.escape("SRC=/no/such/model.onnx: no such file")
    ):
        new_route.plan(atom, NEW, "/no/such/model.onnx")


@pytest.mark.parametrize(
    ("listing", "expected"),
    [
        ('[\n    "detect",\n]', '[\n    "detect",\n    "eyes",\n]'),
        ('[\n    "detect"  # the demo\n]', '[\n    "detect",  # the demo\n    "eyes",\n]'),
        ('[\n    "detect",\n    # "old",\n]', '[\n    "detect",\n    # "old",\n    "eyes",\n]'),
        ("[\n]", '[\n    "eyes",\n]'),
        ('["detect"]', '["detect", "eyes"]'),
        ('["detect",]', '["detect", "eyes"]'),
        ("[]", '["eyes"]'),
    ],
)
def test_the_line_keeps_the_lists_shape(
    new_route: ModuleType, atom: Any, listing: str, expected: str
) -> None:
    """The name goes at the end of the list, on a line of its own when the list has one name
    a line; the rest of api/route.py is kept byte for byte."""
    route_file = atom.route_file
    head = '"""Route modules (路由)."""\n\n'
    route_file.write_text(f"{head}ROUTE_MODULES: list[str] = {listing}\nX = 1\n")
    text = new_route.with_listed(atom, "eyes")
    assert text == f"{head}ROUTE_MODULES: list[str] = {expected}\nX = 1\n"


def test_a_list_it_cannot_read_is_left_to_the_owner(new_route: ModuleType, atom: Any) -> None:
    """ROUTE_MODULES built by code is refused with what to do, not rewritten."""
    atom.route_file.write_text('BASE = ["detect"]\nROUTE_MODULES = BASE + ["x"]\n')
    with pytest.raises(new_route.RefusedError, match="add the module's name to it yourself"):
        new_route.plan(atom, NEW, "")


def code_names(text: str) -> set[str]:
    """The identifiers and the string constants of a module that are not docstrings."""
    tree = ast.parse(text)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                found.add(node.value)
        elif isinstance(node, ast.Name | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(getattr(node, "id", getattr(node, "name", "")))
    return found


def test_no_name_of_the_demo_is_left(new_route: ModuleType) -> None:
    """The module's names come from NAME: no face, detect path, tag or cascade file of the
    demo; its route functions, model class and model file are named after it."""
    names = code_names(new_route.render("eyes"))
    assert {"eyes", "eyes_stream", "EyesModel", "/eyes"} <= names
    demo = r"\bface\b|\bdetect\b|haarcascade|cascade_file"
    assert [name for name in names if re.search(demo, name, re.IGNORECASE)] == []


@pytest.mark.parametrize("name", ["a", "a" * 32, "license_plates_2"])
def test_the_module_passes_the_linters(new_route: ModuleType, tmp_path: Path, name: str) -> None:
    """ruff check and ruff format accept the module for the shortest and the longest names,
    with the atom's settings."""
    module = tmp_path / f"{name}.py"
    module.write_text(new_route.render(name), encoding="utf-8")
    config = str(ROOT / "pyproject.toml")
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--config", config, str(module)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
