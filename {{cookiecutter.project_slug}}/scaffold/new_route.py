"""``make route NAME=eyes [SRC=path/to/model]``: a new route module with its own model.

Writes ``<package>/api/interface/eyes.py`` from ``scaffold/route_module.py.tmpl`` with
every name made from NAME (model, route paths, tags, model class, batching variables, v2
entries), lists it in ``ROUTE_MODULES`` of ``api/route.py``, and encrypts SRC into
``models/eyes.enc`` with the checkout's key (``make model``'s command; without SRC, the
demo's face cascade, so that the new route answers at once, unless the file is there).

The source is the template's file, not ``api/interface/detect.py``: detect.py is the
owner's and may have changed in any way, while ``scaffold/`` belongs to the template and
moves with the runtime at each ``make upgrade``. Nothing is written when a check fails:
a name that is not a lower-case Python identifier, or that a module, model or path of the
atom already has.

Standard library only: it runs before ``.venv`` exists (``python3``).
"""

import argparse
import ast
import keyword
import re
import runpy
import string
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PACKAGE = {{ cookiecutter.package_name | tojson }}
TEMPLATE = Path(__file__).resolve().parent / "route_module.py.tmpl"
NAME_RE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")  # ATOM_BATCH__<NAME>__ splits on "__"
MAX_NAME = 32  # the module's longest lines stay within the line length with it
# Paths the runtime serves under ATOM_API_PREFIX, or at the root, besides route modules'.
RESERVED = frozenset({"v1", "v2", "docs", "redoc", "openapi", "metrics"})
PROBE = "zzprobe"  # rendered to find the names the module makes from NAME
ROUTE_CALLS = frozenset({"post", "get", "put", "patch", "delete", "stream", "api_route"})
USAGE = "make route NAME=<name> [SRC=<model file>]"


class RefusedError(Exception):
    """A check failed: the message says which and what to do."""


@dataclass(frozen=True)
class Atom:
    """The files of an atom that ``make route`` reads and writes."""

    root: Path

    @property
    def interface(self) -> Path:
        """The folder of the route modules."""
        return self.root / PACKAGE / "api" / "interface"

    @property
    def route_file(self) -> Path:
        """api/route.py, with ROUTE_MODULES."""
        return self.root / PACKAGE / "api" / "route.py"

    @property
    def api_prefix(self) -> str:
        """The routes' prefix as generated: ATOM_API_PREFIX's default, from about.py (which
        holds the answers, however long)."""
        return runpy.run_path(str(self.root / PACKAGE / "about.py"))["API_PREFIX"]

    def shown(self, path: Path) -> str:
        """A path as the owner reads it: from the atom's folder."""
        return str(path.relative_to(self.root))


@dataclass(frozen=True)
class Plan:
    """What ``make route`` writes: the module, api/route.py's new text, the model file."""

    name: str
    module: Path
    module_text: str
    route_text: str
    model: Path
    src: Path | None


def say(text: str) -> None:
    """One line for the person at the terminal."""
    sys.stdout.write(f"[route] {text}\n")
    sys.stdout.flush()  # before the output of the commands it runs


def camel(name: str) -> str:
    """``license_plates`` -> ``LicensePlates``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def render(name: str, template: Path = TEMPLATE) -> str:
    """The route module for ``name``: the template with its placeholders filled."""
    names = {"name": name, "Name": camel(name), "NAME": name.upper()}
    return string.Template(template.read_text(encoding="utf-8")).substitute(names)


def identifiers(text: str) -> set[str]:
    """Every name a module's code uses: bound, read, imported, or a parameter."""
    found = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.arg):
            found.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.add(node.name)
        elif isinstance(node, ast.alias):
            found.add((node.asname or node.name).split(".")[0])
    return found


