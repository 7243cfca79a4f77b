"""Reading the project's Dockerfiles the way the chart tests need: logical instructions of the file."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(KEYWORD, rest) per instruction, continuation lines joined and comments dropped; a missing
    Dockerfile fails the test, since the chart runs that image."""
    if not dockerfile.is_file():
        pytest.fail(f"{dockerfile.relative_to(ROOT)} is missing: the chart runs that image")
    logical, current = [], ""
    for line in dockerfile.read_text().splitlines():
        if not current and line.lstrip().startswith("#"):
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    found = []
    for instruction in logical:
        keyword, _, rest = instruction.partition(" ")
        found.append((keyword.upper(), rest))
    return found
