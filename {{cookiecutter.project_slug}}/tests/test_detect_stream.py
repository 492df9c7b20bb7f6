"""``POST /detect/stream``: a video from a file or a URL, one event per sampled frame, then a
summary; the rules and limits of the image inputs apply to videos too."""

import base64
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from {{ cookiecutter.package_name }}.config import Settings

from .conftest import PHOTO, make_app, wait_ready
from .test_streaming import sse_events
from .videos import face_frames, serve_files, shaded_frames, write_video

LEVELS = [0, 200, 0, 90, 60, 0]  # the fake detector finds one object in each non-black frame


class Atom(NamedTuple):
    """A client of an atom that reads videos from ``root`` and from loopback URLs."""

    client: TestClient
    prefix: str
    root: Path

    def stream(self, body: dict[str, Any]) -> tuple[int, list[dict[str, Any]], Any]:
        """POST a body to detect/stream: status, parsed SSE events (or the error body)."""
        reply = self.client.post(f"{self.prefix}/detect/stream", json=body)
        if reply.status_code != 200:
            return reply.status_code, [], reply.json()
        events = []
        for event in sse_events(reply.text):
            events.append({"event": event.get("event"), "data": json.loads(event["data"])})
        return 200, events, None


def make_atom(make_settings: Callable[..., Settings], root: Path, real: tuple[str, ...], **kw: Any):
    """An atom with these settings, ``root`` as its only local root, loopback URLs allowed."""
    settings = make_settings(
        image_local_roots=str(root), image_url_allowed_networks="127.0.0.1/32", **kw
    )
    return settings, TestClient(make_app(settings, real=real))


@pytest.fixture
def atom(tmp_path: Path, make_settings: Callable[..., Settings]) -> Iterator[Atom]:
    """The atom with fake models, a video folder, and a small video of six frames in it."""
    root = tmp_path / "videos"
    root.mkdir()
    write_video(root / "levels.avi", shaded_frames(LEVELS))
    settings, client = make_atom(make_settings, root, ())
    with client:
        wait_ready(client, settings.atom_api_prefix)
        yield Atom(client, settings.atom_api_prefix, root)


