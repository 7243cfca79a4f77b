"""Build an index bundle from a catalog: embed every image through an embedder client, index with Annoy.

    fashion-clip-build-index data/catalog --out data/index                      # model in process
    fashion-clip-build-index data/catalog --out data/index --backend torchserve --url http://127.0.0.1:8080

Images that cannot be read (missing, corrupt, not an image, a failed download) are skipped and listed
in the manifest's `skipped` and in the report; duplicate ids refuse the build. The bundle is written
to a temporary folder beside the destination and renamed into place, so a reader never sees half an
index and a killed build leaves the destination as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from annoy import AnnoyIndex
from pydantic import ValidationError
from tqdm import tqdm

from fashion_clip.catalog import Catalog, CatalogError, CatalogItem, load_catalog
from fashion_clip.clients import EmbedderClient, EmbedderSettings, ModelInfo, make_client
from fashion_clip.errors import FashionClipError, InvalidImage, UnsupportedMediaType
from fashion_clip.images import decode_image
from fashion_clip.index.bundle import (
    FORMAT_VERSION,
    IMAGES_DIR,
    INDEX_FILE,
    ITEMS_FILE,
    MANIFEST_FILE,
    METRIC,
)
from fashion_clip.modeldir import read_manifest, sha256_file

logger = logging.getLogger("fashion_clip.index")

DEFAULT_TREES = 50
DEFAULT_BATCH_SIZE = 32
# A catalog photo over this is not a photo; refusing it keeps a bad URL from filling the disk.
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
SUFFIXES = {
    "JPEG": ".jpg",
    "MPO": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "GIF": ".gif",
    "BMP": ".bmp",
    "TIFF": ".tiff",
}
# Norms further than this from 1 mean the model side is not returning normalised vectors: a bug there.
NORM_TOLERANCE = 1e-2


class BuildError(FashionClipError):
    """The index cannot be built (nothing readable, a model that disagrees with itself, ...)."""


# --- the steps ---------------------------------------------------------------------------------------


def _model_record(info: ModelInfo, model_dir: Path | None) -> dict:
    """The manifest's `model`: what the client says, plus the weights' sha256 from the model manifest."""
    weights_sha256 = getattr(info, "weights_sha256", None)
    if weights_sha256 is None and model_dir is not None:
        try:
            manifest = read_manifest(Path(model_dir))
        except (FileNotFoundError, ValidationError, ValueError):
            manifest = None
        # A model directory is only evidence about the served weights when it is those weights.
        if manifest is not None and manifest.model_id == info.model_id:
            weights_sha256 = manifest.weights_sha256
    if weights_sha256 is None:
        logger.warning(
            "the weights' full sha256 is unknown (the model server reports only %s); the manifest records null",
            info.model_id,
        )
    return {
        "model_name": info.model_name,
        "model_id": info.model_id,
        "weights_sha256": weights_sha256,
        "untrained": info.untrained,
        "embed_dim": info.dim,
    }


async def _read_image(catalog: Catalog, item: CatalogItem, http) -> tuple[bytes | None, str | None]:
    """The image's bytes, or None and the reason they cannot be had."""
    if item.image_is_url:
        import httpx

        try:
            async with http.stream("GET", item.image) as response:
                if response.status_code != 200:
                    return None, f"download failed: HTTP {response.status_code}"
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_DOWNLOAD_BYTES:
                        return None, f"download failed: larger than {MAX_DOWNLOAD_BYTES} bytes"
                    chunks.append(chunk)
                return b"".join(chunks), None
        except httpx.HTTPError as exc:
            return None, f"download failed: {exc.__class__.__name__}: {exc}"
    path = catalog.image_file(item)
    try:
        return path.read_bytes(), None
    except FileNotFoundError:
        return None, "file not found"
    except OSError as exc:
        return None, f"file not readable: {exc.strerror or exc}"


async def _embed(
    client: EmbedderClient, loaded: list[tuple[CatalogItem, bytes, str]], skipped: list[dict]
) -> list[tuple[CatalogItem, bytes, str, np.ndarray]]:
    """Embed a batch; if the model side refuses one image, find it by embedding one at a time."""
    if not loaded:
        return []
    try:
        vectors = await client.embed_images([data for _, data, _ in loaded])
    except (InvalidImage, UnsupportedMediaType) as exc:
        if len(loaded) == 1:
            item = loaded[0][0]
            skipped.append({"id": item.id, "image": item.image, "reason": f"{exc.code}: {exc.message}"})
            return []
        embedded = []
        for entry in loaded:
            embedded.extend(await _embed(client, [entry], skipped))
        return embedded
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.shape[0] != len(loaded):
        raise BuildError(f"the embedder returned {vectors.shape[0]} vectors for {len(loaded)} images")
    return [
        (item, data, suffix, vector) for (item, data, suffix), vector in zip(loaded, vectors, strict=True)
    ]


