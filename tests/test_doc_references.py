"""Every reference to documentation resolves inside the repository.

- `docs/<file>.md, "<heading>"` in code, tests and benchmarks names a file of docs/ and one of
  its `##` headings;
- no section-sign reference points to a document outside the repository (they used to point to
  research notes that were never part of it);
- no docstring of the shipped package names a path of the machine it was written on.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("exporter", "tests", "bench")
SECTION_SIGN = "\u00a7"
REFERENCE = re.compile(r'docs/([\w.-]+\.md),\s*"([^"\n]+)"')
MACHINE_PATH = re.compile(r"(?<![\w.])/(work|root|tmp)/")


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def headings(document: Path) -> set[str]:
    return {
        line[3:].strip()
        for line in document.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    }


def references() -> list[tuple[str, str, str]]:
    """(where, file, heading) for every reference found, `where` as path:line."""
    found = []
    for path in python_files(*SCANNED):
        # A reference may wrap onto the next line: join the lines of each file first.
        text = path.read_text(encoding="utf-8")
        for match in REFERENCE.finditer(re.sub(r"\n\s*(#\s*)?", " ", text)):
            heading = " ".join(match.group(2).split())
            found.append((path.relative_to(ROOT).as_posix(), match.group(1), heading))
    return found


def test_the_code_cites_the_api_document() -> None:
    # Guards the scan itself: a regex that matches nothing would pass everything below.
    assert any(file == "rocketchat-api.md" for _, file, _ in references())


@pytest.mark.parametrize(("where", "file", "heading"), references())
def test_a_reference_names_an_existing_document_and_heading(
    where: str, file: str, heading: str
) -> None:
    document = ROOT / "docs" / file
    assert document.is_file(), f"{where}: docs/{file} does not exist"
    assert heading in headings(document), f'{where}: docs/{file} has no heading "{heading}"'


def test_no_section_sign_reference_leaves_the_repository() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in python_files(*SCANNED)
        if path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if SECTION_SIGN in line
    ]
    assert offenders == []


def docstrings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            text = ast.get_docstring(node, clean=False)
            if text:
                found.append((getattr(node, "lineno", 1), text))
    return found


def test_no_docstring_of_the_package_names_a_machine_path() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in python_files("exporter")
        for line, text in docstrings(path)
        if MACHINE_PATH.search(text)
    ]
    assert offenders == []
