"""The README's first commands: `make demo` and `make test`; the demo is run for real."""

import re
import subprocess

import pytest

from scripts.atomctl import TEMPLATE


def test_readme_starts_with_the_two_commands() -> None:
    """The first code block of README.md is exactly `make demo` and `make test`."""
    readme = (TEMPLATE / "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"```(?:sh|shell|bash)?\n(.*?)```", readme, re.S)
    assert first_block is not None
    commands = [line for line in first_block[1].splitlines() if line and not line.startswith("#")]
    assert commands == ["make demo", "make test"]


@pytest.mark.demo
def test_make_demo_finds_a_face() -> None:
    """`make demo` bakes, starts, detects, prints at least one face box and stops."""
    result = subprocess.run(
        ["make", "demo"], cwd=TEMPLATE, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    row_re = re.compile(r"^face\s+(0\.\d+|1\.0+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", re.M)
    rows = row_re.findall(result.stdout)
    assert len(rows) >= 1, result.stdout
    _, xmin, ymin, xmax, ymax = map(float, rows[0])
    assert xmin < xmax and ymin < ymax
    assert "stopped (exit status 0)" in result.stdout
