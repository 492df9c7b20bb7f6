"""``linker_atom``'s ``lib.log``: ``logger``, the atom's logger.

Logging is set up once at start (``config.logger.configure_logging``, from
``control/logs.py``); ``flush_all()`` writes the lines still waiting in the batched
handlers (tests call it before reading a log file).
"""

import logging

from ..control.log_handlers import flush_all
from ..control.logs import request_id_ctx

__all__ = ["flush_all", "logger", "request_id_ctx"]

logger = logging.getLogger({{ cookiecutter.package_name | tojson }})
