"""``linker_atom``'s configuration objects, as views of the atom's settings.

``settings.log_config``, ``settings.sw_config`` and ``settings.serving_config`` give these,
built from the settings (``config/__init__.py``); ``config.logger``, ``config.serving`` and
``config.skywalking`` re-export them under their old module paths. Built by hand, their
defaults are the documented defaults: the originals read the environment when
``linker_atom`` was imported, the atom reads it once, into ``Settings``.

``get_app(config)`` still takes ``linker_atom``'s dict of settings: ``legacy_overrides``
turns its names into the atom's.
"""

import socket
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..control.health import PING_PATH

# linker_atom's field names that the atom's Settings spells differently.
RENAMED = {
    "atom_description": "atom_desc",
    "serving_meta_raw": "meta",
    "sw_agent_backend": "sw_agent_collector_backend_services",
}
NESTED = ("log_config", "sw_config")


class LoggerConfig(BaseModel):
    """Log rotation: ``log_backup_count``, ``log_dir``, ``log_file_max_bytes``."""

    log_backup_count: int = 30
    log_dir: str = "atom"
    log_file_max_bytes: int = 100 << 20


class SkyWalkingConfig(BaseModel):
    """The SW_* settings under ``linker_atom``'s names."""

    sw_switch: bool = False
    sw_agent_backend: str = ""
    sw_agent_name: str = ""
    sw_agent_instance_name: str = Field(default_factory=lambda: uuid.uuid4().hex)
    sw_agent_log_reporter_active: bool = True
    sw_agent_log_reporter_level: str = "DEBUG"


class ServingConfig(BaseModel):
    """META as ``linker_atom`` parsed it: its raw values (``model_ids`` is the text).

    The atom itself uses ``settings.serving`` (``control/meta.py``), which checks and
    normalises them (model ids stripped, a port of 0 meaning 80).
    """

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    serving_host: str = Field(default="", alias="servingHost")
    serving_port: int = Field(default=80, alias="servingPort")
    ability_code: str = Field(default="", alias="abilityCode")
    atom_code: str = Field(default="", alias="atomCode")
    host_node_name: str = ""
    ability_code_instance: str = Field(default="", alias="abilityCodeInstance")
    ability_depend_atom_codes: list[str] = Field(
        default_factory=list, alias="abilityDependAtomCodes"
    )
    model_ids: str = Field(default="", alias="modelIds")
    svc_address: str = Field(default="", alias="svcAddress")
    atom_process_url: str = Field(default="/atom/process", alias="atomProcessUrl")
    atom_healthcheck_url: str = Field(default=PING_PATH, alias="k8sHealthcheckUrl")

    @property
    def serving_domain(self) -> str:
        """``http://host:port`` of Serving (the node name, then this host, without a host).

        A port of 0 means 80 (``linker_atom`` built ``http://host:0``).
        """
        host = self.serving_host or self.host_node_name or socket.gethostname()
        return f"http://{host}:{self.serving_port or 80}"

    @property
    def atom_uri(self) -> str:
        """The URL Serving calls: ``svcAddress`` + ``atomProcessUrl``."""
        return f"{self.svc_address}{self.atom_process_url}"


def legacy_overrides(config: Mapping[str, Any]) -> dict[str, Any]:
    """``linker_atom``'s settings dict as keyword arguments of the atom's ``Settings``.

    Renamed fields get their new names; ``log_config`` and ``sw_config`` (dicts or the
    objects above) are flattened. The atom's own names pass through unchanged.
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if key in NESTED and value is not None:
            nested = value.model_dump() if isinstance(value, BaseModel) else dict(value)
            flat.update(legacy_overrides(nested))
        else:
            flat[RENAMED.get(key, key)] = value
    return flat
