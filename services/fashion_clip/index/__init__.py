"""The Annoy index bundle: building it from a catalog and serving queries from it.

- `bundle`: `IndexBundle.load(path)` verifies and opens a bundle; `search` answers (item, cosine) pairs.
- `build`: `build_annoy_index(catalog, dest, client)` and the `fashion-clip-build-index` CLI.
"""

from fashion_clip.index.build import BuildError, abuild_annoy_index, build_annoy_index
from fashion_clip.index.bundle import BundleError, IndexBundle, cosine_from_angular

__all__ = [
    "BuildError",
    "BundleError",
    "IndexBundle",
    "abuild_annoy_index",
    "build_annoy_index",
    "cosine_from_angular",
]
