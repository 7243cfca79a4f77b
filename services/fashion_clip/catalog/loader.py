"""Reading a catalog: a folder of images plus one metadata file (CSV or JSONL), validated row by row.

A bad catalog is refused as a whole, with every bad row named by line number and field, so a user
fixes the file once instead of one error per run. Image files are not opened here: whether an image
can be decoded is the index builder's question, and it skips (and reports) the ones that cannot.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from fashion_clip.catalog.schemas import REQUIRED_FIELDS, CatalogItem

# The names `load_catalog` looks for when given a folder, in this order.
METADATA_NAMES = ("catalog.jsonl", "catalog.csv")
# A message listing hundreds of rows helps nobody; the exception still carries all of them.
MAX_REPORTED_ROWS = 20


@dataclass(frozen=True)
class RowError:
    line: int
    item_id: str | None
    problems: list[str]

    def __str__(self) -> str:
        where = f"line {self.line}" + (f" (id {self.item_id!r})" if self.item_id else "")
        return f"{where}: {'; '.join(self.problems)}"


class CatalogError(ValueError):
    """The catalog cannot be used as it is; `rows` lists each offending row."""

    def __init__(self, message: str, rows: list[RowError] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.rows = rows or []


@dataclass
class Catalog:
    """Validated items and the folder their relative image paths are resolved against."""

    root: Path
    items: list[CatalogItem]
    source: Path | None = None
    _by_id: dict[str, CatalogItem] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        check_unique_ids(self.items)
        self._by_id = {item.id: item for item in self.items}

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[CatalogItem]:
        return iter(self.items)

    def __getitem__(self, item_id: str) -> CatalogItem:
        return self._by_id[item_id]

    def categories(self) -> list[str]:
        return sorted({item.category for item in self.items})

    def image_file(self, item: CatalogItem) -> Path | None:
        """The local file of an item's image, or None when the image is a URL."""
        return None if item.image_is_url else self.root / item.image


def check_unique_ids(items: Iterable[CatalogItem], lines: list[int] | None = None) -> None:
    """Refuse duplicate ids, naming each one and where it occurs."""
    seen: dict[str, list[int]] = defaultdict(list)
    for position, item in enumerate(items):
        seen[item.id].append(lines[position] if lines else position + 1)
    duplicates = {item_id: where for item_id, where in seen.items() if len(where) > 1}
    if duplicates:
        label = "lines" if lines else "positions"
        described = ", ".join(
            f"{item_id!r} ({label} {', '.join(map(str, where))})" for item_id, where in duplicates.items()
        )
        raise CatalogError(f"Duplicate item ids: {described}. Every id must be unique.")


def find_metadata(path: Path) -> Path:
    """The metadata file itself, or the one `METADATA_NAMES` finds in a folder."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CatalogError(f"No catalog at {path}: expected a folder or a .csv/.jsonl metadata file.")
    found = [path / name for name in METADATA_NAMES if (path / name).is_file()]
    if len(found) > 1:
        raise CatalogError(
            f"{path} holds both {found[0].name} and {found[1].name}; pass the one to use explicitly."
        )
    if not found:
        raise CatalogError(f"{path} has no metadata file: expected one of {', '.join(METADATA_NAMES)}.")
    return found[0]


def _csv_rows(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing = [name for name in REQUIRED_FIELDS if name not in header]
        if missing:
            raise CatalogError(
                f"{path.name}: the header lacks the required column(s) {', '.join(missing)} "
                f"(required: {', '.join(REQUIRED_FIELDS)})."
            )
        for row in reader:
            if None in row:
                yield reader.line_num, None, f"{len(row[None])} more value(s) than header columns"
                continue
            # csv leaves short rows' missing cells as None: treat them as absent, not as "None".
            yield reader.line_num, {key: value for key, value in row.items() if value is not None}, None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, None, f"not valid JSON ({exc.msg} at column {exc.colno})"
                continue
            if not isinstance(row, dict):
                yield number, None, f"expected a JSON object, got {type(row).__name__}"
                continue
            yield number, row, None


def _describe(error: ValidationError) -> list[str]:
    problems = []
    for detail in error.errors():
        where = ".".join(str(part) for part in detail["loc"]) or "row"
        problems.append(f"{where}: {detail['msg']}")
    return problems


def load_catalog(path: str | Path) -> Catalog:
    """Load and validate a catalog folder (or its metadata file); raise `CatalogError` listing bad rows."""
    metadata = find_metadata(Path(path))
    suffix = metadata.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(metadata)
    elif suffix in (".jsonl", ".ndjson"):
        rows = _jsonl_rows(metadata)
    else:
        raise CatalogError(f"{metadata.name}: unknown metadata format; use .csv or .jsonl.")

    items: list[CatalogItem] = []
    lines: list[int] = []
    bad: list[RowError] = []
    for line, row, problem in rows:
        if problem is not None:
            bad.append(RowError(line, None, [problem]))
            continue
        try:
            items.append(CatalogItem.model_validate(row))
            lines.append(line)
        except ValidationError as exc:
            raw_id = row.get("id")
            bad.append(RowError(line, str(raw_id) if raw_id not in (None, "") else None, _describe(exc)))
    if bad:
        shown = "\n  ".join(str(row) for row in bad[:MAX_REPORTED_ROWS])
        more = f"\n  ... and {len(bad) - MAX_REPORTED_ROWS} more" if len(bad) > MAX_REPORTED_ROWS else ""
        raise CatalogError(f"{metadata}: {len(bad)} bad row(s):\n  {shown}{more}", rows=bad)
    if not items:
        raise CatalogError(f"{metadata}: the catalog has no items.")
    try:
        check_unique_ids(items, lines)
    except CatalogError as exc:
        raise CatalogError(f"{metadata}: {exc.message}") from None
    return Catalog(root=metadata.parent, items=items, source=metadata)
