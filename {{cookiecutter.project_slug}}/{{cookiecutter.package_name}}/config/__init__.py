"""Settings of the atom, read once from the environment and a ``.env`` file.

One field per environment variable; every variable of ``linker_atom`` keeps its name and
default. Nothing is read at import: ``get_settings()`` reads and caches, tests build their
own ``Settings(...)``. ``linker_atom``'s ``from <package>.config import settings``, its
property names of the settings and its grouped ``LoggerConfig``, ``ServingConfig`` and
``SkyWalkingConfig`` come from the compatibility package (``lib/settings.py``), on first
use.
"""

import ipaddress
import logging
import re
import uuid
from collections.abc import Mapping
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .. import about, memory
from ..control import threads
from ..control.meta import ServingMeta, parse_meta
from ..images.limits import ImageLimits

TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
PREFIX_RE = re.compile(r"(/[A-Za-z0-9._~-]+)+")  # fullmatch: "$" lets a final "\n" in
# Fields whose values are not repeated in error messages (long, or secret).
SECRET_FIELDS = frozenset({"meta", "atom_model_key"})


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the variable."""


def parse_bool(value: Any) -> bool:
    """Accept true/false, 1/0, yes/no, on/off in any case; reject everything else."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError("must be one of true/false, 1/0, yes/no, on/off")


def parse_log_level(value: Any) -> str:
    """Accept a logging level name in any case."""
    text = str(value).strip().upper()
    if text not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return text


def check_prefix(value: str) -> str:
    """Accept "" or /segment[/segment] without a trailing slash."""
    if value and not PREFIX_RE.fullmatch(value):
        raise ValueError("must be empty or look like /segment[/segment] (no trailing slash)")
    return value


def check_meta(value: str) -> str:
    """META must parse (the parsed form is built lazily by ``Settings.serving``)."""
    parse_meta(value)
    return value


def parse_list(value: Any) -> tuple[str, ...]:
    """A comma-separated list (or a list): items stripped, empty ones dropped."""
    items = value.split(",") if isinstance(value, str) else list(value)
    return tuple(str(item).strip() for item in items if str(item).strip())


def check_url_schemes(value: tuple[str, ...]) -> tuple[str, ...]:
    """Image URLs may use http and https only."""
    schemes = tuple(scheme.lower() for scheme in value)
    if not set(schemes) <= {"http", "https"}:
        raise ValueError("must list http and/or https only")
    return schemes


def check_networks(value: tuple[str, ...]) -> tuple[str, ...]:
    """Each item is an IP address or network (CIDR), such as 10.1.2.0/24."""
    for item in value:
        ipaddress.ip_network(item, strict=False)  # ValueError names the bad item
    return value


Bool = Annotated[bool, BeforeValidator(parse_bool)]
LogLevel = Annotated[str, BeforeValidator(parse_log_level)]
Port = Annotated[int, Field(ge=1, le=65535)]
StrList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(parse_list)]


class BatchOverride(BaseModel):
    """Batching of one model set by the environment (``ATOM_BATCH__<MODEL>__<FIELD>``)."""

    model_config = {"extra": "forbid"}

    max_size: int | None = Field(None, ge=1)
    max_wait_ms: float | None = Field(None, ge=0, le=10000)
    queue_size: int | None = Field(None, ge=1)
    timeout: float | None = Field(None, gt=0, le=3600)


