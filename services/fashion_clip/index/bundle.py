"""The index bundle: an Annoy index, its items and their images, verified as a whole on load.

    manifest.json  format version, the model that made the vectors, dim, trees, sha256 of every file
    index.ann      Annoy angular index; item i is line i of items.jsonl
    items.jsonl    one catalog item per line, `image` rewritten to "images/<file>" or kept as a URL
    images/        copies of the catalog's local images

Scores are cosine similarities: Annoy's angular distance d between unit vectors u, v is
|u - v| = sqrt(2 - 2 cos), so cos = 1 - d^2 / 2.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Collection
from pathlib import Path, PurePosixPath

import numpy as np
from annoy import AnnoyIndex

from fashion_clip.errors import FashionClipError
from fashion_clip.modeldir import sha256_file

logger = logging.getLogger("fashion_clip.index")

FORMAT_VERSION = 1
METRIC = "angular"
MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.ann"
ITEMS_FILE = "items.jsonl"
IMAGES_DIR = "images"
MODEL_KEYS = ("model_name", "model_id", "weights_sha256", "untrained", "embed_dim")

# Each round of a filtered search asks Annoy for this many times more candidates than the last.
GROWTH = 4
# search_k = factor x n x trees. Annoy's own default (factor 1) finds ~82% of the true top 10 at
# 100k x 512 with 50 trees; factor 10 finds 99.5% in ~1.2 ms (docs/index.md), still nothing next to
# one CLIP forward.
SEARCH_K_FACTOR = 10
LOAD_ATTEMPTS = 3


class BundleError(FashionClipError):
    """An index bundle is missing, incomplete, tampered with or inconsistent."""


def cosine_from_angular(distance: float | np.ndarray) -> float | np.ndarray:
    """Annoy's angular distance (Euclidean distance of the normalised vectors) -> cosine similarity."""
    return 1.0 - np.square(distance) / 2.0


