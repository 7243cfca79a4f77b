"""Building bundles: unreadable images, duplicate ids, URL images, atomic replacement, killed builds."""

from __future__ import annotations

import csv
import functools
import json
import logging
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from procs import free_port

from fashion_clip.catalog import Catalog, CatalogError, CatalogItem
from fashion_clip.clients import ModelInfo
from fashion_clip.index import BuildError, IndexBundle, build_annoy_index
from fashion_clip.index.build import _clean_stale, _model_record, main
from fashion_clip.modeldir import read_manifest


def sample_rows(sample_catalog: Path, count: int) -> list[dict]:
    with open(sample_catalog / "catalog.csv", newline="") as handle:
        return list(csv.DictReader(handle))[:count]


def write_catalog(folder: Path, rows: list[dict], sample_catalog: Path | None = None) -> Path:
    """A JSONL catalog in `folder`, copying each local image that exists in the sample catalog."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    with open(folder / "catalog.jsonl", "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
            source = sample_catalog / row["image"] if sample_catalog else None
            if source is not None and source.is_file():
                shutil.copyfile(source, folder / row["image"])
    return folder


def siblings(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}."))


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def image_server(sample_catalog: Path) -> Iterator[str]:
    """A real HTTP server on loopback serving the sample catalog's files, for URL images."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(sample_catalog))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_unreadable_images_are_skipped_and_reported(
    tmp_path: Path,
    sample_catalog: Path,
    tiny_model: Path,
    image_server: str,
    caplog: pytest.LogCaptureFixture,
):
    rows = sample_rows(sample_catalog, 10)
    closed_port = free_port()
    rows += [
        {**rows[0], "id": "served", "image": f"{image_server}/{rows[0]['image']}"},
        {**rows[0], "id": "not-served", "image": f"{image_server}/images/nothing-here.jpg"},
        {**rows[0], "id": "server-down", "image": f"http://127.0.0.1:{closed_port}/a.jpg"},
    ]
    catalog = write_catalog(tmp_path / "catalog", rows, sample_catalog)
    (catalog / rows[1]["image"]).write_bytes(b"this is a text file, not a photo")
    (catalog / rows[2]["image"]).write_bytes((sample_catalog / rows[2]["image"]).read_bytes()[:700])
    (catalog / rows[3]["image"]).unlink()
    (catalog / rows[4]["image"]).write_bytes(b"")
    dest = tmp_path / "index"

    caplog.set_level(logging.INFO, logger="fashion_clip.index")
    args = [str(catalog), "--out", str(dest), "--model-dir", str(tiny_model), "--precision", "fp32"]
    assert main([*args, "--batch-size", "4", "--no-progress", "--trees", "5"]) == 0

    manifest = json.loads((dest / "manifest.json").read_text())
    skipped = {entry["id"]: entry for entry in manifest["skipped"]}
    assert list(skipped) == [rows[i]["id"] for i in (1, 2, 3, 4)] + ["not-served", "server-down"]
    assert skipped[rows[1]["id"]] == {
        "id": rows[1]["id"],
        "image": rows[1]["image"],
        "reason": "unsupported_media_type: The data is not an image Pillow can identify.",
    }
    assert skipped[rows[2]["id"]]["reason"].startswith(
        "invalid_image: The image could not be decoded: image file is truncated"
    )
    assert skipped[rows[3]["id"]]["reason"] == "file not found"
    assert skipped[rows[4]["id"]]["reason"] == "invalid_image: The image is empty (0 bytes)."
    assert skipped["not-served"]["reason"] == "download failed: HTTP 404"
    assert skipped["server-down"]["reason"].startswith("download failed: ConnectError")
    assert manifest["item_count"] == 13 - 6

    with IndexBundle.load(dest) as bundle:
        assert bundle.ids() == [rows[0]["id"]] + [row["id"] for row in rows[5:10]] + ["served"]
        assert bundle.item("served")["image"] == rows[-3]["image"]
        assert bundle.image_path("served") is None
        # The downloaded image is the same file as item 0's: the same vector.
        np.testing.assert_allclose(bundle.vector("served"), bundle.vector(rows[0]["id"]), atol=1e-6)
    report = "\n".join(record.getMessage() for record in caplog.records)
    for entry in manifest["skipped"]:
        assert f"skipped {entry['id']} ({entry['image']}): {entry['reason']}" in report
    assert "6 image(s) skipped" in report


def test_duplicate_ids_refuse_the_build(
    tmp_path: Path, sample_catalog: Path, caplog: pytest.LogCaptureFixture
):
    rows = sample_rows(sample_catalog, 4)
    rows += [{**rows[0]}, {**rows[2], "title": "Another"}]
    catalog = write_catalog(tmp_path / "catalog", rows, sample_catalog)
    dest = tmp_path / "index"
    assert main([str(catalog), "--out", str(dest), "--no-progress"]) == 2
    message = f"Duplicate item ids: '{rows[0]['id']}' (lines 1, 5), '{rows[2]['id']}' (lines 3, 6)"
    assert message in caplog.text
    assert not dest.exists() and siblings(dest) == []
    items = [CatalogItem(**row) for row in rows]
    with pytest.raises(CatalogError, match=r"Duplicate item ids: 't-shirt-red-solid' \(positions 1, 5\)"):
        Catalog(root=catalog, items=items)


