"""The walkthrough notebook: committed clean, and executed top to bottom offline with the tiny model,
once against a real API (answers must match the in-process ones) and once with no API at all."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import httpx
import nbformat
import pytest
from nbclient.exceptions import CellExecutionError
from PIL import Image
from procs import LOOPBACK, free_port

from fashion_clip.modeldir import read_manifest

K = 6
TEXT_QUERY = "a red striped dress"
TAGS = (
    "setup",
    "install-model",
    "embedder",
    "catalog",
    "embed-handful",
    "build-index",
    "image-query",
    "text-query",
    "pca-map",
    "http",
    "outputs",
)
# The line the HTTP cell prints per query.
COMPARISON = re.compile(
    r"^(?P<route>POST /recommend|GET /search) -> (?P<status>\d+): (?P<items>\d+) items, "
    r"top '(?P<top>[^']+)' \(in process: '(?P<local>[^']+)'\), same top result: (?P<same>yes|NO), "
    r"(?P<shared>\d+)/(?P<k>\d+) ids shared$",
    re.M,
)


def cell(notebook: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    found = [c for c in notebook.cells if tag in c.metadata.get("tags", [])]
    assert len(found) == 1, f"expected one cell tagged {tag!r}, found {len(found)}"
    return found[0]


def stdout(notebook: nbformat.NotebookNode, tag: str) -> str:
    return "".join(
        o.text for o in cell(notebook, tag).outputs if o.output_type == "stream" and o.name == "stdout"
    )


def pngs(notebook: nbformat.NotebookNode, tag: str) -> list[Image.Image]:
    images = []
    for output in cell(notebook, tag).outputs:
        if output.output_type == "display_data" and "image/png" in output.data:
            image = Image.open(io.BytesIO(base64.b64decode(output.data["image/png"])))
            image.load()
            images.append(image)
    return images


def no_hub() -> str:
    """A model hub address where nothing listens: `auto` must fall back to the tiny model at once."""
    return f"http://{LOOPBACK}:{free_port()}"


# --- the committed file ------------------------------------------------------------------------------


def test_committed_notebook_has_no_outputs(notebook_path: Path) -> None:
    notebook = nbformat.read(notebook_path, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert [c.id for c in code if c.outputs] == []
    assert [c.id for c in code if c.execution_count is not None] == []
    assert [c.id for c in code if "execution" in c.metadata] == []
    assert notebook.metadata.kernelspec.name == "python3"
    for tag in TAGS:
        cell(notebook, tag)


# --- executed against a real API ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_api(run_notebook, api_url: str, tmp_path_factory: pytest.TempPathFactory, notebook_path: Path):
    out = tmp_path_factory.mktemp("walkthrough") / "out"
    before = sorted(p.name for p in notebook_path.parent.iterdir())
    notebook = run_notebook(
        {
            "FASHION_CLIP_NOTEBOOK_DIR": str(out),
            "FASHION_CLIP_NOTEBOOK_MODEL": "auto",
            "FASHION_CLIP_API_URL": api_url,
            "HF_ENDPOINT": no_hub(),
        },
        drop=("HF_HUB_OFFLINE", "FASHION_CLIP_NOTEBOOK_ITEMS"),
    )
    after = sorted(p.name for p in notebook_path.parent.iterdir())
    return notebook, out, before, after


@pytest.mark.slow
def test_auto_falls_back_to_the_tiny_model_loudly(with_api, tiny_model: Path) -> None:
    notebook, out, *_ = with_api
    text = stdout(notebook, "install-model")
    assert re.search(r"chosen: tiny \(http://127\.0\.0\.1:\d+ is not reachable \(ConnectError\)\)", text), (
        text
    )
    tiny = read_manifest(tiny_model)
    assert f"model: {tiny.model_id} (seed:0) in {out / 'model'}" in text
    assert "WARNING: the tiny model tiny-clip is UNTRAINED" in text
    # The installer wrote the model into the output folder, and no archive (nothing is served).
    assert read_manifest(out / "model").weights_sha256 == tiny.weights_sha256
    assert not (out / "model-store").exists()


@pytest.mark.slow
def test_the_index_is_built_in_the_output_folder(with_api, tiny_model: Path) -> None:
    notebook, out, *_ = with_api
    manifest = json.loads((out / "index" / "manifest.json").read_text())
    assert manifest["item_count"] == 360
    assert manifest["model"]["model_id"] == read_manifest(tiny_model).model_id
    text = stdout(notebook, "build-index")
    assert f"indexed 360 items (0 skipped) with {read_manifest(tiny_model).model_id} in " in text
    drift = float(
        re.search(r"largest difference between stored and freshly computed vectors: (\S+)", text)[1]
    )
    assert drift < 1e-4
    assert (
        "360 items, 9 categories: bag, dress, hat, jacket, scarf, shoes, skirt, t-shirt, trousers"
        in stdout(notebook, "catalog")
    )


@pytest.mark.slow
def test_figures_are_shown_and_saved(with_api) -> None:
    notebook, out, *_ = with_api
    for tag in ("catalog", "image-query", "text-query", "pca-map", "http"):
        images = pngs(notebook, tag)
        assert len(images) == 1, tag
        assert images[0].format == "PNG" and images[0].width >= 300 and images[0].height >= 150, tag
    saved = sorted(p.name for p in (out / "figures").iterdir())
    assert saved == ["handful.png", "http-recommend.png", "image-query.png", "pca-map.png", "text-query.png"]
    for name in saved:
        with Image.open(out / "figures" / name) as image:
            assert image.format == "PNG"


@pytest.mark.slow
def test_the_api_answers_as_in_process(with_api, api_url: str) -> None:
    notebook, out, *_ = with_api
    text = stdout(notebook, "http")
    assert f"API at {api_url}: tiny-clip@" in text and "over 360 items (local embedder)" in text
    assert "NOTE:" not in text  # same model and catalog as the notebook
    lines = {m["route"]: m for m in COMPARISON.finditer(text)}
    assert sorted(lines) == ["GET /search", "POST /recommend"], text
    for match in lines.values():
        assert (match["status"], match["items"], match["k"]) == ("200", str(K), str(K))
        assert match["top"] == match["local"] and match["same"] == "yes"
    # What the notebook printed is what the API answers when asked directly.
    with httpx.Client(base_url=api_url, timeout=60) as http:
        searched = http.get("/search", params={"q": TEXT_QUERY, "k": K}).json()
        photo = (out / "query.jpg").read_bytes()
        recommended = http.post(
            "/recommend", params={"k": K}, files={"file": ("q.jpg", photo, "image/jpeg")}
        ).json()
    assert lines["GET /search"]["top"] == searched["items"][0]["id"]
    assert lines["POST /recommend"]["top"] == recommended["items"][0]["id"]


@pytest.mark.slow
def test_nothing_is_written_beside_the_notebook(with_api) -> None:
    _, _, before, after = with_api
    assert after == before


# --- executed with no API -----------------------------------------------------------------------------


@pytest.mark.slow
def test_without_an_api_the_notebook_says_so_and_goes_on(
    run_notebook, tmp_path_factory: pytest.TempPathFactory
) -> None:
    out = tmp_path_factory.mktemp("walkthrough-no-api") / "out"
    dead = f"http://{LOOPBACK}:{free_port()}"
    notebook = run_notebook(
        {
            "FASHION_CLIP_NOTEBOOK_DIR": str(out),
            "FASHION_CLIP_NOTEBOOK_MODEL": "tiny",
            "FASHION_CLIP_NOTEBOOK_ITEMS": "45",  # fewer items: this run is about the HTTP cell
            "FASHION_CLIP_API_URL": dead,
        }
    )
    assert "chosen: tiny (FASHION_CLIP_NOTEBOOK_MODEL=tiny)" in stdout(notebook, "install-model")
    assert "indexed 45 items (0 skipped)" in stdout(notebook, "build-index")
    text = stdout(notebook, "http")
    assert text.startswith(f"API NOT REACHABLE at {dead} (ConnectError: ")
    assert "Start one with `make demo` or set FASHION_CLIP_API_URL" in text
    assert pngs(notebook, "http") == []
    # The cells after it ran: the last one lists what the notebook wrote.
    listed = stdout(notebook, "outputs").split()
    assert "figures/pca-map.png" in listed and "index/manifest.json" in listed
    assert "figures/http-recommend.png" not in listed


@pytest.mark.slow
def test_a_bad_model_choice_is_refused_naming_the_variable(
    run_notebook, tmp_path_factory: pytest.TempPathFactory
) -> None:
    out = tmp_path_factory.mktemp("walkthrough-bad") / "out"
    with pytest.raises(CellExecutionError) as raised:
        run_notebook({"FASHION_CLIP_NOTEBOOK_DIR": str(out), "FASHION_CLIP_NOTEBOOK_MODEL": "huge"})
    assert (
        "FASHION_CLIP_NOTEBOOK_MODEL must be one of ('auto', 'pretrained', 'untrained', 'tiny'), got 'huge'"
        in str(raised.value)
    )
    assert not (out / "model").exists()
