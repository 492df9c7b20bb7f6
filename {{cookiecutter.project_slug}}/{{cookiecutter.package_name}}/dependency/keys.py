"""The old path of ``protection/keys.py`` (route modules of atoms generated before the
rename import ``load_protector`` and ``model_path`` from here)."""

from ..protection.keys import PROJECT_KEY_FILE, load_protector, model_path, protector_module

__all__ = ["PROJECT_KEY_FILE", "load_protector", "model_path", "protector_module"]