def objects_per_frame(events: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(frame index, number of objects) of each frame event."""
    return [(e["data"]["frame"], len(e["data"]["objects"])) for e in events[:-1]]


def test_local_video_frame_by_frame(atom: Atom) -> None:
    """Each frame is one event with its objects, in order, then the summary."""
    status, events, _ = atom.stream({"data": str(atom.root / "levels.avi"), "src_type": "local"})
    assert status == 200
    assert [event["event"] for event in events] == ["frame"] * 6 + ["summary"]
    assert objects_per_frame(events) == [(i, int(level > 0)) for i, level in enumerate(LEVELS)]
    times = [event["data"]["time_ms"] for event in events[:-1]]
    assert times == sorted(times) and times[1] - times[0] == pytest.approx(100, abs=1)
    summary = events[-1]["data"]
    assert (summary["code"], summary["frames"], summary["objects"]) == (200, 6, 3)


def test_sampling_and_frame_cap(atom: Atom) -> None:
    """``every`` keeps every n-th frame, ``max_frames`` stops after that many."""
    body = {"data": str(atom.root / "levels.avi"), "src_type": "local", "every": 2}
    assert [f for f, _ in objects_per_frame(atom.stream(body)[1])] == [0, 2, 4]
    body["max_frames"] = 2
    assert [f for f, _ in objects_per_frame(atom.stream(body)[1])] == [0, 2]


def test_video_from_a_url(atom: Atom) -> None:
    """A URL is downloaded under the image rules (here: a loopback network allowed)."""
    clip = (atom.root / "levels.avi").read_bytes()
    with serve_files({"/clip.avi": clip}) as base:
        status, events, _ = atom.stream({"data": f"{base}/clip.avi", "src_type": "url"})
    assert status == 200
    assert objects_per_frame(events) == [(i, int(level > 0)) for i, level in enumerate(LEVELS)]


def test_bad_videos_are_clear_errors(atom: Atom, tmp_path: Path) -> None:
    """Outside the roots, missing, not a video, or a refused URL: the envelope and a 4xx."""
    shutil.copy(PHOTO, atom.root / "photo.avi")
    (atom.root / "playlist.avi").write_text("#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n")
    outside = write_video(tmp_path / "outside.avi", shaded_frames([1]))
    cases = {
        str(outside): (400, 501, "video: the path is outside IMAGE_LOCAL_ROOTS"),
        str(atom.root / "none.avi"): (400, 501, "video: no such file"),
        str(atom.root / "photo.avi"): (
            415,
            504,
            "video: not an AVI, MP4, QuickTime, Matroska or WebM file",
        ),
        str(atom.root / "playlist.avi"): (
            415,
            504,
            "video: not an AVI, MP4, QuickTime, Matroska or WebM file",
        ),
    }
    for path, (status, code, msg) in cases.items():
        got = atom.stream({"data": path, "src_type": "local"})
        assert (got[0], got[2]) == (status, {"code": code, "msg": msg, "data": None}), path
    refused = atom.stream({"data": "http://10.1.2.3/clip.avi", "src_type": "url"})
    assert refused[0] == 400 and refused[2]["code"] == 503
    assert atom.stream({"data": "/x.avi", "src_type": "base64"})[0] == 422


def test_video_limits(tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    """IMAGE_MAX_BYTES caps the file, IMAGE_MAX_PIXELS each frame: 413 with code 501."""
    root = tmp_path / "videos"
    root.mkdir()
    write_video(root / "big.avi", shaded_frames([100] * 40, size=(120, 160)))
    size = (root / "big.avi").stat().st_size
    for limits, msg in [
        ({"image_max_bytes": size - 1}, f"video: {size} bytes is above the limit"),
        ({"image_max_pixels": 160 * 120 - 1}, "video: 160 x 120 pixels is above the limit"),
    ]:
        settings, client = make_atom(make_settings, root, (), **limits)
        with client:
            wait_ready(client, settings.atom_api_prefix)
            reply = client.post(
                f"{settings.atom_api_prefix}/detect/stream",
                json={"data": str(root / "big.avi"), "src_type": "local"},
            )
        assert reply.status_code == 413
        assert reply.json()["code"] == 501 and reply.json()["msg"].startswith(msg)


def test_demo_model_finds_the_face_only_in_face_frames(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """With the real demo model, the frames holding the photograph have its one face (the
    box that ``detect`` finds on the photograph), the blank frames none."""
    root = tmp_path / "videos"
    root.mkdir()
    write_video(root / "faces.avi", face_frames("F--F"))
    settings, client = make_atom(make_settings, root, ("face",))
    with client:
        wait_ready(client, settings.atom_api_prefix)
        photo = cv2.imencode(".png", cv2.imread(str(PHOTO)))[1].tobytes()
        detect = client.post(
            f"{settings.atom_api_prefix}/detect",
            json={"data": [base64.b64encode(photo).decode()], "src_type": "base64"},
        ).json()["objects"][0]
        atom = Atom(client, settings.atom_api_prefix, root)
        status, events, _ = atom.stream({"data": str(root / "faces.avi"), "src_type": "local"})
    assert status == 200 and len(detect) == 1
    found = [event["data"]["objects"] for event in events[:-1]]
    assert [len(objects) for objects in found] == [1, 0, 0, 1]
    for objects in (found[0], found[3]):
        box = np.array([objects[0][k] for k in ("xmin", "ymin", "xmax", "ymax")])
        expected = np.array([detect[0][k] for k in ("xmin", "ymin", "xmax", "ymax")])
        assert np.abs(box - expected).max() <= 8  # MJPG compression moves it a few pixels
    assert events[-1]["data"]["objects"] == 2
