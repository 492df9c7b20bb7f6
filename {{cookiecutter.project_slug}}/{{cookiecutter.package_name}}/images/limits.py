"""The limits the image pipeline enforces, as one value passed to ``ImageLoader``.

The settings build it from IMAGE_* and ATOM_MAX_BODY_BYTES (``Settings.image_limits()``);
their defaults are the defaults below. Light on purpose: the settings import it.

Images of at most 4096 x 4096 pixels, 256 MiB of decoded images per request, two decodes
at a time. What a worker's requests hold together is bounded by its memory account
(``memory.py``, ATOM_MEMORY_BYTES), which the loader draws from.
"""

from dataclasses import dataclass

MIB = 1 << 20


@dataclass(frozen=True)
class ImageLimits:
    """What a request's items may be and where they may come from."""

    max_bytes: int = 64 * MIB  # also the default of ATOM_MAX_BODY_BYTES
    max_request_bytes: int = 64 * MIB  # encoded bytes of a request's images: its body limit
    max_pixels: int = 4096 * 4096
    max_decoded_bytes: int = 256 * MIB  # width x height x 3, summed over a request's items
    max_decodes: int = 2  # images decoded at once in a worker
    url_timeout: float = 10.0
    url_retries: int = 2
    url_schemes: tuple[str, ...] = ("http", "https")
    url_hosts: tuple[str, ...] = ()
    url_block_private: bool = True
    url_allowed_networks: tuple[str, ...] = ()
    local_roots: tuple[str, ...] = ()
    mmap_roots: tuple[str, ...] = ()
