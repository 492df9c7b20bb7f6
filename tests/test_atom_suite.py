"""The atom's own suite: all of it once, on the default bake (its unit tests in make check);
its unit tests again on Python 3.12, the interpreter that combination's answer changes."""

import sys
from pathlib import Path

import pytest

from .conftest import PYTHON312, Bakes
from .test_bake import SUITE_WORKERS, atom_suite


@pytest.fixture(scope="module")
def default_bake(bakes: Bakes) -> Path:
    """The atom baked with the default answers."""
    return bakes("default")[0]


@pytest.mark.atom_suite
def test_unit_tests_pass(default_bake: Path) -> None:
    """The default atom's unit tests pass (its `pytest -m "not slow"`), several at once
    (make check waits for them)."""
    atom_suite(default_bake, sys.executable, "-n", SUITE_WORKERS, "-m", "not slow")


@pytest.mark.atom_suite
@pytest.mark.slow
def test_slow_tests_pass(default_bake: Path) -> None:
    """The default atom's slow tests pass (real server.py processes with time bounds, the
    wheel), one at a time."""
    atom_suite(default_bake, sys.executable, "-m", "slow")


@pytest.mark.python312
def test_unit_tests_pass_on_python312(bakes: Bakes) -> None:
    """The unit tests of the atom baked for Python 3.12 pass on Python 3.12 (the lane also
    holds that combination's render, lint, types and boot: test_bake.py)."""
    project, _ = bakes("python312")
    # One process: this lane runs beside others, which use the cores its tests leave idle
    # while they wait; xdist's workers would each import the atom again.
    atom_suite(project, str(PYTHON312), "-m", "not slow")
