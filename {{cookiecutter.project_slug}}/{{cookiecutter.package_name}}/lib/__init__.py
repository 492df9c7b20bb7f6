"""``linker_atom``'s ``lib``: common helpers, business errors, an HTTP client, and the
old module names of the image loading, shared memory and logging (re-exported from
``images/``, ``client/`` and ``control/``)."""
