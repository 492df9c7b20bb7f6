"""`make demo`, run for real: it bakes, starts the atom, finds the astronaut's face, stops."""

import re
import subprocess

import pytest

from scripts.atomctl import TEMPLATE

pytestmark = pytest.mark.demo

# The astronaut's face in the demo's photograph (tests/data/astronaut.jpg of the atom): a
# point between the eyes, which the face's box must hold.
FACE_CENTRE = (224, 113)
ROW_RE = re.compile(r"^face\s+(0\.\d+|1\.0+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", re.M)


def test_make_demo_finds_the_face() -> None:
    """`make demo` prints exactly one face, whose box holds the astronaut's face, and stops
    the atom with status 0."""
    result = subprocess.run(
        ["make", "demo"], cwd=TEMPLATE, capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = ROW_RE.findall(result.stdout)
    assert len(rows) == 1, result.stdout
    _, xmin, ymin, xmax, ymax = map(float, rows[0])
    x, y = FACE_CENTRE
    assert xmin < x < xmax and ymin < y < ymax, result.stdout
    assert "stopped (exit status 0); 1 face(s) found" in result.stdout
