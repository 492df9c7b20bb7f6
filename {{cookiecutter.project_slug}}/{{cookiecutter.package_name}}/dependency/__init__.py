"""The old path of model protection (``protection/``), kept for code written before the
rename: ``linker_atom``'s ``dependency.model_protector.ModelProtector`` and the route
modules of older atoms (``dependency.keys``). New code imports from ``protection``.
"""