class IndexBundle:
    """A loaded index bundle: item metadata in memory, vectors in Annoy's memory-mapped file.

    Queries are safe from several threads at once (Annoy only reads); `close` must not race them.
    """

    def __init__(
        self,
        path: Path,
        manifest: dict,
        items: list[dict],
        annoy: AnnoyIndex,
        search_k_factor: int = SEARCH_K_FACTOR,
    ) -> None:
        if search_k_factor < 1:
            raise ValueError("search_k_factor must be at least 1")
        self.path = Path(path)
        self.search_k_factor = search_k_factor
        self.manifest = manifest
        self.model: dict = manifest["model"]
        self.dim: int = int(manifest["dim"])
        self.trees: int = int(manifest["trees"])
        self._items = items
        self._annoy: AnnoyIndex | None = annoy
        self._index_of = {item["id"]: position for position, item in enumerate(items)}
        by_category: dict[str, list[int]] = defaultdict(list)
        for position, item in enumerate(items):
            by_category[item["category"]].append(position)
        self._by_category = dict(by_category)

    # --- loading -----------------------------------------------------------------------------------

    @classmethod
    def load(
        cls, path: str | Path, verify: bool = True, search_k_factor: int = SEARCH_K_FACTOR
    ) -> IndexBundle:
        """Open a bundle, checking every file's sha256 against the manifest (unless `verify=False`).

        `search_k_factor` trades query time for recall: Annoy inspects factor x n x trees nodes.
        """
        if search_k_factor < 1:
            raise ValueError("search_k_factor must be at least 1")
        path = Path(path)
        # A build may swap the folder while we read it. Its manifest then changes under us: start
        # again rather than report the mix of old and new files as tampering.
        for attempt in range(LOAD_ATTEMPTS):
            try:
                before = _read_manifest_bytes(path)
            except BundleError:
                if attempt + 1 < LOAD_ATTEMPTS:
                    time.sleep(0.05)  # maybe mid-swap: the old bundle is aside, the new one not yet in
                    continue
                raise
            try:
                bundle = cls._load(path, before, verify, search_k_factor)
            except (BundleError, OSError):
                if attempt + 1 < LOAD_ATTEMPTS and _manifest_changed(path, before):
                    continue
                raise
            if not _manifest_changed(path, before):
                break
            bundle.close()
        else:
            raise BundleError(f"The index bundle {path} kept changing while it was loaded.")
        logger.info(
            "loaded index %s: %d items, dim %d, %d trees, model %s%s",
            path,
            len(bundle),
            bundle.dim,
            bundle.trees,
            bundle.model["model_id"],
            " (UNTRAINED weights)" if bundle.model["untrained"] else "",
        )
        return bundle

    @classmethod
    def _load(cls, path: Path, manifest_bytes: bytes, verify: bool, search_k_factor: int) -> IndexBundle:
        manifest_path = path / MANIFEST_FILE
        try:
            manifest = json.loads(manifest_bytes)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from exc
        _check_manifest(manifest, manifest_path)
        if verify:
            _verify_files(path, manifest["files"])
        items = _read_items(path / ITEMS_FILE)
        if len(items) != manifest["item_count"]:
            raise BundleError(
                f"{path / ITEMS_FILE} has {len(items)} items but the manifest says {manifest['item_count']}."
            )
        annoy = AnnoyIndex(int(manifest["dim"]), METRIC)
        try:
            annoy.load(str(path / INDEX_FILE))
        except OSError as exc:
            raise BundleError(f"Could not load {path / INDEX_FILE}: {exc}") from exc
        if annoy.get_n_items() != len(items):
            annoy.unload()
            raise BundleError(
                f"{path / INDEX_FILE} holds {annoy.get_n_items()} vectors but {ITEMS_FILE} has {len(items)} items."
            )
        return cls(path, manifest, items, annoy, search_k_factor=search_k_factor)

    def close(self) -> None:
        """Unload the Annoy index (unmaps the file); the bundle answers no more queries."""
        if self._annoy is not None:
            self._annoy.unload()
            self._annoy = None

    def __enter__(self) -> IndexBundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- items -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index_of

    @property
    def model_id(self) -> str:
        return self.model["model_id"]

    def ids(self) -> list[str]:
        return [item["id"] for item in self._items]

    def categories(self) -> list[str]:
        return sorted(self._by_category)

    def item(self, item_id: str) -> dict:
        """A copy of the item's record; KeyError for an unknown id."""
        return dict(self._items[self._index_of[item_id]])

    def image_path(self, item_id: str) -> Path | None:
        """The image's file inside the bundle, or None when the catalog gave a URL."""
        image = self._items[self._index_of[item_id]]["image"]
        relative = PurePosixPath(image)
        if relative.parts[:1] != (IMAGES_DIR,) or ".." in relative.parts:
            return None
        return self.path.joinpath(*relative.parts)

    def vector(self, item_id: str) -> np.ndarray:
        """The item's stored unit vector, read back from Annoy (no re-embedding)."""
        position = self._index_of[item_id]
        return np.asarray(self._index().get_item_vector(position), dtype=np.float32)

    # --- search ------------------------------------------------------------------------------------

    def search(
        self,
        vector: np.ndarray,
        k: int,
        category: str | None = None,
        exclude: Collection[str] = (),
    ) -> list[tuple[dict, float]]:
        """The k items nearest to `vector` as (item, cosine), best first.

        Annoy inspects `search_k_factor` x n x trees nodes for n candidates. With a category or
        exclusions, n (and with it `search_k`) grows until k eligible items are found; if the approximate candidates run out
        first, the eligible items are scored exactly, so k are returned whenever k exist.
        """
        annoy = self._index()
        query = self._query(vector)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        excluded = {self._index_of[i] for i in exclude if i in self._index_of}
        if category is None:
            eligible_count = len(self._items) - len(excluded)
        else:
            members = self._by_category.get(category, [])
            eligible_count = len(members) - sum(1 for position in members if position in excluded)
        wanted = min(k, eligible_count)
        if wanted <= 0:
            return []

        def eligible(position: int) -> bool:
            return position not in excluded and (
                category is None or self._items[position]["category"] == category
            )

        total = len(self._items)
        # First guess: enough candidates for k hits if the category's share holds near the query.
        share = eligible_count / total
        n = min(total, max(k + len(excluded), math.ceil(k / share)))
        while True:
            search_k = self.search_k_factor * n * annoy.get_n_trees()
            positions, distances = annoy.get_nns_by_vector(
                query, n, search_k=search_k, include_distances=True
            )
            hits = [(p, d) for p, d in zip(positions, distances, strict=True) if eligible(p)]
            if len(hits) >= wanted:
                return [(self.item_at(p), float(cosine_from_angular(d))) for p, d in hits[:k]]
            if n >= total:
                break
            n = min(total, n * GROWTH)
        # Annoy's trees did not surface every eligible item (few trees, tiny category): score exactly.
        logger.debug("search fell back to exact scoring of %d eligible items", eligible_count)
        candidates = (
            [p for p in range(total) if p not in excluded]
            if category is None
            else [p for p in self._by_category[category] if p not in excluded]
        )
        unit = query / np.linalg.norm(query)
        matrix = np.asarray([annoy.get_item_vector(p) for p in candidates], dtype=np.float32)
        scores = matrix @ unit / np.maximum(np.linalg.norm(matrix, axis=1), 1e-12)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.item_at(candidates[i]), float(scores[i])) for i in order]

    def item_at(self, position: int) -> dict:
        return dict(self._items[position])

    def _index(self) -> AnnoyIndex:
        if self._annoy is None:
            raise BundleError(f"The index bundle {self.path} is closed.")
        return self._annoy

    def _query(self, vector: np.ndarray) -> list[float]:
        array = np.asarray(vector, dtype=np.float32)
        if array.ndim == 2 and array.shape[0] == 1:
            array = array[0]
        if array.shape != (self.dim,):
            raise ValueError(f"query vector must have shape ({self.dim},), got {array.shape}")
        if not np.all(np.isfinite(array)) or not np.any(array):
            raise ValueError("query vector must be finite and non-zero")
        return array.tolist()


