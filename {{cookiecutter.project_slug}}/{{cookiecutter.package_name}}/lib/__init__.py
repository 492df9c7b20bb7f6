"""The compatibility package: every public name of ``linker_atom`` 0.0.43 that the atom
keeps, and nothing the atom itself needs.

By ``linker_atom``'s module: ``common``, ``exception``, ``load_image``, ``log``,
``requests`` and ``share_memory`` (its ``lib``), ``settings`` (its ``config``), ``api``
and ``schema`` (names of its ``api`` package). The atom's own code never imports this
package (``tests/test_structure.py`` checks it); the old import paths outside it
(``config.settings``, ``api.base.UdfAPIRoute``...) forward their names here on first use.
``docs/migration.md`` lists each name with the atom's own way.
"""