def _check_vectors(vectors: np.ndarray, dim: int, ids: list[str]) -> np.ndarray:
    if vectors.ndim != 2 or vectors.shape[1] != dim:
        raise BuildError(f"the embedder returned vectors of shape {vectors.shape}, expected (n, {dim})")
    norms = np.linalg.norm(vectors, axis=1)
    bad = [ids[i] for i in np.flatnonzero(~np.isfinite(norms) | (np.abs(norms - 1.0) > NORM_TOLERANCE))]
    if bad:
        raise BuildError(f"the embedder returned non-unit or non-finite vectors for {', '.join(bad[:10])}")
    # Stored vectors are exactly unit so a stored vector is a valid query with cosine 1 to itself.
    return vectors / norms[:, None]


def _stale(name: str, dest: Path) -> tuple[str, int] | None:
    match = re.fullmatch(rf"\.{re.escape(dest.name)}\.(build|old)-(\d+)-.*", name)
    return (match.group(1), int(match.group(2))) if match else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(dest: Path) -> None:
    """Remove what killed builds left beside `dest`; put back a bundle a kill left renamed aside."""
    for entry in sorted(dest.parent.iterdir()):
        found = _stale(entry.name, dest)
        if found is None or _pid_alive(found[1]):
            continue
        kind, pid = found
        if kind == "old" and not dest.exists():
            # Killed between moving the old bundle aside and the new one in: restore the old one.
            entry.rename(dest)
            logger.warning("restored %s, left aside by an interrupted build (pid %d)", dest, pid)
        else:
            shutil.rmtree(entry, ignore_errors=True)
            logger.info("removed %s, left by an interrupted build (pid %d)", entry.name, pid)


def _replace(staging: Path, dest: Path) -> None:
    """Move a finished bundle into place; an existing one is renamed aside first, then removed."""
    if dest.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-{os.getpid()}-", dir=dest.parent))
        aside.rmdir()  # mkdtemp reserved a unique name; rename needs it free
        dest.rename(aside)
        staging.rename(dest)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        staging.rename(dest)


