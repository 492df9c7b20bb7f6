"""``linker_atom``'s settings: ``config.settings`` with its property names, its grouped
configuration objects, and its dict of settings given to ``get_app(config)``.

``from <package>.config import settings`` gives ``LegacySettings``: the process's settings
(``config.get_settings()``, the same values and the same object's cache) with
``linker_atom``'s names as properties: ``atom_description``, ``serving_meta_raw``,
``log_config``, ``sw_config``, ``serving_config``, ``healthcheck_url``. ``LoggerConfig``,
``SkyWalkingConfig`` and ``ServingConfig`` are those groups; ``config``, ``config.logger``,
``config.serving`` and ``config.skywalking`` forward them from here. Built by hand, their
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

from ..config import Settings, get_settings
from ..control.health import PING_PATH

__all__ = [
    "LegacySettings",
    "LoggerConfig",
    "ServingConfig",
    "SkyWalkingConfig",
    "legacy_overrides",
    "legacy_settings",
]

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


class LegacySettings(Settings):
    """The atom's ``Settings`` with ``linker_atom``'s names of some of them."""

    @property
    def atom_description(self) -> str:
        """ATOM_DESC (``linker_atom``'s field name)."""
        return self.atom_desc

    @property
    def serving_meta_raw(self) -> str:
        """META as given (``linker_atom``'s field name)."""
        return self.meta

    @property
    def log_config(self) -> LoggerConfig:
        """LOG_BACKUP_COUNT, LOG_DIR and LOG_FILE_MAX_BYTES, as ``linker_atom`` grouped them."""
        return LoggerConfig(
            log_backup_count=self.log_backup_count,
            log_dir=self.log_dir,
            log_file_max_bytes=self.log_file_max_bytes,
        )

    @property
    def sw_config(self) -> SkyWalkingConfig:
        """The SW_* settings, as ``linker_atom`` grouped them."""
        return SkyWalkingConfig(
            sw_switch=self.sw_switch,
            sw_agent_backend=self.sw_agent_collector_backend_services,
            sw_agent_name=self.sw_agent_name,
            sw_agent_instance_name=self.sw_agent_instance_name,
            sw_agent_log_reporter_active=self.sw_agent_log_reporter_active,
            sw_agent_log_reporter_level=self.sw_agent_log_reporter_level,
        )

    @property
    def serving_config(self) -> ServingConfig:
        """META's raw values, as ``linker_atom`` parsed them (``settings.serving`` is checked)."""
        if not self.meta.strip():
            return ServingConfig()
        return ServingConfig.model_validate_json(self.meta)

    @property
    def healthcheck_url(self) -> str:
        """The ping path Serving and Kubernetes probe: META's k8sHealthcheckUrl, else ours.

        Both paths answer (``api/mounting.py``).
        """
        return self.serving.k8s_healthcheck_url or self.atom_api_prefix + PING_PATH


_views: dict[int, tuple[Settings, LegacySettings]] = {}


def legacy_settings(settings: Settings | None = None) -> LegacySettings:
    """``settings`` (the process's by default) as ``LegacySettings``: the same values,
    nothing read again (a second read would draw another SW_AGENT_INSTANCE_NAME)."""
    settings = get_settings() if settings is None else settings
    if isinstance(settings, LegacySettings):
        return settings
    cached = _views.get(id(settings))
    if cached is not None and cached[0] is settings:
        return cached[1]
    values = {name: getattr(settings, name) for name in type(settings).model_fields}
    view = LegacySettings.model_construct(settings.model_fields_set, **values)
    _views.clear()  # one view: of the settings asked for last
    _views[id(settings)] = (settings, view)
    return view


def __getattr__(name: str) -> Any:
    """``settings``: the process's settings, read on first use (``config.settings``)."""
    if name == "settings":
        return legacy_settings()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
