"""Catalogs: a folder of images plus a CSV/JSONL metadata file, validated into `CatalogItem`s.

- `schemas`: `CatalogItem`, the fields every component relies on (extras kept).
- `loader`: `load_catalog(path)` -> `Catalog`, refusing bad rows and duplicate ids with clear errors.
- `sample`: a deterministic, download-free sample catalog drawn with PIL.
"""

from fashion_clip.catalog.loader import Catalog, CatalogError, RowError, load_catalog
from fashion_clip.catalog.schemas import CatalogItem

__all__ = ["Catalog", "CatalogError", "CatalogItem", "RowError", "load_catalog"]
