"""Helpers for the programs that call an atom: shared-memory frames and ``ShmClient``.

They run in the caller's process; nothing here reads the atom's settings.
"""
