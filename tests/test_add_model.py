"""A user adds a second route module with its own model, the README's way: the atom's own
suite still passes, and both routes serve from a real server."""

import base64
import re
import sys
from pathlib import Path

import pytest

from scripts.atomctl import AtomServer, bake, http

from .conftest import run

EYES_CASCADE = "haarcascade_eye.xml"  # another model OpenCV ships, for the new module

pytestmark = pytest.mark.slow  # a bake, the atom's whole suite and a real server


def add_route_module(project: Path, package: str) -> None:
    """What the generated README says: copy detect.py, rename its model and path, list it."""
    interface = project / package / "api" / "interface"
    source = (interface / "detect.py").read_text(encoding="utf-8")
    copy = source.replace('MODEL_NAME = "face"', 'MODEL_NAME = "eyes"')
    copy = copy.replace('"/detect"', '"/eyes"').replace('summary="Detect faces"', 'summary="Eyes"')
    assert copy.count('"eyes"') == 1 and copy.count('"/eyes"') == 1, "detect.py changed shape"
    (interface / "eyes.py").write_text(copy, encoding="utf-8")
    route = project / package / "api" / "route.py"
    text = route.read_text(encoding="utf-8")
    assert text.count('    "detect",\n') == 1
    route.write_text(text.replace('    "detect",\n', '    "detect",\n    "eyes",\n'))


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh default atom with an ``eyes`` route module and its encrypted model."""
    project = bake(tmp_path_factory.mktemp("two-models"))
    add_route_module(project, "my_atom")
    cascade = run(
        [sys.executable, "-c", "import cv2; print(cv2.data.haarcascades)"], cwd=project
    ).stdout.strip()
    result = run(
        ["make", f"PYTHON={sys.executable}", "model", "NAME=eyes", f"SRC={cascade}{EYES_CASCADE}"],
        cwd=project,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (project / "models" / "eyes.enc").is_file()
    return project


def test_the_atoms_suite_still_passes(two_models: Path) -> None:
    """Nothing unrelated breaks: the atom's own tests pass with the second model added."""
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=two_models,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert re.search(r"\d+ passed", result.stdout) and " failed" not in result.stdout


def test_both_routes_serve(two_models: Path, tmp_path: Path) -> None:
    """server.py loads both models; detect finds the face, the new route finds the eyes."""
    photo = two_models / "tests" / "data" / "astronaut.jpg"
    body = {"data": [base64.b64encode(photo.read_bytes()).decode()], "src_type": "base64"}
    with AtomServer(two_models, env={"LOG_ROOT": str(tmp_path)}) as server:
        status, _, ready = http("GET", server.url("/v1/health/ready"))
        assert (status, ready["models"]) == (200, {"face": "ready", "eyes": "ready"})
        status, _, faces = http("POST", server.url("/detect"), body)
        assert (status, [len(found) for found in faces["objects"]]) == (200, [1])
        status, _, eyes = http("POST", server.url("/eyes"), body)
    assert status == 200
    (found,) = eyes["objects"]
    face = faces["objects"][0][0]
    assert 1 <= len(found) <= 2
    for eye in found:  # each eye lies inside the face
        assert face["xmin"] <= eye["xmin"] < eye["xmax"] <= face["xmax"]
        assert face["ymin"] <= eye["ymin"] < eye["ymax"] <= face["ymax"]
