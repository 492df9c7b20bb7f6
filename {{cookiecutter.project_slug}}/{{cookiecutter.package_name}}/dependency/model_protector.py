"""``linker_atom``'s ``dependency.model_protector``: ``ModelProtector``, the compiled
protector of ``protection/model_protector.pyx`` (``ModelProtector(xor_key, user_id)``
gives ``linker_atom``'s protector of ``.linker`` files; a DeprecationWarning says so).
"""

from ..protection.model_protector import ModelProtector

__all__ = ["ModelProtector"]