def _read_manifest_bytes(path: Path) -> bytes:
    try:
        return (path / MANIFEST_FILE).read_bytes()
    except FileNotFoundError:
        raise BundleError(
            f"No index bundle at {path}: {MANIFEST_FILE} is missing (build one with `make index`)."
        ) from None


def _manifest_changed(path: Path, before: bytes) -> bool:
    try:
        return (path / MANIFEST_FILE).read_bytes() != before
    except OSError:
        return True


def _check_manifest(manifest: object, where: Path) -> None:
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: expected a JSON object.")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{where}: format_version {manifest.get('format_version')!r} is not {FORMAT_VERSION}; rebuild the index."
        )
    missing = [
        key for key in ("model", "dim", "metric", "trees", "item_count", "files") if key not in manifest
    ]
    if missing:
        raise BundleError(f"{where}: missing {', '.join(missing)}.")
    if manifest["metric"] != METRIC:
        raise BundleError(f"{where}: metric {manifest['metric']!r} is not {METRIC!r}.")
    model = manifest["model"]
    if not isinstance(model, dict) or any(key not in model for key in MODEL_KEYS):
        raise BundleError(f"{where}: 'model' must hold {', '.join(MODEL_KEYS)}.")
    if model["embed_dim"] != manifest["dim"]:
        raise BundleError(f"{where}: model embed_dim {model['embed_dim']} != index dim {manifest['dim']}.")
    files = manifest["files"]
    if not isinstance(files, dict) or INDEX_FILE not in files or ITEMS_FILE not in files:
        raise BundleError(f"{where}: 'files' must list at least {INDEX_FILE} and {ITEMS_FILE}.")


def _verify_files(root: Path, files: dict[str, str]) -> None:
    resolved_root = root.resolve()
    for name, expected in files.items():
        path = root / name
        if resolved_root not in path.resolve().parents:
            raise BundleError(f"{root / MANIFEST_FILE}: file entry {name!r} points outside the bundle.")
        if not path.is_file():
            raise BundleError(f"Index bundle {root} is incomplete: {name} is missing.")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"Index bundle {root}: {name} has sha256 {actual[:12]}..., the manifest says "
                f"{str(expected)[:12]}...; the file was changed after the build. Rebuild the index."
            )


def _read_items(path: Path) -> list[dict]:
    items = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BundleError(f"{path} line {number} is not valid JSON: {exc.msg}") from exc
            if not isinstance(item, dict) or "id" not in item or "category" not in item:
                raise BundleError(f"{path} line {number}: an item needs at least 'id' and 'category'.")
            items.append(item)
    counts = Counter(item["id"] for item in items)
    duplicates = sorted(item_id for item_id, count in counts.items() if count > 1)
    if duplicates:
        raise BundleError(f"{path} repeats the id(s) {', '.join(map(repr, duplicates))}.")
    return items