class Settings(BaseSettings):
    """One field per environment variable (the variable is the field name in capitals).

    ``ATOM_BATCH`` is read from variables named ``ATOM_BATCH__<MODEL>__<FIELD>`` (or from
    JSON in ``ATOM_BATCH`` itself).
    """

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_nested_delimiter="__"
    )

    # Server and routes.
    atom_workers: int = Field(about.WORKERS, ge=1)
    atom_port: Port = about.PORT
    atom_inner_start_port: Port = 9000
    atom_host: str = "0.0.0.0"
    atom_api_prefix: Annotated[str, AfterValidator(check_prefix)] = about.API_PREFIX
    atom_title: str = about.PROJECT_NAME
    atom_desc: str = about.PROJECT_DESCRIPTION
    atom_max_body_bytes: int = Field(ImageLimits.max_bytes, ge=1024)
    # The memory a worker's requests may hold at once, every door counted (memory.py):
    # bodies, images, downloads, videos, v2 tensors, the model's working set. With N
    # workers a container needs N x (ATOM_MEMORY_BYTES + 512 MiB) (docs/security.md).
    atom_memory_bytes: int = Field(memory.DEFAULT_BYTES, ge=16 * memory.MIB)
    # A JSON body's structure (api/json_body.py): values in all (413), nesting (422).
    atom_json_max_items: int = Field(1_000_000, ge=1)
    atom_json_max_depth: int = Field(32, ge=1)
    docs_switch: Bool = True
    profiling: Bool = False

    # Dynamic batching (api/batching.py): per-model overrides of the code's Batching, and
    # the longest a request waits for its batch's results.
    atom_batch: dict[str, BatchOverride] = {}
    atom_batch_timeout: float = Field(30.0, gt=0, le=3600)
    # Threads of OpenCV, OpenMP/BLAS and ONNX Runtime per server; 0: cores / ATOM_WORKERS.
    atom_threads: int = Field(0, ge=0, le=1024)

    # Logging.
    log_level: LogLevel = "INFO"
    log_root: str = "logs"
    log_dir: str = "atom"
    log_file_max_bytes: int = Field(104857600, ge=1024)
    log_backup_count: int = Field(30, ge=0)

    # SkyWalking.
    sw_switch: Bool = False
    sw_agent_collector_backend_services: str = ""
    sw_agent_name: str = ""
    sw_agent_instance_name: str = Field(default_factory=lambda: uuid.uuid4().hex)
    sw_agent_log_reporter_active: Bool = True
    sw_agent_log_reporter_level: LogLevel = "DEBUG"
    sw_agent_protocol: Literal["grpc", "http", "kafka"] = "grpc"

    # Serving platform: META, what Serving tells the atom about itself (control/meta.py).
    meta: Annotated[str, AfterValidator(check_meta)] = ""

    # Image inputs (images/); the defaults are ImageLimits's.
    image_max_bytes: int = Field(0, ge=0)  # 0: ATOM_MAX_BODY_BYTES
    image_max_pixels: int = Field(ImageLimits.max_pixels, ge=1)
    image_max_decoded_bytes: int = Field(ImageLimits.max_decoded_bytes, ge=1)
    image_max_decodes: int = Field(ImageLimits.max_decodes, ge=1, le=64)
    image_url_timeout: float = Field(ImageLimits.url_timeout, gt=0, le=600)
    image_url_retries: int = Field(ImageLimits.url_retries, ge=0, le=10)
    image_url_schemes: Annotated[StrList, AfterValidator(check_url_schemes)] = (
        ImageLimits.url_schemes
    )
    image_url_hosts: StrList = ImageLimits.url_hosts
    image_url_block_private: Bool = ImageLimits.url_block_private
    image_url_allowed_networks: Annotated[StrList, AfterValidator(check_networks)] = (
        ImageLimits.url_allowed_networks
    )
    image_local_roots: StrList = ImageLimits.local_roots
    image_mmap_roots: StrList = ImageLimits.mmap_roots

    # Model protection (protection/).
    atom_model_dir: str = "models"
    atom_model_key_file: str = "/run/secrets/atom_model_key"
    atom_model_key: SecretStr = SecretStr("")

    # Deployment and control plane (nginx_run, Serving registration, metrics).
    atom_runtime_dir: str = ""
    atom_grace_period: float = Field(30.0, ge=0, le=3600)
    atom_proxy_read_timeout: float = Field(300.0, ge=1, le=86400)
    atom_client_timeout: float = Field(30.0, ge=1, le=3600)
    # The most a client may take to send a request's headers (server.py and nginx).
    atom_header_timeout: float = Field(10.0, ge=1, le=3600)
    atom_connections_per_client: int = Field(64, ge=0)
    # Request bodies nginx holds on disk at once, overall and per client address (0: half);
    # the default fits the Kubernetes emptyDir of /tmp (2 GiB) with room to spare.
    atom_body_disk_bytes: int = Field(1 << 30, ge=1 << 20)
    atom_body_disk_client_bytes: int = Field(0, ge=0)
    # The servers' user when nginx_run starts as root (a name or uid[:gid]; root keeps root).
    atom_worker_user: str = "nobody"
    atom_metrics_port: int = Field(0, ge=0, le=65535)
    atom_worker_start_timeout: float = Field(120.0, ge=1, le=3600)
    nginx_bin: str = ""
    atom_supervised: Bool = False  # set by nginx_run for its workers
    metrics_switch: Bool = True
    # FastAPI's own OpenTelemetry instrumentation, for a process that configures an
    # OpenTelemetry provider; off, the atom's tracing is SkyWalking's, its metrics Prometheus.
    atom_otel: Bool = False
    serving_heartbeat_interval: float = Field(2.0, gt=0, le=3600)
    serving_retry_max: float = Field(30.0, ge=1, le=3600)
    serving_timeout: float = Field(3.0, gt=0, le=60)

    # Protocols: streamed replies (api/streaming.py), Open Inference Protocol v2 (api/v2/).
    atom_stream_keepalive: float = Field(15.0, gt=0, le=3600)
    v2_switch: Bool = True

    @field_validator("atom_metrics_port")
    @classmethod
    def _metrics_port_is_another(cls, value: int, info: ValidationInfo) -> int:
        """The metrics port, when set, is not the public port."""
        if value and value == info.data.get("atom_port"):
            raise ValueError("must differ from ATOM_PORT (0 serves metrics on ATOM_PORT)")
        return value

    @cached_property
    def serving(self) -> ServingMeta:
        """META, parsed."""
        return parse_meta(self.meta)

    def image_limits(self) -> ImageLimits:
        """The limits of the image pipeline (IMAGE_*; bytes default to ATOM_MAX_BODY_BYTES)."""
        return ImageLimits(
            max_bytes=self.image_max_bytes or self.atom_max_body_bytes,
            max_request_bytes=self.atom_max_body_bytes,
            max_pixels=self.image_max_pixels,
            max_decoded_bytes=self.image_max_decoded_bytes,
            max_decodes=self.image_max_decodes,
            url_timeout=self.image_url_timeout,
            url_retries=self.image_url_retries,
            url_schemes=self.image_url_schemes,
            url_hosts=self.image_url_hosts,
            url_block_private=self.image_url_block_private,
            url_allowed_networks=self.image_url_allowed_networks,
            local_roots=self.image_local_roots,
            mmap_roots=self.image_mmap_roots,
        )

    @cached_property
    def thread_budget(self) -> int:
        """Threads per server process for the numeric libraries (``control/threads.py``):
        ATOM_THREADS, or the cores available to the container divided by ATOM_WORKERS."""
        if self.atom_threads:
            return self.atom_threads
        return threads.per_worker(threads.available_cores(), self.atom_workers)

    @property
    def model_id_list(self) -> list[str]:
        """The model ids that Serving assigned to this atom (META ``modelIds``)."""
        return list(self.serving.model_ids)

    @property
    def log_file(self) -> Path | None:
        """Where the rotated log file goes, or None when LOG_ROOT is empty."""
        if not self.log_root:
            return None
        return Path(self.log_root) / self.log_dir / "atom.log"

    @property
    def log_level_number(self) -> int:
        """LOG_LEVEL as the number the logging module uses."""
        return logging.getLevelName(self.log_level)


