"""The sample catalog generator: deterministic bytes, the promised grid, valid 256x256 JPEGs."""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from fashion_clip.catalog import load_catalog
from fashion_clip.catalog.sample import CATEGORIES, COLORS, PATTERNS, generate_sample_catalog, main


def digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "catalog"
    assert generate_sample_catalog(out, seed=7) == out / "catalog.csv"
    return out


@pytest.fixture(scope="module")
def rows(catalog: Path) -> list[dict]:
    with open(catalog / "catalog.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_same_seed_gives_byte_identical_files(catalog: Path, tmp_path: Path):
    again = tmp_path / "again"
    generate_sample_catalog(again, seed=7)
    assert digests(again) == digests(catalog)
    assert len(digests(catalog)) == 361


def test_another_seed_draws_other_photos_of_the_same_items(tmp_path: Path):
    first, second = tmp_path / "a", tmp_path / "b"
    generate_sample_catalog(first, count=12, seed=1)
    generate_sample_catalog(second, count=12, seed=2)
    a, b = digests(first), digests(second)
    assert sorted(a) == sorted(b)
    assert all(a[name] != b[name] for name in a if name.startswith("images/"))


def test_the_default_catalog_is_the_full_grid(rows: list[dict]):
    assert len(rows) == 360 == len(CATEGORIES) * len(COLORS) * len(PATTERNS)
    assert len(CATEGORIES) >= 8
    assert Counter(row["category"] for row in rows) == {category: 40 for category in CATEGORIES}
    assert Counter(row["pattern"] for row in rows) == {pattern: 90 for pattern in PATTERNS}
    assert Counter(row["color"] for row in rows) == {color: 36 for color in COLORS}
    assert len({row["id"] for row in rows}) == 360
    assert set(CATEGORIES) == {
        "t-shirt",
        "dress",
        "trousers",
        "skirt",
        "jacket",
        "shoes",
        "bag",
        "hat",
        "scarf",
    }


def test_rows_have_readable_titles_and_prices(rows: list[dict]):
    by_id = {row["id"]: row for row in rows}
    assert by_id["dress-red-stripes"] | {"price": None} == {
        "id": "dress-red-stripes",
        "title": "Red striped dress",
        "category": "dress",
        "color": "red",
        "price": None,
        "image": "images/dress-red-stripes.jpg",
        "pattern": "stripes",
    }
    assert by_id["t-shirt-navy-solid"]["title"] == "Navy t-shirt"
    assert by_id["hat-white-dots"]["title"] == "White polka-dot hat"
    assert by_id["bag-beige-checks"]["title"] == "Beige checked bag"
    for row in rows:
        price = float(row["price"])
        assert 0 < price < 300
        assert row["price"].endswith(".99")


def test_images_are_256px_rgb_jpegs_with_the_garment_on_a_pale_background(catalog: Path, rows: list[dict]):
    for row in rows:
        with Image.open(catalog / row["image"]) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (256, 256))
    with Image.open(catalog / "images" / "t-shirt-black-solid.jpg") as image:
        corner, centre = image.getpixel((2, 2)), image.getpixel((128, 140))
    assert min(corner) > 200  # background
    assert max(centre) < 60  # a black garment in the middle


def test_more_items_than_the_grid_become_numbered_variants(tmp_path: Path):
    generate_sample_catalog(tmp_path / "big", count=365, seed=0)
    loaded = load_catalog(tmp_path / "big")
    assert len(loaded) == 365
    assert [item.id for item in loaded.items[360:]] == [
        "t-shirt-red-solid-2", "t-shirt-red-stripes-2", "t-shirt-red-dots-2", "t-shirt-red-checks-2",
        "t-shirt-navy-solid-2",
    ]  # fmt: skip


def test_the_loader_reads_back_what_the_generator_wrote(catalog: Path, rows: list[dict]):
    loaded = load_catalog(catalog)
    assert loaded.root == catalog and loaded.source == catalog / "catalog.csv"
    assert [item.record() for item in loaded] == [row | {"price": float(row["price"])} for row in rows]
    assert loaded.categories() == sorted(CATEGORIES)
    assert loaded.image_file(loaded["hat-red-dots"]) == catalog / "images" / "hat-red-dots.jpg"


def test_an_existing_catalog_is_replaced_only_when_asked(tmp_path: Path):
    out = tmp_path / "catalog"
    generate_sample_catalog(out, count=3)
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        generate_sample_catalog(out, count=5)
    assert main([str(out), "--count", "5"]) == 2
    assert main([str(out), "--count", "5", "--force", "--seed", "3"]) == 0
    assert len(load_catalog(out)) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog"]  # no staging folder left behind