def check_name(name: str) -> None:
    """A lower-case identifier, not Python's nor the runtime's, and no name the module makes
    from it (the route's functions, the model class) means something else there."""
    if not name:
        raise RefusedError(f"give the route a name: {USAGE}")
    if not NAME_RE.fullmatch(name) or len(name) > MAX_NAME:
        raise RefusedError(
            f"NAME={name!r} is not a route name: lower-case letters, digits and single "
            f"underscores, starting with a letter, at most {MAX_NAME} characters "
            "(it names the module, the model, the path and ATOM_BATCH__<NAME>__*)"
        )
    if keyword.iskeyword(name):
        raise RefusedError(f"NAME={name!r} is a Python keyword: choose another name")
    if name in RESERVED:
        raise RefusedError(f"NAME={name!r}: the atom's runtime serves /{name} itself")
    probe = identifiers(render(PROBE))
    others = {found for found in probe if PROBE not in found.lower()}
    mine = {
        found.replace(PROBE, name).replace(camel(PROBE), camel(name)) for found in probe - others
    }
    if mine & others:
        taken = sorted(mine & others)[0]
        raise RefusedError(
            f"NAME={name!r}: the route module uses {taken!r} for something else: "
            "choose another name"
        )


def listed_modules(atom: Atom) -> tuple[ast.List, list[str]]:
    """The ``ROUTE_MODULES`` list of api/route.py and the names in it."""
    tree = ast.parse(atom.route_file.read_text(encoding="utf-8"))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if (
            isinstance(node, ast.Assign | ast.AnnAssign)
            and [getattr(target, "id", None) for target in targets] == ["ROUTE_MODULES"]
            and isinstance(node.value, ast.List)
        ):
            names = [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
            texts = [n for n in names if isinstance(n, str)]
            if len(texts) == len(node.value.elts):
                return node.value, texts
    raise RefusedError(
        f"{atom.shown(atom.route_file)} has no `ROUTE_MODULES = [...]` list of names: "
        "add the module's name to it yourself"
    )


def with_listed(atom: Atom, name: str) -> str:
    """api/route.py's text with ``name`` added at the end of ``ROUTE_MODULES``: on a line of
    its own when the list's "]" is on one, else inside the line."""
    data = atom.route_file.read_bytes()  # ast's columns count UTF-8 bytes
    node, _ = listed_modules(atom)
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    last_line = node.end_lineno or node.lineno
    line_start = starts[last_line - 1]  # of the line holding the "]"
    close = line_start + (node.end_col_offset or 1) - 1
    entry = f'"{name}"'.encode()
    last = node.elts[-1] if node.elts else None
    end = close if last is None else starts[(last.end_lineno or 1) - 1] + (last.end_col_offset or 0)
    has_comma = data[end:close].lstrip().startswith(b",")
    if last_line > node.lineno and not data[line_start:close].strip():
        indent = b"    " if last is None else b" " * last.col_offset
        comma = b"" if last is None or has_comma else b","
        line = indent + entry + b",\n"
        text = data[:end] + comma + data[end:line_start] + line + data[line_start:]
    elif last is None:
        text = data[:close] + entry + data[close:]
    else:
        separator = b" " if has_comma else b", "
        text = data[:close].rstrip() + separator + entry + data[close:]
    return text.decode("utf-8")


def resolved(value: ast.expr, constants: dict[str, str]) -> list[str]:
    """The text an expression of a route module stands for, when it is plainly written."""
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return [value.value]
    if isinstance(value, ast.Name) and value.id in constants:
        return [constants[value.id]]
    if isinstance(value, ast.JoinedStr):
        parts = [
            resolved(v.value if isinstance(v, ast.FormattedValue) else v, constants)
            for v in value.values
        ]
        if all(len(part) == 1 for part in parts):
            return ["".join(part[0] for part in parts)]
    return []


def declared(module: Path) -> tuple[set[str], set[str]]:
    """The model names and route paths a route module declares, as far as they are plain."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    constants[target.id] = node.value.value
    models: set[str] = set()
    paths: set[str] = set()
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.args:
            if call.func.attr in {"model_loader", "v2_signature"}:
                models.update(resolved(call.args[0], constants))
            elif call.func.attr in ROUTE_CALLS:
                paths.update(resolved(call.args[0], constants))
    return models, paths


def check_free(atom: Atom, name: str) -> None:
    """No listed name, module, model or path of the atom is ``name`` already.

    The route modules' models and paths are read from their code as written (a constant,
    a module-level name, an f-string of those); the atom's tests catch the rest: two
    loaders of one model or two routes on one path stop the app.
    """
    _, listed = listed_modules(atom)
    if name in listed:
        raise RefusedError(f"{name!r} is in ROUTE_MODULES of {atom.shown(atom.route_file)}")
    module = atom.interface / f"{name}.py"
    if module.exists() or (atom.interface / name).exists():
        raise RefusedError(f"{atom.shown(module)} exists already: choose another name")
    path = f"/{name}"
    for other in sorted(atom.interface.glob("*.py")):
        models, paths = declared(other)
        if name in models:
            raise RefusedError(f"{atom.shown(other)} declares the model {name!r} already")
        if any(served == path or served.startswith(path + "/") for served in paths):
            raise RefusedError(f"{atom.shown(other)} serves {path} already")


def plan(atom: Atom, name: str, src: str) -> Plan:
    """Every check, and what to write; nothing is written yet."""
    check_name(name)
    check_free(atom, name)
    source = None
    if src:
        source = Path(src).expanduser().resolve()
        if not source.is_file():
            raise RefusedError(f"SRC={src}: no such file")
    return Plan(
        name=name,
        module=atom.interface / f"{name}.py",
        module_text=render(name),
        route_text=with_listed(atom, name),
        model=atom.root / "models" / f"{name}.enc",
        src=source,
    )


def encrypt(atom: Atom, todo: Plan) -> None:
    """The model file, by ``make model``'s command (which sets up .venv and the key first)."""
    shown = atom.shown(todo.model)
    if todo.src is None and todo.model.exists():
        say(f"{shown} exists: kept")
        return
    source = "" if todo.src is None else str(todo.src)
    command = ["bash", "scripts/setup.sh", "model", todo.name, source]
    if subprocess.run(command, cwd=atom.root, check=False).returncode != 0:
        raise RefusedError(f"{shown} was not written ({' '.join(command)} failed)")
    what = todo.src or f"the demo's face cascade (make model NAME={todo.name} SRC=... for yours)"
    say(f"{shown}: encrypted from {what}")


