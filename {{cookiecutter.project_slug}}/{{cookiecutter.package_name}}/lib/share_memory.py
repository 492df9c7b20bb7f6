"""``linker_atom``'s ``lib.share_memory``: frames passed between processes of one host.

The atom's side (reading ``mmap`` and ``shm`` descriptors) is in ``images/frames.py``;
the producer's side (``SharedFrame``, ``publish_frame``, ``write_mmap_frame``,
``ShmClient``) in ``client/shm.py``. Both are importable from here.
"""

from ..client.shm import Reply, SharedFrame, ShmClient, publish_frame, write_mmap_frame
from ..images.frames import MmapReader, ShmReader, open_frame, parse_shm_descriptor

__all__ = [
    "MmapReader",
    "Reply",
    "SharedFrame",
    "ShmClient",
    "ShmReader",
    "open_frame",
    "parse_shm_descriptor",
    "publish_frame",
    "write_mmap_frame",
]
