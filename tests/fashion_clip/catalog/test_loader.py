"""The catalog loader: CSV and JSONL, extras kept, every bad row named with what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fashion_clip.catalog import CatalogError, CatalogItem, load_catalog

HEADER = "id,title,category,color,price,image,brand\n"
GOOD = "dress-1,Red dress,dress,red,49.99,images/dress-1.jpg,Acme\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_csv_rows_become_items_with_extra_columns_kept(tmp_path: Path):
    write(
        tmp_path / "catalog.csv",
        HEADER + GOOD + "hat-2,Blue hat,hat,blue,0,https://cdn.example.com/hat.jpg,\n",
    )
    catalog = load_catalog(tmp_path)
    assert [item.record() for item in catalog] == [
        {"id": "dress-1", "title": "Red dress", "category": "dress", "color": "red", "price": 49.99,
         "image": "images/dress-1.jpg", "brand": "Acme"},
        {"id": "hat-2", "title": "Blue hat", "category": "hat", "color": "blue", "price": 0.0,
         "image": "https://cdn.example.com/hat.jpg", "brand": ""},
    ]  # fmt: skip
    assert catalog.image_file(catalog["dress-1"]) == tmp_path / "images" / "dress-1.jpg"
    assert catalog.image_file(catalog["hat-2"]) is None
    assert catalog["hat-2"].image_is_url and not catalog["dress-1"].image_is_url


def test_jsonl_keeps_typed_extras_and_skips_blank_lines(tmp_path: Path):
    row = {"id": "bag-1", "title": "Bag", "category": "bag", "color": "black", "price": 120,
           "image": "photos/bag 1.png", "sizes": ["S", "M"], "stock": {"eu": 3}}  # fmt: skip
    metadata = write(tmp_path / "shop" / "items.jsonl", json.dumps(row) + "\n\n")
    catalog = load_catalog(metadata)
    assert catalog.root == tmp_path / "shop" and catalog.source == metadata
    assert catalog.items[0].record() == row | {"price": 120.0}


def test_values_are_stripped(tmp_path: Path):
    write(tmp_path / "catalog.csv", HEADER + " dress-1 , Red dress ,dress,red, 49.99 ,images/dress-1.jpg,\n")
    item = load_catalog(tmp_path).items[0]
    assert (item.id, item.title, item.price) == ("dress-1", "Red dress", 49.99)


def test_every_bad_row_is_reported_with_its_line_and_field(tmp_path: Path):
    rows = [
        GOOD,  # line 2
        "dress-2,Dress,dress,red,-5,images/a.jpg,\n",  # 3
        "dress 3,Dress,dress,red,5,images/a.jpg,\n",  # 4
        "dress-4,,dress,red,5,images/a.jpg,\n",  # 5
        "dress-5,Dress,dress,red,cheap,images/a.jpg,\n",  # 6
        "dress-6,Dress,dress,red,5,../outside.jpg,\n",  # 7
        "dress-7,Dress,dress,red,5,/etc/passwd,\n",  # 8
        "dress-8,Dress,dress,red,5,ftp://host/a.jpg,\n",  # 9
        "dress-9,Dress,dress,red,inf,images/a.jpg,\n",  # 10
        "dress-10,Dress,dress,red,5,images/a.jpg,x,extra\n",  # 11
    ]
    write(tmp_path / "catalog.csv", HEADER + "".join(rows))
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    error = caught.value
    assert [(row.line, row.item_id) for row in error.rows] == [
        (3, "dress-2"), (4, "dress 3"), (5, "dress-4"), (6, "dress-5"), (7, "dress-6"), (8, "dress-7"),
        (9, "dress-8"), (10, "dress-9"), (11, None),
    ]  # fmt: skip
    assert str(error).splitlines() == [
        f"{tmp_path / 'catalog.csv'}: 9 bad row(s):",
        "  line 3 (id 'dress-2'): price: Input should be greater than or equal to 0",
        "  line 4 (id 'dress 3'): id: String should match pattern '^[A-Za-z0-9][A-Za-z0-9._-]*$'",
        "  line 5 (id 'dress-4'): title: String should have at least 1 character",
        "  line 6 (id 'dress-5'): price: Input should be a valid number, unable to parse string as a number",
        "  line 7 (id 'dress-6'): image: Value error, image must be a path inside the catalog folder or an http(s) URL, got '../outside.jpg'",
        "  line 8 (id 'dress-7'): image: Value error, image must be a path inside the catalog folder or an http(s) URL, got '/etc/passwd'",
        "  line 9 (id 'dress-8'): image: Value error, only http and https image URLs are supported, got 'ftp://host/a.jpg'",
        "  line 10 (id 'dress-9'): price: Value error, price must be a finite number",
        "  line 11: 1 more value(s) than header columns",
    ]


def test_several_problems_in_one_row_are_all_listed(tmp_path: Path):
    write(tmp_path / "catalog.jsonl", json.dumps({"id": "x", "price": -1, "image": "a.jpg"}) + "\n")
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    assert str(caught.value.rows[0]) == (
        "line 1 (id 'x'): title: Field required; category: Field required; color: Field required; "
        "price: Input should be greater than or equal to 0"
    )


def test_long_reports_are_cut_but_every_row_is_kept(tmp_path: Path):
    write(tmp_path / "catalog.csv", HEADER + "".join(f"d{i},T,c,red,-1,a.jpg,\n" for i in range(25)))
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    assert len(caught.value.rows) == 25
    assert str(caught.value).endswith(
        "line 21 (id 'd19'): price: Input should be greater than or equal to 0\n  ... and 5 more"
    )


def test_a_missing_column_is_named(tmp_path: Path):
    write(tmp_path / "catalog.csv", "id,title,category,image\ndress-1,Dress,dress,a.jpg\n")
    with pytest.raises(CatalogError, match=r"the header lacks the required column\(s\) color, price"):
        load_catalog(tmp_path)


def test_invalid_json_lines_are_reported(tmp_path: Path):
    good = {"id": "a", "title": "A", "category": "c", "color": "red", "price": 1, "image": "a.jpg"}
    write(tmp_path / "catalog.jsonl", json.dumps(good) + "\n{not json\n[1, 2]\n")
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    assert [str(row) for row in caught.value.rows] == [
        "line 2: not valid JSON (Expecting property name enclosed in double quotes at column 2)",
        "line 3: expected a JSON object, got list",
    ]


def test_duplicate_ids_are_named_with_their_lines(tmp_path: Path):
    write(tmp_path / "catalog.csv", HEADER + GOOD + GOOD.replace("dress-1", "dress-2") + GOOD)
    with pytest.raises(
        CatalogError, match=r"Duplicate item ids: 'dress-1' \(lines 2, 4\)\. Every id must be unique"
    ):
        load_catalog(tmp_path)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({}, "has no metadata file: expected one of catalog.jsonl, catalog.csv"),
        ({"catalog.csv": HEADER + GOOD, "catalog.jsonl": ""}, "holds both catalog.jsonl and catalog.csv"),
        ({"catalog.csv": HEADER}, "the catalog has no items"),
    ],
)
def test_a_folder_without_one_usable_metadata_file_is_refused(tmp_path: Path, files: dict, message: str):
    tmp_path.joinpath("images").mkdir()
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(CatalogError, match=message):
        load_catalog(tmp_path)


def test_unknown_formats_and_paths_are_refused(tmp_path: Path):
    with pytest.raises(CatalogError, match="unknown metadata format; use .csv or .jsonl"):
        load_catalog(write(tmp_path / "catalog.xlsx", ""))
    with pytest.raises(CatalogError, match="No catalog at"):
        load_catalog(tmp_path / "absent")


def test_items_are_immutable():
    item = CatalogItem(id="a", title="A", category="c", color="red", price=1, image="a.jpg")
    with pytest.raises(ValueError, match="frozen"):
        item.title = "B"  # type: ignore[misc]
