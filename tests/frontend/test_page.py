"""The page's logic through Streamlit's AppTest, against the real API (tiny model, sample index).

Each test compares what the page shows with what the API answers for the same question, so the page
can neither drop, reorder nor invent results.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from procs import LOOPBACK, free_port
from streamlit.testing.v1 import AppTest

pytestmark = pytest.mark.slow

APP = Path(__file__).resolve().parents[2] / "frontend" / "app.py"
QUERY_IMAGE = "images/dress-red-solid.jpg"


def run_app(monkeypatch: pytest.MonkeyPatch, api_url: str) -> AppTest:
    monkeypatch.setenv("FRONTEND_API_URL", api_url)
    app = AppTest.from_file(str(APP), default_timeout=120).run()
    assert not app.exception
    return app


def keyed(node: object, prefix: str) -> list[str]:
    """Keys starting with `prefix` in page order, e.g. the result cards' `result-<id>`."""
    found = []
    key = getattr(node, "key", None)
    if isinstance(key, str) and key.startswith(prefix):
        found.append(key[len(prefix) :])
    for child in getattr(node, "children", {}).values():
        found.extend(keyed(child, prefix))
    return found


def result_ids(app: AppTest) -> list[str]:
    return keyed(app._tree, "result-")


def ids(body: dict) -> list[str]:
    return [item["id"] for item in body["items"]]


def test_banner_filters_and_samples(monkeypatch: pytest.MonkeyPatch, api_url: str, api: httpx.Client) -> None:
    app = run_app(monkeypatch, api_url)
    model_id = api.get("/info").json()["model"]["model_id"]
    assert [w.value for w in app.warning] == [
        f"The API serves `{model_id}`, whose weights are **untrained** (random): similarity results are "
        "not meaningful. Install the real CLIP ViT-B/32 with `python model-server/model_installer.py` "
        "(or `make model`), rebuild the index with `make index`, and restart the API."
    ]
    assert app.selectbox(key="category").options == [
        "All categories",
        *api.get("/categories").json()["categories"],
    ]
    assert len(keyed(app._tree, "sample-")) == 6
    assert not app.error
    assert result_ids(app) == []


def test_upload_shows_the_embedding_and_the_api_ranking(
    monkeypatch: pytest.MonkeyPatch, api_url: str, api: httpx.Client, sample_index: Path
) -> None:
    image = (sample_index / QUERY_IMAGE).read_bytes()
    app = run_app(monkeypatch, api_url)
    app.file_uploader(key="upload").set_value(("red-dress.jpg", image, "image/jpeg")).run()
    assert not app.exception and not app.error
    expected = api.post("/recommend", params={"k": 8}, files={"file": ("q.jpg", image, "image/jpeg")}).json()
    assert result_ids(app) == ids(expected)
    prediction = api.post("/predict", files={"file": ("q.jpg", image, "image/jpeg")}).json()
    assert app.markdown[0].value == f"**Embedding** · dim 64 · `{prediction['model_id']}` · norm 1.000"
    assert [h.value for h in app.subheader][:2] == ["Your photo", "8 most similar items"]


def test_text_search_honours_category_and_k(
    monkeypatch: pytest.MonkeyPatch, api_url: str, api: httpx.Client
) -> None:
    app = run_app(monkeypatch, api_url)
    app.selectbox(key="category").set_value("dress")
    app.slider(key="k").set_value(5)
    app.text_input(key="text_query").input("red summer dress")
    app.button(key="FormSubmitter:text-search-Search").click().run()
    assert not app.exception and not app.error
    expected = api.get("/search", params={"q": "red summer dress", "k": 5, "category": "dress"}).json()
    assert len(expected["items"]) == 5
    assert {item["category"] for item in expected["items"]} == {"dress"}
    assert result_ids(app) == ids(expected)
    assert app.subheader[1].value == "5 items matching “red summer dress” in dress"


def test_more_like_this_follows_the_clicked_item(
    monkeypatch: pytest.MonkeyPatch, api_url: str, api: httpx.Client
) -> None:
    app = run_app(monkeypatch, api_url)
    app.text_input(key="text_query").input("striped scarf")
    app.button(key="FormSubmitter:text-search-Search").click().run()
    clicked = result_ids(app)[2]
    app.button(key=f"more-{clicked}").click().run()
    assert not app.exception and not app.error
    expected = api.get(f"/items/{clicked}/similar", params={"k": 8}).json()
    assert result_ids(app) == ids(expected)
    assert clicked not in result_ids(app)
    title = api.get(f"/items/{clicked}").json()["title"]
    assert app.subheader[1].value == f"8 items like “{title}”"


def test_a_catalog_photo_is_not_its_own_result(
    monkeypatch: pytest.MonkeyPatch, api_url: str, api: httpx.Client
) -> None:
    app = run_app(monkeypatch, api_url)
    sample = keyed(app._tree, "sample-")[0]
    app.button(key=f"sample-{sample}").click().run()
    assert not app.exception and not app.error
    image = api.get(f"/items/{sample}/image").content
    expected = api.post(
        "/recommend", params={"k": 8, "exclude": sample}, files={"file": ("q.jpg", image, "image/jpeg")}
    ).json()
    assert result_ids(app) == ids(expected)
    assert sample not in result_ids(app)


def test_a_refused_upload_shows_the_api_message(monkeypatch: pytest.MonkeyPatch, api_url: str) -> None:
    app = run_app(monkeypatch, api_url)
    app.file_uploader(key="upload").set_value(("notes.png", b"not a picture at all", "image/png")).run()
    assert not app.exception
    assert [e.value for e in app.error] == ["The data is not an image Pillow can identify."]
    assert result_ids(app) == []
    # The inputs stay usable: the error is where the results would be.
    assert app.file_uploader(key="upload") is not None and app.text_input(key="text_query") is not None


def test_api_down_is_a_sentence_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://{LOOPBACK}:{free_port()}"
    app = run_app(monkeypatch, url)
    assert len(app.error) == 1
    assert app.error[0].value.startswith(f"The API at {url} is not reachable (ConnectError:")
    assert app.get_by_key("api-error") is not None
    assert not app.warning and result_ids(app) == []


def test_invalid_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    app = run_app(monkeypatch, "ftp://files")
    assert [e.value for e in app.error] == [
        "Invalid settings: FRONTEND_API_URL: must start with http:// or https://, got 'ftp://files'"
    ]


@pytest.fixture(scope="module")
def mismatched_api_url(sample_index: Path, tmp_path_factory: pytest.TempPathFactory, launch_api) -> str:
    """A real API whose model (tiny, another seed) is not the one the index was built with: not ready."""
    import model_installer

    base = tmp_path_factory.mktemp("other-model")
    other = model_installer.install("tiny", model_dir=base / "model", model_store=None, seed=1)
    server, url = launch_api(base / "api.log", model_dir=other, ready=False)
    yield url
    server.stop()


def test_a_not_ready_api_shows_its_reason(monkeypatch: pytest.MonkeyPatch, mismatched_api_url: str) -> None:
    readyz = httpx.get(f"{mismatched_api_url}/readyz", timeout=30)
    assert readyz.status_code == 503 and readyz.json()["error"] == "not_ready"
    app = run_app(monkeypatch, mismatched_api_url)
    expected = f"{readyz.json()['message']} (try again in {readyz.headers['retry-after']} s)"
    assert [e.value for e in app.error] == [expected]
    assert result_ids(app) == [] and not app.warning
