"""What an encoded image says about itself before it is decoded: its format and size.

``read_header(raw)`` looks at the first bytes only, so a decompression bomb (a small
file declaring 30000 x 30000 pixels) is refused before any pixel is allocated. The
formats the atom decodes are JPEG, PNG, WebP and BMP; a few others are recognised so
that the caller is told they are not supported rather than that the bytes are corrupt.
"""

from collections.abc import Callable
from typing import NamedTuple

from ..errors import VqlError

Raw = bytes | bytearray  # encoded image bytes, as received or downloaded

DECODED = "JPEG, PNG, WebP or BMP"
# JPEG start-of-frame markers (C4 DHT, C8 JPG and CC DAC are not frames).
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
JPEG_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}
BMP_DIB_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
# Magic numbers of formats that OpenCV might read but the atom refuses.
UNSUPPORTED_MAGIC = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"8BPS", "PSD"),
    (b"%PDF", "PDF"),
)


class ImageHeader(NamedTuple):
    """The format and the declared size of an encoded image."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        """Width times height."""
        return self.width * self.height


def _u16be(raw: Raw, at: int) -> int:
    return int.from_bytes(raw[at : at + 2], "big")


def _u32be(raw: Raw, at: int) -> int:
    return int.from_bytes(raw[at : at + 4], "big")


def _le(raw: Raw, at: int, size: int, *, signed: bool = False) -> int:
    return int.from_bytes(raw[at : at + size], "little", signed=signed)


def jpeg_size(raw: Raw) -> tuple[int, int] | None:
    """(width, height) from the frame header, walking the segments that precede it."""
    pos, end = 2, len(raw)
    while pos + 4 <= end:
        if raw[pos] != 0xFF:
            return None
        marker = raw[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker in JPEG_STANDALONE:
            pos += 2
        elif marker in JPEG_SOF:
            return (_u16be(raw, pos + 7), _u16be(raw, pos + 5)) if pos + 9 <= end else None
        elif marker in (0xD9, 0xDA):  # end of image or scan before any frame header
            return None
        else:
            pos += 2 + _u16be(raw, pos + 2)
    return None


def png_size(raw: Raw) -> tuple[int, int] | None:
    """(width, height) from IHDR, which must be the first chunk."""
    if len(raw) < 24 or raw[12:16] != b"IHDR":
        return None
    return _u32be(raw, 16), _u32be(raw, 20)


def webp_size(raw: Raw) -> tuple[int, int] | None:
    """(width, height) from the VP8X, VP8 (lossy) or VP8L (lossless) chunk."""
    chunk = raw[12:16]
    if chunk == b"VP8X" and len(raw) >= 30:
        return 1 + _le(raw, 24, 3), 1 + _le(raw, 27, 3)
    if chunk == b"VP8 " and len(raw) >= 30 and raw[23:26] == b"\x9d\x01\x2a":
        return _le(raw, 26, 2) & 0x3FFF, _le(raw, 28, 2) & 0x3FFF
    if chunk == b"VP8L" and len(raw) >= 25 and raw[20] == 0x2F:
        bits = _le(raw, 21, 4)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def bmp_size(raw: Raw) -> tuple[int, int] | None:
    """(width, height) from the DIB header (a negative height means top-down rows)."""
    if len(raw) < 26:
        return None
    dib = _le(raw, 14, 4)
    if dib not in BMP_DIB_SIZES:
        return None
    if dib == 12:
        return _le(raw, 18, 2), _le(raw, 20, 2)
    return abs(_le(raw, 18, 4, signed=True)), abs(_le(raw, 22, 4, signed=True))


def sniff(raw: Raw) -> tuple[str, Callable[[Raw], tuple[int, int] | None]] | None:
    """The decoded format of ``raw`` and its size reader, or None."""
    if raw.startswith(b"\xff\xd8\xff"):
        return "JPEG", jpeg_size
    if raw.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG", png_size
    if raw.startswith(b"RIFF") and raw[8:12] == b"WEBP":
        return "WebP", webp_size
    if raw.startswith(b"BM"):
        return "BMP", bmp_size
    return None


def unsupported_format(raw: Raw) -> str | None:
    """The name of a recognised format the atom does not decode, or None."""
    for magic, name in UNSUPPORTED_MAGIC:
        if raw.startswith(magic):
            return name
    if raw[4:8] == b"ftyp":
        return "HEIF/AVIF"
    return None


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """413 (code 501) when an image declares more pixels than allowed."""
    if width * height > max_pixels:
        raise VqlError(
            501,
            f"{width} x {height} pixels is above the limit of {max_pixels} (IMAGE_MAX_PIXELS)",
            status=413,
        )


def read_header(raw: Raw) -> ImageHeader:
    """The header of an encoded image; ``VqlError`` 502 (corrupt) or 504 (unsupported)."""
    found = sniff(raw)
    if found is None:
        other = unsupported_format(raw)
        if other is not None:
            raise VqlError(504, f"{other} images are not supported ({DECODED} only)")
        raise VqlError(502, f"not a {DECODED} image ({len(raw)} bytes)")
    name, read_size = found
    size = read_size(raw)
    if size is None or 0 in size:
        raise VqlError(502, f"corrupt {name} header")
    return ImageHeader(name, *size)