def describe_errors(exc: ValidationError) -> str:
    """Turn a pydantic error into one line naming each bad variable."""
    parts = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error["loc"] else "settings"
        if field == "atom_batch":  # named as it is set: ATOM_BATCH__FACE__MAX_SIZE
            field = "__".join(str(part) for part in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if message.startswith(field.upper()):  # the message names the variable itself
            parts.append(message)
        elif field in SECRET_FIELDS or not error["loc"]:
            parts.append(f"{field.upper()}: {message}")
        else:
            parts.append(f"{field.upper()}={error.get('input')!r:.80}: {message}")
    return "invalid configuration: " + "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; raise SettingsError naming the variable if one is invalid."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SettingsError(describe_errors(exc)) from None


def resolve_settings(config: "Settings | Mapping[str, Any] | None" = None) -> Settings:
    """The settings of ``get_app(config)``: the process's for None, ``config`` itself for a
    ``Settings``, else the process's with ``config``'s values (``linker_atom``'s dict of
    settings, its names accepted: ``lib/settings.py``)."""
    if config is None:
        return get_settings()
    if isinstance(config, Settings):
        return config
    if isinstance(config, Mapping):
        # linker_atom's names of the settings are accepted too: lazily, from the
        # compatibility package (the core never imports it otherwise).
        from ..lib.settings import legacy_overrides, legacy_settings  # noqa: PLC0415

        return legacy_settings(load_settings(**legacy_overrides(config)))
    raise TypeError(f"config must be Settings, a mapping or None, not {type(config).__name__}")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read on first use and cached."""
    return load_settings()


LEGACY_NAMES = frozenset({"settings", "LoggerConfig", "ServingConfig", "SkyWalkingConfig"})


def __getattr__(name: str) -> Any:
    """``linker_atom``'s names at this path, from the compatibility package on first use
    (``settings`` is read then, not at import)."""
    if name in LEGACY_NAMES:
        from ..lib import settings as legacy  # noqa: PLC0415 - the core never imports lib

        return getattr(legacy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
