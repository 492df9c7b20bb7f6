"""Deployment: ``nginx_run()`` puts nginx in front of ATOM_WORKERS supervised servers."""

from .launcher import nginx_run

__all__ = ["nginx_run"]
