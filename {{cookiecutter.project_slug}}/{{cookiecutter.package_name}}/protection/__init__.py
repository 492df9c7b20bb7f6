"""Model protection: encrypted model files, their key, and the ``protect`` command line.

``model_protector`` is compiled from ``model_protector.pyx`` (``make protector``); import
it as ``from <package>.protection.model_protector import ModelProtector``.
"""
