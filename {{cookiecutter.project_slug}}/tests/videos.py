"""Small test videos made on the spot (MJPG in AVI: OpenCV's headless wheels write it),
and a file server on 127.0.0.1 for the url tests of videos."""

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

PHOTO = Path(__file__).parent / "data" / "astronaut.jpg"
FPS = 10


def write_video(path: Path, frames: Sequence[np.ndarray], fps: int = FPS) -> Path:
    """Write BGR frames (all of one size) as an MJPG AVI file; return its path."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write MJPG videos here"
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    return path


def face_frames(pattern: str) -> list[np.ndarray]:
    """One frame per letter: "F" the demo photograph (one face), "-" a blank grey frame."""
    photo = cv2.imread(str(PHOTO))
    blank = np.full_like(photo, 128)
    return [photo if letter == "F" else blank for letter in pattern]


def shaded_frames(levels: Sequence[int], size: tuple[int, int] = (48, 64)) -> list[np.ndarray]:
    """Plain frames of the given grey levels (0 is black: the fake detector finds nothing)."""
    return [np.full((*size, 3), level, np.uint8) for level in levels]


@contextmanager
def serve_files(files: Mapping[str, bytes]) -> Iterator[str]:
    """Serve ``files`` (path -> body) on 127.0.0.1 from a thread; yield the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("content-type", "video/x-msvideo" if body else "text/plain")
            self.send_header("content-length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
