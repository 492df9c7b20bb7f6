"""The machinery of `make test`: bakes shared through a cache that is never stale, every
marker a lane, and the gate's count of outcomes."""

import os
import tomllib
from pathlib import Path

import pytest

from scripts import atomctl, gate

from .conftest import LANES
from .throwaway import copy_template


@pytest.fixture
def template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the template (not a git checkout), which bake_key reads instead of this one."""
    copy = copy_template(tmp_path / "template")
    monkeypatch.setattr(atomctl, "TEMPLATE", copy)
    return copy


def test_the_bake_key_follows_what_a_bake_reads(template: Path) -> None:
    """The key changes with the answers and with any file the template renders or runs, and
    not with the rest of the repository."""
    key = atomctl.bake_key({})
    assert atomctl.bake_key({}) == key
    assert atomctl.bake_key({"port": "8080"}) != key
    (template / "README.md").write_text("not rendered\n")
    assert atomctl.bake_key({}) == key
    for name in ("hooks/post_gen_project.py", "{{cookiecutter.project_slug}}/server.py"):
        path = template / name
        original = path.read_bytes()
        path.write_bytes(original + b"\n")
        assert atomctl.bake_key({}) != key, name
        path.write_bytes(original)
    (template / "{{cookiecutter.project_slug}}" / "new.txt").write_text("a new file\n")
    assert atomctl.bake_key({}) != key


def test_each_user_gets_its_own_copy(tmp_path: Path) -> None:
    """Two users of one cached bake get two folders with the same files; what one writes,
    the other and the cache do not see."""
    first = atomctl.cached_bake(tmp_path / "a")
    second = atomctl.cached_bake(tmp_path / "b")
    assert first != second
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    (first / "server.py").write_text("changed\n")
    assert (second / "server.py").read_text() != "changed\n"
    assert (atomctl.cached_bake(tmp_path / "c") / "server.py").read_text() != "changed\n"


def test_pruning_keeps_the_recent_and_bakes_under_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond CACHE_ENTRIES the least recently used entries go; a ``.partial`` bake under
    way stays, and an entry another lane pruned meanwhile is no error."""
    monkeypatch.setattr(atomctl, "BAKES", tmp_path)
    monkeypatch.setattr(atomctl, "CACHE_ENTRIES", 2)
    for age, name in enumerate(["new", "kept", "old", "older", "other.partial"]):
        (tmp_path / name).mkdir()
        os.utime(tmp_path / name, (1000 - age, 1000 - age))
    real_used = atomctl._used

    def pruned_meanwhile(path: Path) -> float | None:
        if path.name == "older":
            path.rmdir()  # another lane got there first
        return real_used(path)

    monkeypatch.setattr(atomctl, "_used", pruned_meanwhile)
    atomctl._prune_bakes(keep="new")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
        "kept",
        "new",
        "other.partial",
    ]


def test_every_registered_marker_is_a_lane() -> None:
    """pyproject.toml registers only `slow`: a lane's marker is a row of LANES, so the gate
    runs it and `make check` leaves it out when slow (a marker another branch added to
    pyproject.toml needs its row there)."""
    config = tomllib.loads((atomctl.TEMPLATE / "pyproject.toml").read_text())
    markers = config["tool"]["pytest"]["ini_options"]["markers"]
    names = {marker.split(":", 1)[0].strip() for marker in markers}
    assert names == {"slow"}, f"make these rows of LANES in tests/conftest.py: {names - {'slow'}}"
    assert "slow" not in LANES


def test_the_gate_counts_as_pytest_does() -> None:
    """A test whose call failed is failed, one whose setup or teardown failed is an error,
    the others passed."""
    phases = [
        {"nodeid": "a", "when": "setup", "outcome": "passed"},
        {"nodeid": "a", "when": "call", "outcome": "failed"},
        {"nodeid": "a", "when": "teardown", "outcome": "passed"},
        {"nodeid": "b", "when": "setup", "outcome": "failed"},
        {"nodeid": "c", "when": "setup", "outcome": "passed"},
        {"nodeid": "c", "when": "call", "outcome": "passed"},
        {"nodeid": "c", "when": "teardown", "outcome": "failed"},
        {"nodeid": "d", "when": "call", "outcome": "passed"},
    ]
    run = gate.Run("x", [], Path("x.log"), Path("x.jsonl"), Path("tmp"), phases=phases)
    assert gate.outcomes([run]) == {"a": "failed", "b": "error", "c": "error", "d": "passed"}