def test_a_catalog_with_nothing_readable_is_an_error(tmp_path: Path, sample_catalog: Path, tiny_client):
    rows = [
        {**row, "image": f"images/missing-{i}.jpg"} for i, row in enumerate(sample_rows(sample_catalog, 2))
    ]
    catalog = write_catalog(tmp_path / "catalog", rows)
    dest = tmp_path / "index"
    with pytest.raises(BuildError, match="none of the 2 catalog images could be read"):
        build_annoy_index(catalog, dest, tiny_client, progress=False)
    assert not dest.exists() and siblings(dest) == []


def test_rebuilding_replaces_the_bundle_and_leaves_nothing_beside_it(
    tmp_path: Path, sample_catalog: Path, tiny_index: Path, tiny_client
):
    dest = tmp_path / "index"
    shutil.copytree(tiny_index, dest)
    catalog = write_catalog(tmp_path / "catalog", sample_rows(sample_catalog, 20), sample_catalog)
    manifest = build_annoy_index(catalog, dest, tiny_client, trees=3, progress=False)
    assert manifest["item_count"] == 20 and manifest["trees"] == 3
    assert json.loads((dest / "manifest.json").read_text()) == manifest
    with IndexBundle.load(dest) as bundle:
        assert len(bundle) == 20
    assert len(list((dest / "images").iterdir())) == 20
    assert siblings(dest) == []


def test_the_weights_hash_comes_only_from_the_served_models_own_directory(tiny_model: Path):
    weights = read_manifest(tiny_model)
    served = ModelInfo(model_name="tiny-clip", model_id=weights.model_id, dim=64, untrained=True)
    assert _model_record(served, tiny_model)["weights_sha256"] == weights.weights_sha256
    other = ModelInfo(model_name="tiny-clip", model_id="tiny-clip@000000000000", dim=64, untrained=True)
    assert _model_record(other, tiny_model) == {
        "model_name": "tiny-clip",
        "model_id": "tiny-clip@000000000000",
        "weights_sha256": None,
        "untrained": True,
        "embed_dim": 64,
    }


@pytest.mark.slow
@pytest.mark.parametrize("previous", [True, False], ids=["over-a-bundle", "fresh"])
def test_a_killed_build_leaves_no_partial_bundle(
    tmp_path: Path, sample_catalog: Path, tiny_model: Path, tiny_index: Path, tiny_client, previous: bool
):
    dest = tmp_path / "index"
    if previous:
        shutil.copytree(tiny_index, dest)
    before = (dest / "manifest.json").read_text() if previous else None
    command = [
        str(Path(sys.executable).parent / "fashion-clip-build-index"), str(sample_catalog), "--out", str(dest),
        "--model-dir", str(tiny_model), "--precision", "fp32", "--batch-size", "1", "--no-progress",
    ]  # fmt: skip
    log = open(tmp_path / "build.log", "wb")
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        # Kill once a few images are embedded and copied into the staging folder, mid-embedding.
        while True:
            staged = list(tmp_path.glob(f".index.build-{proc.pid}-*/images/*"))
            if len(staged) >= 3:
                break
            assert proc.poll() is None, (
                f"the build ended before it could be killed:\n{(tmp_path / 'build.log').read_text()}"
            )
            assert time.monotonic() < deadline, "the build never started embedding"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    leftovers = siblings(dest)
    assert len(leftovers) == 1 and leftovers[0].startswith(f".index.build-{proc.pid}-")
    assert not (tmp_path / leftovers[0] / "manifest.json").exists()
    if previous:
        assert (dest / "manifest.json").read_text() == before
        with IndexBundle.load(dest) as bundle:  # every file still matches its sha256
            assert len(bundle) == 360
    else:
        assert not dest.exists()

    # The next build clears what the killed one left.
    catalog = write_catalog(tmp_path / "small", sample_rows(sample_catalog, 5), sample_catalog)
    assert build_annoy_index(catalog, dest, tiny_client, trees=2, progress=False)["item_count"] == 5
    assert siblings(dest) == []


def test_a_bundle_left_aside_by_a_killed_swap_is_put_back(tmp_path: Path, tiny_index: Path):
    finished = subprocess.Popen(["true"])
    finished.wait()  # reaped: its pid now names no process, like a killed build's
    dead_pid = finished.pid
    dest = tmp_path / "index"
    shutil.copytree(tiny_index, tmp_path / f".index.old-{dead_pid}-x1")
    (tmp_path / f".index.build-{dead_pid}-x2").mkdir()
    _clean_stale(dest)
    assert siblings(dest) == []
    with IndexBundle.load(dest) as bundle:
        assert len(bundle) == 360
