"""Where the model key and the model files are, from the settings.

The key is looked up in this order; the first that applies wins:

1. ``ATOM_MODEL_KEY_FILE``, when it is set: that file must hold the key.
2. ``ATOM_MODEL_KEY``, when it is set (works, but logs a warning: environment variables
   leak through ``ps e``, ``/proc/<pid>/environ``, ``docker inspect`` and crash reports).
3. ``/run/secrets/atom_model_key`` (the default of ``ATOM_MODEL_KEY_FILE``: where Docker
   and Kubernetes mount secrets), when that file exists.
4. ``secrets/model.key`` of the project, created with the project by the template
   (git-ignored and docker-ignored), so a fresh checkout runs with no configuration.

A key file holds 32 random bytes as base64 (44 characters) or hex (64 characters):
``python -m <package>.protection.protect keygen --out FILE`` writes one.
"""

import importlib
import logging
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from ..config import Settings
from .errors import ModelKeyError, ProtectorNotBuiltError

if TYPE_CHECKING:
    from .model_protector import ModelProtector

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROJECT_KEY_FILE = PROJECT_ROOT / "secrets" / "model.key"
PROTECTOR_MODULE = f"{__package__}.model_protector"


def protector_module() -> ModuleType:
    """The compiled protector; a clear error when it has not been built for this Python."""
    try:
        return importlib.import_module(PROTECTOR_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != PROTECTOR_MODULE:
            raise
        raise ProtectorNotBuiltError(
            f"{PROTECTOR_MODULE} is not compiled for this Python: run `make protector` "
            "(or pip install -e .)"
        ) from None


def load_protector(settings: Settings) -> "ModelProtector":
    """The protector holding the model key, found in the documented order."""
    protector = protector_module().ModelProtector
    key_file = settings.atom_model_key_file
    env_key = settings.atom_model_key.get_secret_value()
    if "atom_model_key_file" in settings.model_fields_set:
        if env_key:
            logger.warning("ATOM_MODEL_KEY is ignored: ATOM_MODEL_KEY_FILE is set")
        return protector.from_key_file(key_file, source=f"ATOM_MODEL_KEY_FILE={key_file}")
    if env_key:
        logger.warning(
            "the model key comes from ATOM_MODEL_KEY: environment variables leak "
            "(ps, /proc, docker inspect, crash reports); mount it as a file and set "
            "ATOM_MODEL_KEY_FILE instead"
        )
        return protector.from_key_text(env_key, source="ATOM_MODEL_KEY")
    for path in (Path(key_file), PROJECT_KEY_FILE):
        if path.is_file():
            logger.info("model key read from %s", path)
            return protector.from_key_file(path)
    raise ModelKeyError(
        f"no model key: ATOM_MODEL_KEY_FILE and ATOM_MODEL_KEY are not set, and neither "
        f"{key_file} nor {PROJECT_KEY_FILE} exists (make key writes a new key)"
    )


def model_path(settings: Settings, file_name: str) -> Path:
    """A model file in ATOM_MODEL_DIR (a relative folder is under the project's)."""
    return PROJECT_ROOT / settings.atom_model_dir / file_name
