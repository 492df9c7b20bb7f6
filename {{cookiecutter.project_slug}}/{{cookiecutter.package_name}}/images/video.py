"""Videos for streamed routes: read frame by frame, under the rules of the image inputs.

``open_video(loader, src_type, item)`` takes the same items as ``ImageLoader.load`` does
for one image, and enforces the same rules with the loader's own pieces:

- ``local``: an absolute path under IMAGE_LOCAL_ROOTS (``local_files.py``: symlinks
  resolved, the opened file checked again, regular files only);
- ``url``: downloaded by the loader's ``UrlFetcher`` (``fetch.py``: schemes, hosts,
  private addresses, redirects, timeout) chunk by chunk straight into an anonymous
  in-memory file (memfd), no other copy;
- at most IMAGE_MAX_BYTES bytes, and every frame within IMAGE_MAX_PIXELS;
- memory held in the worker's account (``memory.py``) until the video is closed: the
  memory file, chunk by chunk as it is written, and ``FRAMES_HELD`` decoded frames (the
  decoder's own and the one given out).

OpenCV (its FFmpeg backend) reads the descriptor that was checked, as ``/proc/self/fd/N``:
the path it opens cannot be swapped after the check. Only AVI, MP4/QuickTime and
Matroska/WebM containers are accepted, recognised by their first bytes: playlists and
other formats through which FFmpeg would open further files or URLs are refused.
Errors are ``VqlError`` with the image codes ("video: ..."): 501 unreadable, 502 not a
decodable video, 503 cannot be fetched, 504 not supported, and 413 above a limit.
"""

import os
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import VqlError
from ..memory import Hold, MemoryAccount, default_account
from .budget import ByteAllowance
from .frames import check_bytes
from .header import check_pixels
from .loader import ImageLoader
from .local_files import open_under_roots

VIDEO_SRC_TYPES = ("local", "url")
SNIFF_BYTES = 12
FRAMES_HELD = 4  # decoded frames alive at once: FFmpeg's, OpenCV's, the colour swap, ours


def container(head: bytes) -> str | None:
    """The container format named by a file's first bytes, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    return None


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: its index in the video, its time, its pixels."""

    index: int
    time_ms: float
    image: np.ndarray


class Video:
    """An opened video: iterate for its frames (every ``every``-th one), then ``close()``.

    Not thread-safe: one reader at a time (a stream's generator steps one at a time).
    """

    def __init__(
        self,
        fd: int,
        *,
        max_pixels: int,
        bgr: bool = False,
        account: MemoryAccount | None = None,
        held: ByteAllowance | None = None,
    ) -> None:
        self._fd = fd
        self.bgr = bgr
        self._holds: list[ByteAllowance | Hold] = [] if held is None else [held]
        self.capture = cv2.VideoCapture(f"/proc/self/fd/{fd}", cv2.CAP_FFMPEG)
        if not self.capture.isOpened():
            self.close()
            raise VqlError(502, "video: not a decodable video")
        self.width = int(self.capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self.capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.frame_count = max(int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
        self.max_pixels = max_pixels
        try:
            check_pixels(self.width, self.height, max_pixels)
            frames = FRAMES_HELD * self.width * self.height * 3
            self._holds.append((account or default_account()).take(frames, "the video's frames"))
        except VqlError as exc:
            self.close()
            raise VqlError(exc.code, f"video: {exc.msg}", status=exc.status) from None

    def frames(self, every: int = 1, max_frames: int | None = None) -> Iterator[Frame]:
        """Every ``every``-th frame from the first, at most ``max_frames`` of them."""
        index, sent = 0, 0
        while max_frames is None or sent < max_frames:
            if not self.capture.grab():
                return
            if index % every == 0:
                ok, image = self.capture.retrieve()
                if not ok or image is None:
                    raise VqlError(502, f"video: frame {index} cannot be decoded")
                check_pixels(image.shape[1], image.shape[0], self.max_pixels)
                if not self.bgr:
                    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
                time_ms = float(self.capture.get(cv2.CAP_PROP_POS_MSEC))
                yield Frame(index, round(time_ms, 3), image)
                sent += 1
            index += 1

    def close(self) -> None:
        """Release the decoder and the file, and give their memory back."""
        if self._fd < 0:
            return
        capture = getattr(self, "capture", None)
        if capture is not None:
            capture.release()
        os.close(self._fd)
        self._fd = -1
        for hold in self._holds:
            hold.release()

    def __enter__(self) -> "Video":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_video(loader: ImageLoader, src_type: str, item: object, *, bgr: bool = False) -> Video:
    """Open the video an item names, under the loader's limits (see the module docstring)."""
    if src_type not in VIDEO_SRC_TYPES:
        raise VqlError(504, f"video: src_type {str(src_type)[:20]!r} is not supported for videos")
    held = ByteAllowance(loader.max_bytes, loader.account)  # a downloaded video's memfd
    try:
        fd = _local_fd(loader, item) if src_type == "local" else _url_fd(loader, item, held)
    except VqlError as exc:
        held.release()
        raise VqlError(exc.code, f"video: {exc.msg}", status=exc.status) from None
    try:
        head = os.pread(fd, SNIFF_BYTES, 0)
        if container(head) is None:
            raise VqlError(504, "video: not an AVI, MP4, QuickTime, Matroska or WebM file")
    except BaseException as exc:
        os.close(fd)
        held.release()
        if isinstance(exc, OSError):
            raise VqlError(501, "video: the file cannot be read") from None
        raise
    return Video(fd, max_pixels=loader.max_pixels, bgr=bgr, account=loader.account, held=held)


def _local_fd(loader: ImageLoader, item: object) -> int:
    fd, size = open_under_roots(item, loader.local_roots, "IMAGE_LOCAL_ROOTS")
    try:
        if size == 0:
            raise VqlError(501, "empty file")
        check_bytes(size, loader.max_bytes)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _url_fd(loader: ImageLoader, item: object, held: ByteAllowance) -> int:
    """A memory file holding the video at ``item``, written chunk by chunk as it comes
    (capped at IMAGE_MAX_BYTES, each chunk held in ``held`` first)."""
    fd = os.memfd_create("atom-video", os.MFD_CLOEXEC)

    def write(chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]

    try:
        loader.fetcher.fetch(item, allowance=held, sink=write)
    except BaseException:
        os.close(fd)
        raise
    return fd
