"""The Annoy index bundle: building it from a catalog and serving queries from it.

- `bundle`: `IndexBundle.load(path)` verifies and opens a bundle; `search` answers (item, cosine) pairs.
- `build`: `build_annoy_index(catalog, dest, client)` and the `fashion-clip-build-index` CLI.
"""

from __future__ import annotations

import importlib
from typing import Any

from fashion_clip.index.bundle import BundleError, IndexBundle, cosine_from_angular

_FROM_BUILD = ("BuildError", "abuild_annoy_index", "build_annoy_index")


def __getattr__(name: str) -> Any:
    # The builder is imported on first use: the API only reads bundles, and `python -m
    # fashion_clip.index.build` must not find its module already imported by this package.
    if name in _FROM_BUILD:
        return getattr(importlib.import_module("fashion_clip.index.build"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BuildError",
    "BundleError",
    "IndexBundle",
    "abuild_annoy_index",
    "build_annoy_index",
    "cosine_from_angular",
]
