"""META: what the Serving platform tells the atom about itself (a JSON object in the
environment: Serving's address, the atom's codes, model ids and URLs)."""

import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError


def camel(name: str) -> str:
    """serving_host -> servingHost, k8s_healthcheck_url -> k8sHealthcheckUrl."""
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def split_model_ids(value: Any) -> Any:
    """Accept "a, b,,c" (the contract) or a list; strip items and drop empty ones."""
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list | tuple):
        return tuple(item.strip() for item in value if isinstance(item, str) and item.strip())
    return value


class ServingMeta(BaseModel):
    """The parsed META object; unknown keys are ignored."""

    model_config = ConfigDict(
        alias_generator=camel, populate_by_name=True, extra="ignore", frozen=True
    )

    serving_host: str = ""
    serving_port: int = Field(80, ge=0, le=65535)
    ability_code: str = ""
    ability_code_instance: str = ""
    ability_depend_atom_codes: list[str] = Field(default_factory=list)
    atom_code: str = ""
    model_ids: Annotated[tuple[str, ...], BeforeValidator(split_model_ids)] = ()
    svc_address: str = ""
    atom_process_url: str = "/atom/process"
    k8s_healthcheck_url: str = ""

    @property
    def request_url(self) -> str:
        """The URL Serving calls to reach this atom: svcAddress + atomProcessUrl."""
        return self.svc_address.rstrip("/") + self.atom_process_url

    @property
    def registers(self) -> bool:
        """The atom registers with Serving when META names a Serving host."""
        return bool(self.serving_host.strip())

    @property
    def serving_url(self) -> str:
        """``http://host:port`` of the Serving platform (port 0 means the default, 80)."""
        return f"http://{self.serving_host.strip()}:{self.serving_port or 80}"

    def register_body(self, instance_name: str) -> dict[str, object]:
        """The body of ``POST /atom/register``."""
        return {
            "abilityCode": self.ability_code,
            "abilityCodeInstance": self.ability_code_instance,
            "abilityDependAtomCodes": list(self.ability_depend_atom_codes),
            "atomCode": self.atom_code,
            "atomInstanceName": instance_name,
            "requestUrl": self.request_url,
        }


def parse_meta(text: str) -> ServingMeta:
    """Parse META; raise ValueError naming META when it is not a valid object."""
    if not text.strip():
        return ServingMeta.model_validate({})
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"META is not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(data, dict):
        raise ValueError(f"META must be a JSON object, not {type(data).__name__}")
    try:
        return ServingMeta.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )
        raise ValueError(f"META has invalid values ({problems})") from None
