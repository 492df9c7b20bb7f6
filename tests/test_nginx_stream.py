"""The stream lane: ``POST {prefix}/detect/stream`` read with httpx-sse through nginx_run and
two workers. Events pass nginx as they are made, and a caller who hangs up stops the work.

The workers run the real route and the real demo model, wrapped so that every frame after
the first waits for a gate file the test creates (at most 10 s), and each finished frame
is noted in a file: the test sees what the worker had done when the first event arrived.
"""

import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from httpx_sse import connect_sse
from prometheus_client.parser import text_string_to_metric_families

from scripts.atomctl import AtomLauncher
from tests.test_nginx import nginx_binary

pytestmark = pytest.mark.stream

PATTERN = "F-F-F-"  # six frames: the photograph (one face), then a blank one, three times
GATED_SERVER = '''"""server.py whose face model waits for a gate file after its first frame."""

import os
import time
from pathlib import Path

import server
from my_atom.api.app import get_app
from my_atom.api.interface import detect

GATE, DONE = Path(os.environ["STREAM_GATE"]), Path(os.environ["STREAM_DONE"])


class Gated:
    """The demo model; after its first call, each call waits for the gate (10 s at most)."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def predict_batch(self, images, threshold):
        self.calls += 1
        deadline = time.monotonic() + 10
        while self.calls > 1 and not GATE.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        found = self.model.predict_batch(images, threshold)
        with DONE.open("a") as done:
            done.write(f"{self.calls}\\n")
        return found


def factory(settings):
    return get_app(settings, model_loaders={"face": lambda s: Gated(detect.load_model(s))})


if __name__ == "__main__":
    raise SystemExit(server.main(app_factory=factory))
'''


def atom_videos(project: Path) -> ModuleType:
    """The baked atom's test-video helpers (tests/videos.py)."""
    spec = importlib.util.spec_from_file_location("atom_videos", project / "tests" / "videos.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def gated(
    default_atom: Path, tmp_path: Path, runtime_dir: Path
) -> Iterator[tuple[AtomLauncher, Path, Path]]:
    """nginx_run.py with 2 gated workers; the video folder holds faces.avi."""
    nginx_binary()
    (default_atom / "gated_server.py").write_text(GATED_SERVER)
    videos = tmp_path / "videos"
    videos.mkdir()
    helpers = atom_videos(default_atom)
    helpers.write_video(videos / "faces.avi", helpers.face_frames(PATTERN))
    gate, done = tmp_path / "gate", tmp_path / "done"
    launcher = AtomLauncher(
        default_atom,
        workers=2,
        server="gated_server.py",
        env={
            "LOG_ROOT": str(tmp_path / "logs"),
            "ATOM_RUNTIME_DIR": str(runtime_dir),  # reachable by nginx's workers as root
            "IMAGE_LOCAL_ROOTS": str(videos),
            "STREAM_GATE": str(gate),
            "STREAM_DONE": str(done),
        },
    )
    with launcher:
        yield launcher, videos / "faces.avi", gate


def frames_done(gate: Path) -> int:
    """How many frames the workers have finished (one line each in the done file)."""
    done = gate.with_name("done")
    return len(done.read_text().splitlines()) if done.exists() else 0


def test_first_event_arrives_before_the_last_frame_is_done(
    gated: tuple[AtomLauncher, Path, Path],
) -> None:
    """Through nginx, the first frame's event reaches the client while the worker still
    waits to do the second frame; the rest follow once the gate opens, then the summary."""
    atom, video, gate = gated
    body = {"data": str(video), "src_type": "local"}
    with (
        httpx.Client(timeout=30, trust_env=False) as client,
        connect_sse(client, "POST", atom.url("/detect/stream"), json=body) as source,
    ):
        assert source.response.status_code == 200
        events = source.iter_sse()
        first = next(events)
        done_at_first_event = frames_done(gate)
        gate.touch()
        rest = list(events)
    assert done_at_first_event == 1  # frames 2..6 not done: nothing was buffered
    assert (first.event, json.loads(first.data)["frame"]) == ("frame", 0)
    assert len(json.loads(first.data)["objects"]) == 1
    assert [event.event for event in rest] == ["frame"] * 5 + ["summary"]
    counts = [len(json.loads(event.data)["objects"]) for event in [first, *rest[:-1]]]
    assert counts == [1 if letter == "F" else 0 for letter in PATTERN]
    assert json.loads(rest[-1].data)["frames"] == len(PATTERN)


def streams_open(atom: AtomLauncher) -> float:
    """atom_streams_open summed over the workers (one scrape through nginx)."""
    text = httpx.get(atom.url("/metrics"), trust_env=False, timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "atom_streams_open"
        for sample in family.samples
    )


def test_hanging_up_through_nginx_stops_the_work(gated: tuple[AtomLauncher, Path, Path]) -> None:
    """A client that leaves after the first event: nginx closes the worker's connection, the
    generator is closed after the frame in flight, and no stream stays open."""
    atom, video, gate = gated
    body = {"data": str(video), "src_type": "local"}
    with (
        httpx.Client(timeout=30, trust_env=False) as client,
        connect_sse(client, "POST", atom.url("/detect/stream"), json=body) as source,
    ):
        next(source.iter_sse())
    gate.touch()  # frame 2, in flight, may finish; no frame after it may start
    time.sleep(1.0)
    assert frames_done(gate) <= 2
    deadline = time.monotonic() + 5
    while streams_open(atom) != 0:
        assert time.monotonic() < deadline, "a stream stayed open"
        time.sleep(0.1)
