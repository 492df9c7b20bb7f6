"""A user adds route modules with their own models, the README's way (`make route`): the
atom's tests that see every route module pass and check the new ones, the routes serve from
a real server, a bug in a new route fails the contract test, and `make route` refuses a
name that is taken or is not a name."""

import base64
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from scripts.atomctl import AtomServer, cached_bake, http

from .conftest import run

EYES_CASCADE = "haarcascade_eye.xml"  # another model OpenCV ships, for the new module
PACKAGE = "my_atom"
# The atom's test modules that see every listed route module or declared model: the
# contract test and make route's own, the app's routes and OpenAPI, the models loaded and
# reported ready, the v2 protocol's per-model routes, the module map.
ROUTE_TESTS = (
    "test_route_contract.py",
    "test_make_route.py",
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

pytestmark = pytest.mark.add_model  # a bake, the atom's route tests and a real server


def make(project: Path, *args: str) -> tuple[int, str, str]:
    """``make <args>`` in the atom with this run's Python; exit status, stdout, stderr."""
    result = run(["make", f"PYTHON={sys.executable}", *args], cwd=project)
    return result.returncode, result.stdout, result.stderr


def outcomes(project: Path, report: Path, *tests: str) -> dict[str, str]:
    """Run the atom's tests with a JUnit report; each test's id and outcome."""
    run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
        + [f"tests/{name}" for name in tests],
        cwd=project,
        timeout=900,
    )
    results = {}
    for case in ET.parse(report).iter("testcase"):
        kinds = {child.tag for child in case} & {"failure", "error", "skipped"}
        results[f"{case.get('classname')}::{case.get('name')}"] = min(kinds or {"passed"})
    return results


