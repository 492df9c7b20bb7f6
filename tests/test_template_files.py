"""The template's files are rendered as cookiecutter decides: text files must not look binary."""

from binaryornot.check import is_binary

from scripts.atomctl import TEMPLATE

BINARY_SUFFIXES = {".jpg", ".png"}


def test_text_files_are_rendered() -> None:
    """cookiecutter copies 'binary' files unrendered; no text file of the atom may look binary."""
    root = TEMPLATE / "{{cookiecutter.project_slug}}"
    files = [path for path in root.rglob("*") if path.is_file() and "__pycache__" not in str(path)]
    assert len(files) > 30
    looks_binary = [
        str(path.relative_to(root))
        for path in files
        if path.suffix not in BINARY_SUFFIXES and is_binary(str(path))
    ]
    assert looks_binary == []


def test_photo_is_copied_as_is() -> None:
    """The sample photograph is seen as binary, so it is copied byte for byte."""
    photo = TEMPLATE / "{{cookiecutter.project_slug}}" / "tests" / "data" / "astronaut.jpg"
    assert is_binary(str(photo))
