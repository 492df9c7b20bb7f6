"""The READMEs (and the pages of docs/) document every environment variable, and only those."""

import re
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.config import Settings

ROOT = Path(__file__).parent.parent
ROW_RE = re.compile(r"^\| ([A-Z][A-Z0-9_]+) \|", re.M)


@pytest.mark.parametrize("readme", ["README.md", "README.zh-CN.md"])
def test_environment_table_lists_every_variable(readme: str) -> None:
    """The variable table holds one row per setting, in the order of the English README;
    a setting may have its row in a page of docs/ instead."""
    rows = ROW_RE.findall((ROOT / readme).read_text(encoding="utf-8"))
    pages = [path.read_text(encoding="utf-8") for path in sorted((ROOT / "docs").glob("*.md"))]
    elsewhere = {name for page in pages for name in ROW_RE.findall(page)}
    assert len(rows) == len(set(rows))
    assert sorted(set(rows) | elsewhere) == sorted(name.upper() for name in Settings.model_fields)
    english = ROW_RE.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    assert rows == english