def write(atom: Atom, todo: Plan) -> None:
    """The new module, then its line in ROUTE_MODULES."""
    todo.module.write_text(todo.module_text, encoding="utf-8")
    name, prefix = todo.name, atom.api_prefix
    say(
        f"{atom.shown(todo.module)}: model {name!r}, POST {prefix}/{name}, "
        f"POST {prefix}/{name}/stream, /v2/models/{name}"
    )
    atom.route_file.write_text(todo.route_text, encoding="utf-8")
    say(f'{atom.shown(atom.route_file)}: "{name}" added to ROUTE_MODULES')


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    """Check, encrypt, write; 1 with the reason when something is refused."""
    parser = argparse.ArgumentParser(prog="make route", description=USAGE)
    parser.add_argument("name", nargs="?", default="", help="the route's name (NAME=)")
    parser.add_argument("--src", default="", help="the model file to encrypt (SRC=)")
    args = parser.parse_args(argv)
    atom = Atom(root or Path(__file__).resolve().parent.parent)
    try:
        todo = plan(atom, args.name, args.src)
        encrypt(atom, todo)
        write(atom, todo)
    except RefusedError as refused:
        sys.stderr.write(f"[route] refused: {refused}\n")
        return 1
    say(
        f"next: replace {camel(todo.name)}Model in {atom.shown(todo.module)} with your "
        f"model (until then it reads {atom.shown(todo.model)} as an OpenCV cascade), "
        "then `make test`"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
