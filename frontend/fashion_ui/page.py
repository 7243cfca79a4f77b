"""The page: query by photo or by words, see the catalog's nearest items, follow "more like this".

State lives in `st.session_state["query"]`, set only by widget callbacks, so the results on screen
always answer the last thing the user asked for, whichever widget they used.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import streamlit as st
from pydantic import ValidationError

from fashion_ui.client import ApiClient, ApiError, is_untrained, model_label
from fashion_ui.config import FrontendSettings, settings_error_message

logger = logging.getLogger("frontend")

ALL_CATEGORIES = "All categories"
GRID_COLUMNS = 4
SAMPLE_COUNT = 6
# Formats the API decodes (fashion_clip.images.ALLOWED_FORMATS).
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"]
INSTALL_HINT = (
    "Install the real CLIP ViT-B/32 with `python model-server/model_installer.py` (or `make model`), "
    "rebuild the index with `make index`, and restart the API."
)


# Cached API calls. Streamlit shares these across sessions; errors are never cached, so a page
# opened while the API is down keeps asking until it is back.


@st.cache_resource(show_spinner=False)
def get_client(api_url: str, timeout: float) -> ApiClient:
    return ApiClient(api_url, timeout=timeout)


@st.cache_data(ttl=30, show_spinner=False)
def cached_info(api_url: str, timeout: float) -> dict:
    return get_client(api_url, timeout).info()


@st.cache_data(ttl=60, show_spinner=False)
def cached_categories(api_url: str, timeout: float) -> list[str]:
    return get_client(api_url, timeout).categories()


@st.cache_data(ttl=3600, max_entries=2000, show_spinner=False)
def cached_image(api_url: str, timeout: float, image_url: str) -> bytes:
    return get_client(api_url, timeout).image(image_url)


@st.cache_data(ttl=300, show_spinner=False)
def cached_samples(api_url: str, timeout: float, count: int) -> list[dict]:
    """A few catalog items to try as queries: the best text match of each category's name."""
    client = get_client(api_url, timeout)
    samples: list[dict] = []
    for category in client.categories()[:count]:
        samples.extend(client.search(category, k=1, category=category).get("items", [])[:1])
    return samples


@st.cache_data(ttl=600, max_entries=64, show_spinner=False)
def cached_predict(
    api_url: str, timeout: float, image: bytes, filename: str, content_type: str | None
) -> dict:
    return get_client(api_url, timeout).predict(image, filename=filename, content_type=content_type)


# Callbacks: the only writers of the active query.


def _set_query(**query: Any) -> None:
    st.session_state["query"] = query


def _on_upload() -> None:
    if st.session_state.get("upload") is not None:
        _set_query(kind="upload")
    elif (st.session_state.get("query") or {}).get("kind") == "upload":
        st.session_state["query"] = None


def _on_text_search() -> None:
    text = (st.session_state.get("text_query") or "").strip()
    st.session_state["query"] = {"kind": "text", "q": text} if text else {"kind": "empty_text"}


# Rendering.


ERROR_TITLES = {
    "unreachable": "The API is not reachable",
    "timeout": "The API did not answer in time",
    "not_ready": "The API is not ready yet",
    "model_server_unavailable": "The model server is unavailable",
}


def show_api_error(exc: ApiError) -> None:
    title = ERROR_TITLES.get(exc.code or "")
    if title is None:
        refused = exc.status is not None and 400 <= exc.status < 500
        title = "The API refused the request" if refused else "The API failed"
    with st.container(key="api-error"):
        st.error(exc.message, title=title, icon=":material/error:")


def untrained_banner(info: dict) -> None:
    with st.container(key="untrained-banner"):
        st.warning(
            f"The API serves `{model_label(info)}`, whose weights are **untrained** (random): similarity "
            f"results are not meaningful. {INSTALL_HINT}",
            title="Untrained model: results are not meaningful",
            icon=":material/warning:",
        )