@pytest.fixture(scope="module")
def atom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A default atom with two routes made by ``make route``: ``eyes`` with OpenCV's eye
    cascade, ``lookalike`` without SRC (the demo's face cascade)."""
    project = cached_bake(tmp_path_factory.mktemp("add-model"))
    cascades = run(
        [sys.executable, "-c", "import cv2; print(cv2.data.haarcascades)"], cwd=project
    ).stdout.strip()
    status, out, err = make(project, "route", "NAME=eyes", f"SRC={cascades}{EYES_CASCADE}")
    assert status == 0, out + err
    assert out.splitlines() == [
        f"[route] models/eyes.enc: encrypted from {cascades}{EYES_CASCADE}",
        f"[route] {PACKAGE}/api/interface/eyes.py: model 'eyes', POST /d2atom/eyes,"
        " POST /d2atom/eyes/stream, /v2/models/eyes",
        f'[route] {PACKAGE}/api/route.py: "eyes" added to ROUTE_MODULES',
        f"[route] next: replace EyesModel in {PACKAGE}/api/interface/eyes.py with your model "
        "(until then it reads models/eyes.enc as an OpenCV cascade), then `make test`",
    ]
    status, out, err = make(project, "route", "NAME=lookalike")
    assert status == 0, out + err
    assert "[route] models/lookalike.enc: encrypted from the demo's face cascade" in out
    return project


def test_make_route_writes_the_module_the_line_and_the_model(atom: Path) -> None:
    """Each route has its module, its line in ROUTE_MODULES after the demo's, its model."""
    route = (atom / PACKAGE / "api" / "route.py").read_text()
    assert 'ROUTE_MODULES = [\n    "detect",\n    "eyes",\n    "lookalike",\n]' in route
    for name in ("eyes", "lookalike"):
        assert (atom / PACKAGE / "api" / "interface" / f"{name}.py").is_file()
        assert (atom / "models" / f"{name}.enc").stat().st_size > 1000


def test_the_atoms_route_tests_check_the_new_routes(atom: Path, tmp_path: Path) -> None:
    """The atom's tests that see every route module pass, and the contract test ran each
    of its checks on each new module."""
    results = outcomes(atom, tmp_path / "report.xml", *ROUTE_TESTS)
    failed = {test: outcome for test, outcome in results.items() if outcome != "passed"}
    assert failed == {}
    contract = "tests.test_route_contract::"
    for name in ("eyes", "lookalike"):
        checked = [test for test in results if test.startswith(contract) and f"[{name}]" in test]
        assert len(checked) == 5, checked


def test_a_bug_in_a_new_route_fails_the_contract_test(atom: Path, tmp_path: Path) -> None:
    """A route that answers in the wrong shape fails exactly its module's sample check."""
    broken = tmp_path / "broken"
    shutil.copytree(atom, broken, ignore=shutil.ignore_patterns("AtomServer-*.log"))
    module = broken / PACKAGE / "api" / "interface" / "eyes.py"
    source = module.read_text()
    good = "DetectResponse(took=round(ms_since(started), 2), objects=objects)"
    assert source.count(good) == 1
    module.write_text(source.replace(good, good.replace("objects)", "objects[0])")))
    results = outcomes(broken, tmp_path / "report.xml", "test_route_contract.py")
    failed = {test for test, outcome in results.items() if outcome != "passed"}
    assert failed == {"tests.test_route_contract::test_each_route_answers_a_sample[eyes]"}


def test_the_new_routes_serve(atom: Path, tmp_path: Path) -> None:
    """server.py loads the three models; eyes finds the two eyes inside the face detect
    finds, lookalike (the demo's cascade under a new name) finds that face, and v2 knows
    both new models."""
    photo = atom / "tests" / "data" / "astronaut.jpg"
    body = {"data": [base64.b64encode(photo.read_bytes()).decode()], "src_type": "base64"}
    with AtomServer(atom, env={"LOG_ROOT": str(tmp_path)}) as server:
        status, _, ready = http("GET", server.url("/v1/health/ready"))
        assert (status, ready["models"]) == (
            200,
            {"face": "ready", "eyes": "ready", "lookalike": "ready"},
        )
        replies = {path: http("POST", server.url(path), body) for path in ("/detect", "/eyes")}
        status, _, lookalike = http("POST", server.url("/lookalike"), body)
        v2 = [http("GET", f"{server.base}/v2/models/{name}") for name in ("eyes", "lookalike")]
    assert [reply[0] for reply in replies.values()] == [200, 200]
    ((face,),) = replies["/detect"][2]["objects"]
    (eyes,) = replies["/eyes"][2]["objects"]
    assert len(eyes) == 2
    for eye in eyes:
        assert eye["label"] == "eyes"
        assert face["xmin"] <= eye["xmin"] < eye["xmax"] <= face["xmax"]
        assert face["ymin"] <= eye["ymin"] < eye["ymax"] <= face["ymax"]
    assert status == 200
    assert lookalike["objects"] == [[{**face, "label": "lookalike"}]]
    assert [(status, meta["name"]) for status, _, meta in v2] == [
        (200, "eyes"),
        (200, "lookalike"),
    ]


@pytest.mark.parametrize(
    ("name", "refusal"),
    [
        ("eyes", "[route] refused: 'eyes' is in ROUTE_MODULES of my_atom/api/route.py"),
        ("face", "[route] refused: my_atom/api/interface/detect.py declares the model 'face'"),
        ("Eyes-2", "[route] refused: NAME='Eyes-2' is not a route name"),
        (None, "[route] refused: give the route a name: make route NAME=<name>"),
    ],
)
def test_make_route_refuses_a_taken_or_bad_name(atom: Path, name: str | None, refusal: str) -> None:
    """A name that is taken, or is not a name, or none: make fails, says why, writes nothing."""
    route = atom / PACKAGE / "api" / "route.py"
    before = (route.read_text(), sorted((route.parent / "interface").iterdir()))
    status, out, err = make(atom, "route", *([f"NAME={name}"] if name else []))
    assert status == 2, out + err  # make's status for a failed recipe
    assert err.startswith(refusal), err
    assert (route.read_text(), sorted((route.parent / "interface").iterdir())) == before
