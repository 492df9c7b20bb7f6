"""The limits the image pipeline enforces, as one value passed to ``ImageLoader``.

The settings build it from IMAGE_* and ATOM_MAX_BODY_BYTES (``Settings.image_limits()``);
their defaults are the defaults below. Light on purpose: the settings import it.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageLimits:
    """What a request's items may be and where they may come from."""

    max_bytes: int = 64 * 1024 * 1024  # also the default of ATOM_MAX_BODY_BYTES
    max_pixels: int = 40_000_000
    url_timeout: float = 10.0
    url_retries: int = 2
    url_schemes: tuple[str, ...] = ("http", "https")
    url_hosts: tuple[str, ...] = ()
    url_block_private: bool = True
    url_allowed_networks: tuple[str, ...] = ()
    local_roots: tuple[str, ...] = ()
    mmap_roots: tuple[str, ...] = ("/dev/shm",)
