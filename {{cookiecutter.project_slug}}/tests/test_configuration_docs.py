"""The configuration pages document every environment variable, and only those."""

import re
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.config import Settings

ROOT = Path(__file__).parent.parent
ROW_RE = re.compile(r"^\| ([A-Z][A-Z0-9_]+) \|", re.M)


@pytest.mark.parametrize("page", ["docs/configuration.md", "docs/configuration.zh-CN.md"])
def test_environment_table_lists_every_variable(page: str) -> None:
    """The variable table holds one row per setting, in the order of the English page."""
    rows = ROW_RE.findall((ROOT / page).read_text(encoding="utf-8"))
    assert sorted(rows) == sorted(name.upper() for name in Settings.model_fields)
    english = ROW_RE.findall((ROOT / "docs/configuration.md").read_text(encoding="utf-8"))
    assert rows == english