def _write_bundle_files(
    staging: Path, annoy: AnnoyIndex, records: list[dict], trees: int, n_jobs: int
) -> None:
    annoy.build(trees, n_jobs=n_jobs)
    annoy.save(str(staging / INDEX_FILE))
    annoy.unload()
    with open(staging / ITEMS_FILE, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _file_digests(staging: Path) -> dict[str, str]:
    return {
        path.relative_to(staging).as_posix(): sha256_file(path)
        for path in sorted(staging.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE
    }


# --- the library function ---------------------------------------------------------------------------


async def abuild_annoy_index(
    catalog: Catalog | str | Path,
    dest: str | Path,
    client: EmbedderClient,
    *,
    trees: int = DEFAULT_TREES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    model_dir: str | Path | None = None,
    seed: int = 0,
    n_jobs: int = -1,
    progress: bool = True,
    download_timeout: float = 10.0,
) -> dict:
    """Build the bundle at `dest` and return its manifest (see docs/contracts.md)."""
    if trees < 1:
        raise ValueError("trees must be at least 1")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if not isinstance(catalog, Catalog):
        catalog = load_catalog(catalog)
    dest = Path(dest).absolute()
    if model_dir is None and client.backend == "local":
        model_dir = getattr(getattr(client, "settings", None), "model_dir", None)
    started = time.monotonic()

    info = await client.info()
    model = _model_record(info, Path(model_dir) if model_dir is not None else None)
    logger.info(
        "embedding %d catalog images with %s (%s backend)", len(catalog), info.model_id, client.backend
    )

    dest.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale(dest)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.build-{os.getpid()}-", dir=dest.parent))
    http = None
    try:
        (staging / IMAGES_DIR).mkdir()
        if any(item.image_is_url for item in catalog):
            import httpx

            http = httpx.AsyncClient(timeout=download_timeout, follow_redirects=True)
        annoy = AnnoyIndex(info.dim, METRIC)
        annoy.set_seed(seed)
        records: list[dict] = []
        skipped: list[dict] = []
        with tqdm(total=len(catalog), unit="img", desc="embedding", disable=not progress) as bar:
            for start in range(0, len(catalog), batch_size):
                batch = catalog.items[start : start + batch_size]
                loaded = []
                for item in batch:
                    data, reason = await _read_image(catalog, item, http)
                    if data is not None:
                        try:
                            # Before any model time: format, pixel limit and a decode of every byte
                            # (min_size=1: a JPEG at 1/8 scale, which still reads the whole stream
                            # and refuses a truncated one, in a tenth of a full decode's time).
                            suffix = SUFFIXES[decode_image(data, min_size=1).format]
                        except (InvalidImage, UnsupportedMediaType) as exc:
                            reason = f"{exc.code}: {exc.message}"
                    if reason is not None:
                        skipped.append({"id": item.id, "image": item.image, "reason": reason})
                        continue
                    loaded.append((item, data, suffix))
                embedded = await _embed(client, loaded, skipped)
                if embedded:
                    vectors = _check_vectors(
                        np.stack([vector for *_, vector in embedded]), info.dim, [e[0].id for e in embedded]
                    )
                    for (item, data, suffix, _), vector in zip(embedded, vectors, strict=True):
                        record = item.record()
                        if not item.image_is_url:
                            record["image"] = f"{IMAGES_DIR}/{item.id}{suffix}"
                            (staging / record["image"]).write_bytes(data)
                        annoy.add_item(len(records), vector)
                        records.append(record)
                bar.update(len(batch))
        if not records:
            raise BuildError(f"none of the {len(catalog)} catalog images could be read; nothing to index")
        for entry in skipped:
            logger.warning("skipped %s (%s): %s", entry["id"], entry["image"], entry["reason"])
        logger.info("building %d Annoy trees over %d vectors", trees, len(records))
        _write_bundle_files(staging, annoy, records, trees, n_jobs)
        manifest = {
            "format_version": FORMAT_VERSION,
            "model": model,
            "dim": info.dim,
            "metric": METRIC,
            "trees": trees,
            "item_count": len(records),
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_seconds": round(time.monotonic() - started, 3),
            "files": _file_digests(staging),
            "skipped": skipped,
        }
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        staging.chmod(0o755)  # mkdtemp's folder is private; the API may run as another user
        _replace(staging, dest)
    finally:
        if http is not None:
            await http.aclose()
        shutil.rmtree(staging, ignore_errors=True)
    logger.info(
        "indexed %d items (%d skipped) in %.1fs -> %s",
        manifest["item_count"],
        len(skipped),
        manifest["build_seconds"],
        dest,
    )
    return manifest


def build_annoy_index(
    catalog: Catalog | str | Path, dest: str | Path, client: EmbedderClient, **options
) -> dict:
    """`abuild_annoy_index` for callers without an event loop (the CLI, notebooks, tests)."""
    return asyncio.run(abuild_annoy_index(catalog, dest, client, **options))


# --- the CLI -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = EmbedderSettings()
    parser = argparse.ArgumentParser(
        prog="fashion-clip-build-index",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "catalog", type=Path, help="catalog folder (catalog.csv or catalog.jsonl) or metadata file"
    )
    parser.add_argument(
        "--out", "-o", type=Path, default=Path("data/index"), help="bundle folder (default: %(default)s)"
    )
    parser.add_argument("--trees", type=int, default=DEFAULT_TREES, help="Annoy trees (default: %(default)s)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help="images per embed call (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="Annoy's random seed (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=-1, help="threads for the Annoy build; -1 = all cores")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    embedder = parser.add_argument_group("embedder (as RECOMMENDER_EMBEDDER__* for the API)")
    embedder.add_argument("--backend", choices=("local", "torchserve", "kserve"), default=defaults.backend)
    embedder.add_argument(
        "--url", default=str(defaults.url), help="model server base URL (torchserve, kserve)"
    )
    embedder.add_argument("--model-name", default=defaults.model_name, help="model name on the model server")
    embedder.add_argument(
        "--model-dir", type=Path, default=defaults.model_dir, help="model directory (local)"
    )
    embedder.add_argument("--precision", choices=("auto", "fp32", "bf16", "int8"), default=defaults.precision)
    embedder.add_argument(
        "--threads", type=int, default=0, help="torch threads for local; 0 = torch's default"
    )
    embedder.add_argument(
        "--timeout", type=float, default=60.0, help="seconds per model server call (default: %(default)s)"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Our progress at INFO; libraries (open_clip's loader chatter) only when they warn.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("fashion_clip").setLevel(logging.INFO)
    try:
        settings = EmbedderSettings(
            backend=args.backend,
            url=args.url,
            model_name=args.model_name,
            model_dir=args.model_dir,
            precision=args.precision,
            threads=args.threads,
            timeout_seconds=args.timeout,
        )
    except ValidationError as exc:
        logger.error("error: invalid embedder option: %s", exc.errors()[0]["msg"])
        return 2

    async def run() -> dict:
        client = make_client(settings)
        try:
            return await abuild_annoy_index(
                args.catalog,
                args.out,
                client,
                trees=args.trees,
                batch_size=args.batch_size,
                model_dir=args.model_dir,
                seed=args.seed,
                n_jobs=args.jobs,
                progress=not args.no_progress,
            )
        finally:
            await client.aclose()

    try:
        manifest = asyncio.run(run())
    except (CatalogError, FashionClipError, FileNotFoundError, ValueError) as exc:
        logger.error("error: %s", getattr(exc, "message", None) or exc)
        return 2
    if manifest["model"]["untrained"]:
        logger.warning("WARNING: the model's weights are UNTRAINED; similarity results are not meaningful.")
    if manifest["skipped"]:
        logger.warning(
            "%d image(s) skipped, listed in %s", len(manifest["skipped"]), args.out / MANIFEST_FILE
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
