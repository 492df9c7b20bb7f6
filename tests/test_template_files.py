"""Every file of the atom is accounted for (tests/manifest.txt): the template holds exactly
the listed files, cookiecutter renders those listed "render" and copies those listed "copy",
and a default bake holds them rendered, less the other CI choices' files, plus what the
post-gen hook makes."""

import sysconfig
from pathlib import Path

from binaryornot.check import is_binary

from scripts.atomctl import TEMPLATE, cached_bake

from .conftest import DEFAULT_ANSWERS

SLUG = TEMPLATE / "{{cookiecutter.project_slug}}"
MANIFEST = Path(__file__).parent / "manifest.txt"
# What the post-gen hook adds to a default bake: its record, the project's key, the
# encrypted demo model and the compiled protector (and the scratch folder of its build,
# which the atom's git ignores).
HOOK_FILES = {".cruft.json", "secrets/model.key", "models/face.enc"}
PROTECTOR_SOURCE = "model_protector.pyx"  # compiled beside itself into the .so
HOOK_SCRATCH = "build/"
# The CI files a default bake does not hold (the `ci` answer is gitlab).
OTHER_CI_FILES = {".github/workflows/ci.yml"}


def manifest() -> dict[str, str]:
    """The listed files: path in the template -> "render" or "copy"."""
    listed = {}
    for line in MANIFEST.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            path, kind = line.rsplit(" ", 1)
            assert kind in {"render", "copy"}, line
            listed[path] = kind
    return listed


def template_files() -> set[str]:
    """The files under the template's folder (Python's caches aside)."""
    return {
        path.relative_to(SLUG).as_posix()
        for path in SLUG.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_the_manifest_lists_every_file_of_the_template() -> None:
    """No file of the template is missing from the manifest, and none listed is gone."""
    listed, found = set(manifest()), template_files()
    missing = sorted(
        f"{path} {'copy' if is_binary(str(SLUG / path)) else 'render'}" for path in found - listed
    )
    assert missing == [], "add to tests/manifest.txt:\n" + "\n".join(missing)
    assert sorted(listed - found) == [], "remove from tests/manifest.txt"


def test_cookiecutter_treats_each_file_as_listed() -> None:
    """cookiecutter copies the files it sees as binary without rendering them: exactly those
    listed "copy" (a text file it took for binary would keep its Jinja)."""
    wrong = [
        f"{path} is listed {kind}"
        for path, kind in manifest().items()
        if (SLUG / path).is_file() and is_binary(str(SLUG / path)) != (kind == "copy")
    ]
    assert wrong == []


def test_a_default_bake_holds_the_manifest(tmp_path: Path) -> None:
    """A default bake holds every listed file under its rendered name, except the other CI
    choices', and besides them only the hook's files; copied files are byte for byte."""
    project = cached_bake(tmp_path)
    package = DEFAULT_ANSWERS["package_name"]
    expected = {
        path.replace("{{cookiecutter.package_name}}", package): (path, kind)
        for path, kind in manifest().items()
    }
    found = {
        path.relative_to(project).as_posix()
        for path in project.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    made = {path for path in found if not path.startswith(HOOK_SCRATCH)}
    (source,) = [path for path in expected if path.endswith("/" + PROTECTOR_SOURCE)]
    compiled = source.removesuffix(".pyx") + sysconfig.get_config_var("EXT_SUFFIX")
    assert made == (set(expected) - OTHER_CI_FILES) | HOOK_FILES | {compiled}
    for rendered, (path, kind) in expected.items():
        if kind == "copy":
            assert (project / rendered).read_bytes() == (SLUG / path).read_bytes(), rendered
