"""A sample catalog drawn with PIL: no download, deterministic, fast.

Nine garment silhouettes x ten colours x four patterns (solid, stripes, dots, checks) give 360
recognisable items by default; a seed decides the small variations (placement, scale, background
tint) and the prices, and the same seed always gives byte-identical files. It is what `make demo`
and the tests use offline.

    fashion-clip-sample-catalog data/catalog --count 360 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import logging
import random
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

logger = logging.getLogger("fashion_clip.catalog")

SIZE = 256
JPEG_QUALITY = 90
METADATA_FILE = "catalog.csv"
IMAGES_DIR = "images"
COLUMNS = ("id", "title", "category", "color", "price", "image", "pattern")

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 40),
    "navy": (25, 40, 95),
    "black": (25, 25, 28),
    "white": (240, 240, 235),
    "green": (40, 130, 60),
    "yellow": (235, 200, 40),
    "pink": (235, 130, 170),
    "beige": (215, 195, 160),
    "grey": (130, 130, 135),
    "blue": (60, 120, 210),
}
# Pattern -> the adjective in a title ("" for solid: "Red dress", not "Red solid dress").
PATTERNS: dict[str, str] = {"solid": "", "stripes": "striped", "dots": "polka-dot", "checks": "checked"}
# Category -> price range in the catalog's currency.
PRICES: dict[str, tuple[float, float]] = {
    "t-shirt": (9, 35),
    "dress": (25, 140),
    "trousers": (25, 110),
    "skirt": (20, 90),
    "jacket": (45, 260),
    "shoes": (30, 180),
    "bag": (20, 220),
    "hat": (10, 60),
    "scarf": (8, 70),
}
CATEGORIES: tuple[str, ...] = tuple(PRICES)

Draw = Callable[[ImageDraw.ImageDraw], None]


# Silhouettes on a 256x256 canvas, drawn in white on a black mask. The pattern shows through the mask.
def _t_shirt(d: ImageDraw.ImageDraw) -> None:
    d.polygon(
        [(84, 42), (108, 36), (128, 52), (148, 36), (172, 42), (226, 88), (198, 122), (176, 104),
         (176, 222), (80, 222), (80, 104), (58, 122), (30, 88)],
        fill=255,
    )  # fmt: skip


def _dress(d: ImageDraw.ImageDraw) -> None:
    d.polygon(
        [(104, 30), (116, 30), (128, 46), (140, 30), (152, 30), (156, 70), (146, 106), (206, 228),
         (50, 228), (110, 106), (100, 70)],
        fill=255,
    )  # fmt: skip


def _trousers(d: ImageDraw.ImageDraw) -> None:
    d.polygon(
        [(78, 28), (178, 28), (190, 230), (144, 230), (128, 96), (112, 230), (66, 230)],
        fill=255,
    )  # fmt: skip


def _skirt(d: ImageDraw.ImageDraw) -> None:
    d.rectangle([(90, 50), (166, 66)], fill=255)
    d.polygon([(90, 64), (166, 64), (214, 206), (42, 206)], fill=255)


def _jacket(d: ImageDraw.ImageDraw) -> None:
    d.polygon(
        [(82, 30), (110, 26), (128, 78), (146, 26), (174, 30), (216, 64), (236, 204), (208, 210),
         (184, 104), (184, 226), (72, 226), (72, 104), (48, 210), (20, 204), (40, 64)],
        fill=255,
    )  # fmt: skip


def _shoes(d: ImageDraw.ImageDraw) -> None:
    d.polygon(
        [(34, 120), (58, 96), (98, 100), (116, 132), (196, 148), (226, 170), (226, 196), (34, 196)],
        fill=255,
    )  # fmt: skip
    d.rectangle([(34, 196), (226, 208)], fill=255)  # the sole


def _bag(d: ImageDraw.ImageDraw) -> None:
    d.arc([(84, 40), (172, 140)], start=180, end=360, fill=255, width=12)
    d.rounded_rectangle([(52, 96), (204, 222)], radius=14, fill=255)


def _hat(d: ImageDraw.ImageDraw) -> None:
    d.ellipse([(24, 148), (232, 196)], fill=255)
    d.rounded_rectangle([(76, 70), (180, 172)], radius=30, fill=255)


def _scarf(d: ImageDraw.ImageDraw) -> None:
    d.ellipse([(62, 24), (194, 100)], outline=255, width=24)  # the loop around the neck
    d.polygon([(104, 84), (140, 84), (134, 216), (98, 216)], fill=255)  # long tail
    d.polygon([(130, 84), (164, 78), (186, 186), (152, 194)], fill=255)  # short tail, swung out
    for x in range(100, 134, 6):  # fringes
        d.line([(x, 216), (x, 234)], fill=255, width=3)
    for x in range(154, 186, 6):
        d.line([(x, 190), (x + 3, 208)], fill=255, width=3)


SILHOUETTES: dict[str, Draw] = {
    "t-shirt": _t_shirt,
    "dress": _dress,
    "trousers": _trousers,
    "skirt": _skirt,
    "jacket": _jacket,
    "shoes": _shoes,
    "bag": _bag,
    "hat": _hat,
    "scarf": _scarf,
}


def _contrast(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """The pattern's second colour: light on dark cloth, dark on light cloth."""
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (245, 245, 240) if luminance < 140 else (35, 35, 45)