def sidebar(info: dict, categories: list[str], settings: FrontendSettings) -> tuple[int, str | None]:
    with st.sidebar:
        st.header("Filters")
        k = st.slider("Results", min_value=1, max_value=48, value=min(settings.default_k, 48), key="k")
        choice = st.selectbox("Category", [ALL_CATEGORIES, *categories], key="category")
        st.divider()
        st.subheader("Model")
        st.markdown(f"`{model_label(info)}`")
        details = _info_details(info)
        if details:
            st.caption(" · ".join(details))
        st.caption(f"API: {settings.api_url}")
    return int(k), None if choice == ALL_CATEGORIES else choice


def _info_details(info: dict) -> list[str]:
    index = info.get("index") or {}
    details = []
    if index.get("dim"):
        details.append(f"dim {index['dim']}")
    if index.get("item_count") is not None:
        details.append(f"{index['item_count']} items")
    backend = (info.get("embedder") or {}).get("backend")
    if backend:
        details.append(f"embedder: {backend}")
    return details


def query_inputs(settings: FrontendSettings) -> None:
    api_url, timeout = settings.api_url, settings.timeout_seconds
    photo, words = st.columns([3, 2], gap="large")
    with photo:
        st.file_uploader(
            "Search by photo",
            type=UPLOAD_TYPES,
            key="upload",
            on_change=_on_upload,
            max_upload_size=settings.max_upload_mb,
            help="A photo of a garment; the catalog's most similar items come back.",
        )
        samples = cached_samples(api_url, timeout, SAMPLE_COUNT)
        if samples:
            st.caption("…or try a catalog photo:")
            cols = st.columns(len(samples))
            for col, item in zip(cols, samples, strict=True):
                with col:
                    _image(api_url, timeout, item)
                    st.button(
                        "Use",
                        key=f"sample-{item['id']}",
                        on_click=_set_query,
                        kwargs={"kind": "sample", "id": item["id"], "title": item.get("title", item["id"])},
                        width="stretch",
                    )
    with words:
        with st.form("text-search", border=False):
            st.text_input("Search by words", placeholder="red summer dress", key="text_query")
            st.form_submit_button("Search", on_click=_on_text_search, type="primary")


def _image(api_url: str, timeout: float, item: dict, **kwargs: Any) -> None:
    image_url = item.get("image_url") or f"/items/{item['id']}/image"
    try:
        image = cached_image(api_url, timeout, image_url)
    except ApiError as exc:
        # One missing picture should not take the whole grid down.
        st.caption(f"(image unavailable: {exc.message})")
        return
    _show_bytes(image, **kwargs)


def _show_bytes(image: bytes, **kwargs: Any) -> None:
    """st.image, or a caption when Streamlit cannot draw these bytes (a format browsers lack)."""
    try:
        st.image(image, **kwargs)
    except Exception:  # Streamlit re-raises Pillow's errors of every kind
        logger.warning("could not draw an image of %d bytes", len(image), exc_info=True)
        st.caption("(no preview for this image)")


def embedding_summary(prediction: dict) -> None:
    vector = [float(v) for v in prediction.get("embedding", [])]
    norm = math.sqrt(sum(v * v for v in vector))
    with st.container(key="embedding-summary"):
        st.markdown(
            f"**Embedding** · dim {prediction.get('dim', len(vector))} · "
            f"`{prediction.get('model_id') or prediction.get('model', '?')}` · norm {norm:.3f}"
        )
        if vector:
            st.bar_chart(
                {"component": list(range(len(vector))), "value": vector},
                x="component",
                y="value",
                height=140,
                x_label="component",
                y_label="",
            )


def results_grid(api_url: str, timeout: float, result: dict) -> None:
    items = result.get("items", [])
    if not items:
        st.info("No catalog item matches (try another category).")
        return
    with st.container(key="results"):
        for start in range(0, len(items), GRID_COLUMNS):
            cols = st.columns(GRID_COLUMNS)
            for col, item in zip(cols, items[start : start + GRID_COLUMNS], strict=False):
                with col, st.container(key=f"result-{item['id']}", border=True):
                    result_card(api_url, timeout, item)


