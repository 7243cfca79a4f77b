"""`IndexBundle.load` refuses a bundle that is missing, changed after the build or inconsistent."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from fashion_clip.index import BundleError, IndexBundle


@pytest.fixture
def copy(tiny_index: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "index"
    shutil.copytree(tiny_index, dest)
    return dest


def rewrite_manifest(bundle: Path, **changes: object) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["index.ann", "items.jsonl", "images/hat-red-dots.jpg"])
def test_a_changed_file_is_detected_by_its_sha256(copy: Path, name: str):
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit: same size, same format, different content
    (copy / name).write_bytes(bytes(data))
    with pytest.raises(
        BundleError, match=rf"{re.escape(name)} has sha256 [0-9a-f]{{12}}\.\.\., the manifest says"
    ):
        IndexBundle.load(copy)
    # verify=False is the explicit way to skip the check (the items still load)
    if name.startswith("images/"):
        with IndexBundle.load(copy, verify=False) as bundle:
            assert len(bundle) == 360


def test_a_missing_file_is_named(copy: Path):
    (copy / "images" / "bag-red-solid.jpg").unlink()
    with pytest.raises(BundleError, match=r"is incomplete: images/bag-red-solid.jpg is missing"):
        IndexBundle.load(copy)


def test_no_bundle_at_all(tmp_path: Path):
    with pytest.raises(BundleError, match=r"No index bundle at .*: manifest.json is missing"):
        IndexBundle.load(tmp_path / "nothing")


def test_a_manifest_pointing_outside_the_bundle_is_refused(copy: Path):
    manifest = json.loads((copy / "manifest.json").read_text())
    rewrite_manifest(copy, files={**manifest["files"], "../secret": "0" * 64})
    with pytest.raises(BundleError, match="file entry '../secret' points outside the bundle"):
        IndexBundle.load(copy)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": 2}, "format_version 2 is not 1; rebuild the index"),
        ({"metric": "euclidean"}, "metric 'euclidean' is not 'angular'"),
        ({"dim": 32}, "model embed_dim 64 != index dim 32"),
        ({"item_count": 361}, "has 360 items but the manifest says 361"),
    ],
)
def test_an_inconsistent_manifest_is_refused(copy: Path, changes: dict, message: str):
    rewrite_manifest(copy, **changes)
    with pytest.raises(BundleError, match=re.escape(message)):
        IndexBundle.load(copy)


def test_search_k_factor_is_validated_and_kept(tiny_index: Path):
    with pytest.raises(ValueError, match="search_k_factor must be at least 1"):
        IndexBundle.load(tiny_index, search_k_factor=0)
    with IndexBundle.load(tiny_index, search_k_factor=2) as bundle:
        assert bundle.search_k_factor == 2


def test_a_swap_landing_mid_load_gives_the_new_bundle_not_an_error(
    tmp_path: Path, tiny_index: Path, sample_catalog: Path, tiny_client, monkeypatch: pytest.MonkeyPatch
):
    """A build renames its bundle into place while a reader verifies the old one (timing forced here)."""
    from fashion_clip.index import build_annoy_index
    from fashion_clip.index import bundle as bundle_module

    dest = tmp_path / "index"
    shutil.copytree(tiny_index, dest)
    lines = (sample_catalog / "catalog.csv").read_text().splitlines(keepends=True)
    small = tmp_path / "small"
    (small / "images").mkdir(parents=True)
    (small / "catalog.csv").write_text("".join(lines[:13]))
    for line in lines[1:13]:
        image = line.rstrip("\n").split(",")[5]
        shutil.copyfile(sample_catalog / image, small / image)
    build_annoy_index(small, tmp_path / "next", tiny_client, trees=2, progress=False)

    real_verify, swaps = bundle_module._verify_files, []

    def verify_while_a_build_swaps(root: Path, files: dict) -> None:
        if not swaps:
            (tmp_path / "index").rename(tmp_path / "aside")
            (tmp_path / "next").rename(tmp_path / "index")
            swaps.append(True)
        real_verify(root, files)

    monkeypatch.setattr(bundle_module, "_verify_files", verify_while_a_build_swaps)
    with IndexBundle.load(dest) as loaded:
        assert len(loaded) == 12 and loaded.manifest["trees"] == 2
    assert swaps == [True]