def _fabric(rgb: tuple[int, int, int], pattern: str, rng: random.Random) -> Image.Image:
    fabric = Image.new("RGB", (SIZE, SIZE), rgb)
    if pattern == "solid":
        return fabric
    d = ImageDraw.Draw(fabric)
    ink = _contrast(rgb)
    step = rng.randint(16, 24)
    if pattern == "stripes":
        for y in range(rng.randint(0, step), SIZE, step):
            d.rectangle([(0, y), (SIZE, y + step // 3)], fill=ink)
    elif pattern == "dots":
        radius = step // 5
        for row, y in enumerate(range(step // 2, SIZE, step)):
            offset = step // 2 if row % 2 else 0
            for x in range(offset, SIZE + step, step):
                d.ellipse([(x - radius, y - radius), (x + radius, y + radius)], fill=ink)
    elif pattern == "checks":
        width = max(step // 4, 3)
        for v in range(0, SIZE, step):
            d.rectangle([(v, 0), (v + width, SIZE)], fill=ink)
            d.rectangle([(0, v), (SIZE, v + width)], fill=ink)
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return fabric


def draw_item(category: str, color: str, pattern: str, rng: random.Random) -> Image.Image:
    """One product photo: the garment's silhouette cut from patterned cloth on a pale background."""
    rgb = COLORS[color]
    mask = Image.new("L", (SIZE, SIZE), 0)
    SILHOUETTES[category](ImageDraw.Draw(mask))
    # Small placement and scale changes so two seeds give different photos of the same items.
    scale = rng.uniform(0.82, 1.0)
    side = round(SIZE * scale)
    mask = mask.resize((side, side), Image.Resampling.BILINEAR)
    placed = Image.new("L", (SIZE, SIZE), 0)
    slack = SIZE - side
    placed.paste(mask, (rng.randint(0, slack), rng.randint(0, slack)))

    tint = rng.randint(232, 252)
    photo = Image.new("RGB", (SIZE, SIZE), (tint, tint, min(tint + 3, 255)))
    photo.paste(_fabric(rgb, pattern, rng), (0, 0), placed)
    # A darker outline keeps white and beige garments visible on the pale background.
    edge = placed.filter(ImageFilter.FIND_EDGES).filter(ImageFilter.MaxFilter(3))
    outline = tuple(max(channel - 70, 0) for channel in rgb)
    photo.paste(Image.new("RGB", (SIZE, SIZE), outline), (0, 0), edge)
    return photo


def _price(category: str, rng: random.Random) -> float:
    low, high = PRICES[category]
    return round(max(round(rng.uniform(low, high)), 1) - 0.01, 2)


def sample_rows(count: int, seed: int) -> list[tuple[dict, Image.Image]]:
    """`count` (metadata, image) pairs: the category x colour x pattern grid, then repeats as variants."""
    if count < 1:
        raise ValueError("count must be at least 1")
    rng = random.Random(seed)
    grid = list(itertools.product(CATEGORIES, COLORS, PATTERNS))
    rows = []
    for n in range(count):
        category, color, pattern = grid[n % len(grid)]
        variant = n // len(grid)
        item_id = f"{category}-{color}-{pattern}" + (f"-{variant + 1}" if variant else "")
        adjective = PATTERNS[pattern]
        title = " ".join(word for word in (color.capitalize(), adjective, category) if word)
        image = draw_item(category, color, pattern, rng)
        row = {
            "id": item_id,
            "title": title,
            "category": category,
            "color": color,
            "price": _price(category, rng),
            "image": f"{IMAGES_DIR}/{item_id}.jpg",
            "pattern": pattern,
        }
        rows.append((row, image))
    return rows


def _jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    # No EXIF, no timestamps, fixed quality and subsampling: the bytes depend only on the pixels.
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=False)
    return buffer.getvalue()


def generate_sample_catalog(
    out_dir: str | Path, count: int = 360, seed: int = 0, overwrite: bool = False
) -> Path:
    """Write `count` items to `out_dir` (catalog.csv + images/); return the metadata file's path.

    The catalog is written to a temporary folder beside `out_dir` and renamed into place, so an
    interrupted run never leaves a half-written catalog behind.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out_dir} exists and is not empty; pass --force (overwrite=True) to replace it"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        (staging / IMAGES_DIR).mkdir()
        rows = sample_rows(count, seed)
        for row, image in rows:
            (staging / row["image"]).write_bytes(_jpeg_bytes(image))
        with open(staging / METADATA_FILE, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(row for row, _ in rows)
        staging.chmod(0o755)  # mkdtemp's folder is private; the catalog is read by other users
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("wrote %d items (%d categories) to %s", count, len({r["category"] for r, _ in rows}), out_dir)
    return out_dir / METADATA_FILE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fashion-clip-sample-catalog",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out_dir", type=Path, help="folder to write (catalog.csv + images/)")
    parser.add_argument("--count", type=int, default=360, help="number of items (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="replace out_dir if it exists")
    args = parser.parse_args(argv)
    # Our progress at INFO; libraries (open_clip's loader chatter) only when they warn.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("fashion_clip").setLevel(logging.INFO)
    if args.count < 1:
        parser.error("--count must be at least 1")
    try:
        generate_sample_catalog(args.out_dir, count=args.count, seed=args.seed, overwrite=args.force)
    except FileExistsError as exc:
        logger.error("error: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
