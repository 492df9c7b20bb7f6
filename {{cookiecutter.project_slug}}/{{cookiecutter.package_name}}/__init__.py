"""The {{ cookiecutter.package_name }} atom: an AI-inference service built from atom-template."""

__version__ = "0.1.0"