def result_card(api_url: str, timeout: float, item: dict) -> None:
    _image(api_url, timeout, item)
    st.markdown(f"**{item.get('title') or item['id']}**")
    facts = [str(item[key]) for key in ("category", "color") if item.get(key)]
    price = item.get("price")
    if isinstance(price, int | float):
        facts.append(f"${price:,.2f}")
    st.caption(" · ".join(facts))
    score = item.get("score")
    if isinstance(score, int | float):
        st.markdown(f"similarity **{score:.3f}**")
    st.button(
        "More like this",
        key=f"more-{item['id']}",
        on_click=_set_query,
        kwargs={"kind": "similar", "id": item["id"], "title": item.get("title") or item["id"]},
    )


def run_query(client: ApiClient, settings: FrontendSettings, k: int, category: str | None) -> None:
    """Ask the API first and draw afterwards, so a refused query leaves no half-drawn section."""
    query = st.session_state.get("query")
    api_url, timeout = settings.api_url, settings.timeout_seconds
    if not query:
        st.info("Upload a photo, pick a catalog photo, or describe what you are looking for.")
        return
    kind = query["kind"]
    if kind == "empty_text":
        st.info("Type a few words to search, e.g. “red summer dress”.")
        return
    if kind in ("upload", "sample"):
        if kind == "upload":
            upload = st.session_state.get("upload")
            if upload is None:
                st.info("Upload a photo to search with it.")
                return
            image, filename, content_type = upload.getvalue(), upload.name, upload.type
            exclude: list[str] = []
            label = upload.name
        else:
            image = cached_image(api_url, timeout, f"/items/{query['id']}/image")
            filename, content_type = f"{query['id']}.jpg", None
            exclude = [query["id"]]  # the item itself would be its own best match
            label = query["title"]
        prediction = cached_predict(api_url, timeout, image, filename, content_type)
        result = client.recommend(
            image, k=k, category=category, exclude=exclude, filename=filename, content_type=content_type
        )

        def describe() -> None:
            st.subheader("Your photo" if kind == "upload" else "Catalog photo")
            _show_bytes(image, caption=label)
            embedding_summary(prediction)

        heading = f"{len(result.get('items', []))} most similar items"
    elif kind == "text":
        result = client.search(query["q"], k=k, category=category)

        def describe() -> None:
            st.subheader("Your words")
            st.markdown(f"> {query['q']}")

        heading = f"{len(result.get('items', []))} items matching “{query['q']}”"
    elif kind == "similar":
        result = client.similar(query["id"], k=k, category=category)

        def describe() -> None:
            st.subheader("More like")
            _image(api_url, timeout, {"id": query["id"]}, caption=query["title"])

        heading = f"{len(result.get('items', []))} items like “{query['title']}”"
    else:
        st.session_state["query"] = None
        return
    left, right = st.columns([1, 3], gap="large")
    with left:
        describe()
    with right:
        st.subheader(heading + (f" in {category}" if category else ""))
        results_grid(api_url, timeout, result)


def render(settings: FrontendSettings) -> None:
    client = get_client(settings.api_url, settings.timeout_seconds)
    st.title("fashion-clip")
    st.caption(
        "Visual similarity search over a fashion catalog: a photo or a few words in, similar items out."
    )
    # Uncached on purpose: a page opened while the API is down must say so, whatever is cached.
    client.ready()
    info = cached_info(settings.api_url, settings.timeout_seconds)
    if is_untrained(info):
        untrained_banner(info)
    categories = cached_categories(settings.api_url, settings.timeout_seconds)
    k, category = sidebar(info, categories, settings)
    query_inputs(settings)
    st.divider()
    try:
        run_query(client, settings, k, category)
    except ApiError as exc:
        # The query failed (a bad image, an unknown item...): keep the inputs on screen.
        show_api_error(exc)


def main() -> None:
    st.set_page_config(page_title="fashion-clip", page_icon=":material/checkroom:", layout="wide")
    try:
        settings = FrontendSettings()
    except ValidationError as exc:
        st.error(f"Invalid settings: {settings_error_message(exc)}", icon=":material/error:")
        return
    try:
        render(settings)
    except ApiError as exc:
        show_api_error(exc)
    except Exception as exc:  # the last line of defence: a sentence on the page, never a traceback
        logger.exception("the page failed")
        st.error(
            f"Something went wrong while drawing the page ({exc.__class__.__name__}); "
            "the details are in the frontend's log.",
            icon=":material/error:",
        )
