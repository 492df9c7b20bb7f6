"""Every relative link of every Markdown file leads somewhere: in the template's own pages
and in a default atom's (rendered without its hooks, which write no Markdown), the file or
folder a link names exists and the anchor it names is a heading of that file (GitHub's
anchors: lower case, punctuation dropped, spaces as hyphens, -1, -2... for repeats)."""

import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest
from cookiecutter.main import cookiecutter

from scripts.atomctl import TEMPLATE, hook_scripts_contained

SLUG = "{{cookiecutter.project_slug}}"
# Folders of the template's checkout that are not the template's pages.
NOT_PAGES = {".git", ".venv", ".venv-py312", "build", "node_modules", ".pytest_cache"}
FENCE_RE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
LINK_RE = re.compile(r"!?\[(?:[^\[\]`]|`[^`]*`)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING_RE = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
JINJA_COMMENT_RE = re.compile(r"\{#.*?#\}", re.S)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[^\w\- ]", "", text.replace("`", "").strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of a Markdown page's headings (repeats numbered as GitHub does)."""
    text = FENCE_RE.sub("", JINJA_COMMENT_RE.sub("", page.read_text(encoding="utf-8")))
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING_RE.findall(text):
        name = anchor(heading)
        count = seen.get(name, 0)
        seen[name] = count + 1
        found.add(name if count == 0 else f"{name}-{count}")
    return found


def links(page: Path) -> list[str]:
    """The link targets of a page, code blocks aside."""
    text = FENCE_RE.sub("", JINJA_COMMENT_RE.sub("", page.read_text(encoding="utf-8")))
    return LINK_RE.findall(text)


def broken(page: Path, root: Path) -> list[str]:
    """The relative links of ``page`` whose file or anchor is missing, as text."""
    wrong = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):
            continue  # http:, https:, mailto:: not this tree's
        path, _, fragment = unquote(target).partition("#")
        where = (page.parent / path).resolve() if path else page
        try:
            shown = where.relative_to(root).as_posix()
        except ValueError:
            wrong.append(f"{page.relative_to(root)}: {target} leaves the tree")
            continue
        if not where.exists():
            wrong.append(f"{page.relative_to(root)}: {target}: no {shown}")
            continue
        if fragment and where.suffix == ".md" and fragment not in anchors(where):
            wrong.append(f"{page.relative_to(root)}: {target}: no heading #{fragment}")
    return wrong


def template_pages() -> list[Path]:
    """The template's Markdown files: its own pages and the atom's, unrendered."""
    pages = []
    for folder, subfolders, files in os.walk(TEMPLATE):
        subfolders[:] = [name for name in subfolders if name not in NOT_PAGES or name == SLUG]
        pages += [Path(folder, name) for name in files if name.endswith(".md")]
    return sorted(pages)


@pytest.fixture(scope="module")
def atom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default atom's files, rendered without the hooks (no key, no compilation)."""
    with hook_scripts_contained():
        project = cookiecutter(
            str(TEMPLATE),
            no_input=True,
            output_dir=str(tmp_path_factory.mktemp("docs")),
            accept_hooks=False,
        )
    return Path(project)


def test_anchors_follow_github() -> None:
    """Headings become GitHub's anchors, Chinese ones included."""
    assert anchor("Streamed results: SSE and NDJSON") == "streamed-results-sse-and-ndjson"
    assert anchor("Moving `.linker` models") == "moving-linker-models"
    assert anchor("以后\uff1a原子自己的写法") == "以后原子自己的写法"  # a full-width colon
    assert anchor("make upgrade beside cruft") == "make-upgrade-beside-cruft"


def test_the_template_pages_link_to_what_exists() -> None:
    """Every relative link of the template's Markdown (the atom's unrendered pages too) names
    a file or folder of the tree, and a heading of it when it has an anchor."""
    pages = template_pages()
    assert TEMPLATE / "README.md" in pages and TEMPLATE / SLUG / "README.md" in pages
    wrong = [line for page in pages for line in broken(page, TEMPLATE)]
    assert wrong == [], "\n".join(wrong)


def test_the_atom_pages_link_to_what_exists(atom: Path) -> None:
    """Every relative link of a generated atom's Markdown works in the atom itself."""
    pages = sorted(atom.rglob("*.md"))
    assert atom / "docs" / "README.md" in pages
    wrong = [line for page in pages for line in broken(page, atom)]
    assert wrong == [], "\n".join(wrong)
