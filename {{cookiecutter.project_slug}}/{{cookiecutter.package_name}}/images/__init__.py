"""The image-input pipeline: request items in, RGB arrays out.

``loader.py`` (``ImageLoader``) dispatches on ``src_type``; ``fetch.py`` downloads URLs
safely, ``local_files.py`` opens files under configured roots, ``frames.py`` reads
``mmap`` and ``shm`` frames, ``header.py`` reads sizes before decoding, ``limits.py``
holds the limits they enforce. Nothing here reads the settings: the app builds an
``ImageLimits`` from them (``Settings.image_limits()``). This ``__init__`` stays empty so
that importing ``limits`` does not import OpenCV.
"""
