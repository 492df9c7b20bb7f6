"""Settings: every variable (one field of config.Settings each), its default, and clear errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import about
from {{ cookiecutter.package_name }}.config import Settings, SettingsError, load_settings

BOOL_FIELDS = ["SW_SWITCH", "SW_AGENT_LOG_REPORTER_ACTIVE", "DOCS_SWITCH", "PROFILING"]
TRUE_SPELLINGS = ["true", "True", "TRUE", "1", "yes", "YES", "on", "On", " true "]
FALSE_SPELLINGS = ["false", "False", "FALSE", "0", "no", "No", "off", "OFF"]


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    """Settings read from the given environment (and no .env file)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(_env_file=None)


def test_defaults_are_those_of_linker_atom(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no environment, every variable has the default of the table."""
    settings = load(monkeypatch)
    assert settings.atom_workers == about.WORKERS
    assert settings.atom_port == about.PORT
    assert settings.atom_inner_start_port == 9000
    assert settings.atom_api_prefix == about.API_PREFIX
    assert settings.atom_title == about.PROJECT_NAME
    assert settings.atom_desc == about.PROJECT_DESCRIPTION
    assert settings.log_backup_count == 30
    assert settings.log_dir == "atom"
    assert settings.log_file_max_bytes == 104857600
    assert settings.log_level == "INFO"
    assert settings.sw_switch is False
    assert settings.sw_agent_collector_backend_services == ""
    assert settings.sw_agent_name == ""
    assert len(settings.sw_agent_instance_name) == 32
    assert settings.sw_agent_log_reporter_active is True
    assert settings.sw_agent_log_reporter_level == "DEBUG"
    assert settings.meta == ""
    assert settings.model_id_list == []
    assert settings.docs_switch is True
    assert settings.profiling is False


@pytest.mark.parametrize("name", BOOL_FIELDS)
@pytest.mark.parametrize("spelling", TRUE_SPELLINGS)
def test_true_spellings(monkeypatch: pytest.MonkeyPatch, name: str, spelling: str) -> None:
    """true, 1, yes, on in any case turn a switch on."""
    assert getattr(load(monkeypatch, **{name: spelling}), name.lower()) is True


@pytest.mark.parametrize("name", BOOL_FIELDS)
@pytest.mark.parametrize("spelling", FALSE_SPELLINGS)
def test_false_spellings(monkeypatch: pytest.MonkeyPatch, name: str, spelling: str) -> None:
    """false, 0, no, off in any case turn a switch off ("False" was true in linker_atom)."""
    assert getattr(load(monkeypatch, **{name: spelling}), name.lower()) is False


@pytest.mark.parametrize("value", ["maybe", "", "2", "t", "y", "enabled"])
def test_bad_boolean_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """Any other value stops the start with a message naming the variable."""
    with pytest.raises(SettingsError) as error:
        load(monkeypatch, SW_SWITCH=value)
    assert "SW_SWITCH" in str(error.value)
    assert "true/false" in str(error.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ATOM_PORT", "http"),
        ("ATOM_PORT", "70000"),
        ("ATOM_WORKERS", "0"),
        ("ATOM_INNER_START_PORT", "-1"),
        ("LOG_FILE_MAX_BYTES", "ten"),
        ("LOG_BACKUP_COUNT", "-3"),
        ("LOG_LEVEL", "LOUD"),
        ("ATOM_API_PREFIX", "/d2atom/"),
        ("ATOM_API_PREFIX", "d2atom"),
        ("ATOM_API_PREFIX", "/d2atom\n"),
        ("ATOM_MAX_BODY_BYTES", "12"),
        ("ATOM_METRICS_PORT", str(about.PORT)),  # the same as ATOM_PORT
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    """A bad number, level or prefix is refused with the variable's name."""
    with pytest.raises(SettingsError) as error:
        load(monkeypatch, **{name: value})
    assert str(error.value).startswith("invalid configuration: ")
    assert name in str(error.value)


def test_log_level_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    """LOG_LEVEL accepts a level name in any case."""
    assert load(monkeypatch, LOG_LEVEL="debug").log_level == "DEBUG"


def test_dotenv_is_read_and_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A .env file in the working directory is read; the environment overrides it."""
    (tmp_path / ".env").write_text("ATOM_PORT=8123\nPROFILING=on\nLOG_DIR=from-dotenv\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOG_DIR", "from-env")
    settings = load_settings()
    assert (settings.atom_port, settings.profiling, settings.log_dir) == (8123, True, "from-env")


META = {
    "abilityCode": "OD210_101_001866_020",
    "abilityCodeInstance": "OD210_101_001866_020cuy4v0htvv7",
    "abilityDependAtomCodes": ["a009"],
    "atomCode": "a009",
    "atomProcessUrl": "/d2atom/v1/serving/inf_predict_v2",
    "k8sHealthcheckUrl": "/d2atom/v1/health/ping",
    "modelIds": " model_a , ,model_b,",
    "servingHost": "172.16.36.3",
    "servingPort": "8080",
    "svcAddress": "http://atom.svc:8000/",
    "somethingNew": {"ignored": True},
}


def test_meta_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """META's camelCase keys are read, modelIds stripped, unknown keys ignored."""
    settings = load(monkeypatch, META=json.dumps(META))
    assert settings.model_id_list == ["model_a", "model_b"]
    assert settings.serving.serving_host == "172.16.36.3"
    assert settings.serving.serving_port == 8080
    assert settings.serving.ability_depend_atom_codes == ["a009"]
    assert settings.serving.request_url == "http://atom.svc:8000/d2atom/v1/serving/inf_predict_v2"


@pytest.mark.parametrize(
    "meta",
    ["{not json", "[1, 2]", '{"servingPort": "eighty"}', '{"abilityDependAtomCodes": "a009"}'],
)
def test_bad_meta_names_meta(monkeypatch: pytest.MonkeyPatch, meta: str) -> None:
    """Invalid JSON or wrong types stop the start with a message naming META."""
    with pytest.raises(SettingsError) as error:
        load(monkeypatch, META=meta)
    assert str(error.value).startswith("invalid configuration: META ")
    assert str(error.value).count("META") == 1


def test_nothing_is_read_at_import() -> None:
    """Importing the app module reads no settings: a bad variable only fails get_settings()."""
    package = Settings.__module__.split(".")[0]
    code = (
        f"import {package}.api.app, {package}.config as config\n"
        "assert config.get_settings.cache_info().currsize == 0\n"
        "try:\n"
        "    config.settings\n"
        "except config.SettingsError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"SW_SWITCH": "maybe", "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "SW_SWITCH" in result.stdout


def test_lazy_settings_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    """``config.settings``, as linker_atom users import it, is the cached ``get_settings()``
    with linker_atom's property names: read once, on first use."""
    from {{ cookiecutter.package_name }} import config

    config.get_settings.cache_clear()
    monkeypatch.setenv("ATOM_TITLE", "lazy")
    monkeypatch.chdir(Path(__file__).parent)  # no .env there
    try:
        assert config.settings.atom_title == "lazy"
        assert config.settings is config.settings
        assert config.settings.model_dump() == config.get_settings().model_dump()
        assert isinstance(config.settings, Settings)
        assert config.settings.atom_description == config.get_settings().atom_desc
    finally:
        config.get_settings.cache_clear()
