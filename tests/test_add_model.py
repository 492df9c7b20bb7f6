"""A user adds a second route module with its own model, the README's way: the atom's tests
that see every route module or model still pass, and both routes serve from a real server.

The rest of the atom's suite does not look at the list of route modules (its tests use their
own routers and fake models, fakes.py): it runs once, in the bake lane."""

import base64
import re
import sys
from pathlib import Path

import pytest

from scripts.atomctl import AtomServer, cached_bake, http

from .conftest import run

EYES_CASCADE = "haarcascade_eye.xml"  # another model OpenCV ships, for the new module
# The atom's test modules that see every listed route module or declared model: the app's
# routes and OpenAPI, the models loaded and reported ready, the v2 protocol's per-model
# routes, the module map.
ROUTE_TESTS = (
    "test_structure.py",
    "test_health.py",
    "test_docs.py",
    "test_template_info.py",
    "test_detect.py",
    "test_detect_stream.py",
    "test_share_memory.py",
    "test_migration.py",
    "test_v2.py",
    "test_v2_tritonclient.py",
)

pytestmark = pytest.mark.add_model


def add_route_module(project: Path, package: str) -> None:
    """What the generated README says: copy detect.py, rename its model and path, list it."""
    interface = project / package / "api" / "interface"
    source = (interface / "detect.py").read_text(encoding="utf-8")
    copy = source.replace('MODEL_NAME = "face"', 'MODEL_NAME = "eyes"')
    copy = copy.replace('ROUTE_PATH = "/detect"', 'ROUTE_PATH = "/eyes"')
    copy = copy.replace('summary="Detect faces"', 'summary="Eyes"')
    assert copy.count('"eyes"') == 1 and copy.count('"/eyes"') == 1, "detect.py changed shape"
    assert '"/detect' not in copy  # every path of the module comes from ROUTE_PATH
    (interface / "eyes.py").write_text(copy, encoding="utf-8")
    route = project / package / "api" / "route.py"
    text = route.read_text(encoding="utf-8")
    assert text.count('    "detect",\n') == 1
    route.write_text(text.replace('    "detect",\n', '    "detect",\n    "eyes",\n'))


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh default atom with an ``eyes`` route module and its encrypted model."""
    project = cached_bake(tmp_path_factory.mktemp("two-models"))
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


def test_the_atoms_route_tests_still_pass(two_models: Path) -> None:
    """Nothing breaks where the atom sees all its routes and models: those tests pass with
    the second module and model added."""
    tests = [f"tests/{name}" for name in ROUTE_TESTS]
    result = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
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
