"""The UI in a real headless Chromium against real Streamlit and the real API on loopback ports.

Result cards carry the CSS class `st-key-result-<id>` (from `st.container(key=...)`); the tests read
the ids back from the DOM and compare them with the API's own answer. Screenshots of every test land
in artifacts/frontend/.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.slow

CARDS = '[class*="st-key-result-"]'
WAIT_MS = 90_000  # a bound for a shared 2-core machine, not a speed claim


def card_ids(page: Page) -> list[str]:
    classes = page.locator(CARDS).evaluate_all("cards => cards.map(card => card.className)")
    return [re.search(r"st-key-result-(\S+)", names).group(1) for names in classes]


def wait_for_cards(page: Page, ids: list[str]) -> None:
    """Until the page shows exactly these cards: after a rerun Streamlit keeps the previous run's
    (as many) cards in the DOM for a moment, so a count alone does not tell the new answer is drawn."""
    page.wait_for_function(
        "ids => JSON.stringify([...document.querySelectorAll('[class*=\"st-key-result-\"]')]"
        ".map(card => card.className.match(/st-key-result-(\\S+)/)[1])) === JSON.stringify(ids)",
        arg=ids,
        timeout=WAIT_MS,
    )


def loaded_images(page: Page) -> int:
    """Images in result cards that the browser actually decoded."""
    return page.locator(f"{CARDS} img").evaluate_all(
        "images => images.filter(img => img.complete && img.naturalWidth > 0).length"
    )


def open_page(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.get_by_text("Search by photo")).to_be_visible(timeout=WAIT_MS)


def test_upload_shows_k_cards_with_images(
    page: Page, ui_url: str, api: httpx.Client, sample_index: Path
) -> None:
    query = sample_index / "images" / "dress-red-solid.jpg"
    open_page(page, ui_url)
    banner = page.locator(".st-key-untrained-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("Untrained model: results are not meaningful")
    expect(banner).to_contain_text("python model-server/model_installer.py")

    page.locator('input[type="file"]').set_input_files(str(query))
    expect(page.locator(CARDS)).to_have_count(8, timeout=WAIT_MS)
    expect(page.locator(".st-key-embedding-summary")).to_contain_text("dim 64")
    page.wait_for_function(
        f"document.querySelectorAll('{CARDS} img').length === 8 && "
        f"[...document.querySelectorAll('{CARDS} img')].every(img => img.complete && img.naturalWidth > 0)",
        timeout=WAIT_MS,
    )
    assert loaded_images(page) == 8
    expected = api.post(
        "/recommend", params={"k": 8}, files={"file": (query.name, query.read_bytes())}
    ).json()
    assert card_ids(page) == [item["id"] for item in expected["items"]]
    # The top card is the uploaded catalog photo itself, with its title, price and a score of 1.
    first = page.locator(CARDS).first
    expect(first).to_contain_text("Red dress")
    expect(first).to_contain_text("similarity 1.000")


def test_text_search_then_more_like_this(page: Page, ui_url: str, api: httpx.Client) -> None:
    open_page(page, ui_url)
    page.get_by_label("Search by words").fill("red summer dress")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_text("8 items matching “red summer dress”")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator(CARDS)).to_have_count(8)
    searched = api.get("/search", params={"q": "red summer dress", "k": 8}).json()
    wait_for_cards(page, [item["id"] for item in searched["items"]])
    assert card_ids(page) == [item["id"] for item in searched["items"]]

    clicked = searched["items"][1]
    page.locator(f".st-key-result-{clicked['id']}").get_by_role("button", name="More like this").click()
    expect(page.get_by_text(f"8 items like “{clicked['title']}”")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator(CARDS)).to_have_count(8)
    similar = api.get(f"/items/{clicked['id']}/similar", params={"k": 8}).json()
    wait_for_cards(page, [item["id"] for item in similar["items"]])
    assert card_ids(page) == [item["id"] for item in similar["items"]]


def test_api_stopped_shows_a_readable_error(
    page: Page, launch_api, launch_ui, tmp_path: Path, artifacts: Path
) -> None:
    api_server, api_url = launch_api(tmp_path / "api.log")
    ui_server, ui_url = launch_ui(api_url, tmp_path / "ui.log")
    try:
        open_page(page, ui_url)
        expect(page.locator(".st-key-untrained-banner")).to_be_visible()
        expect(page.locator(".st-key-api-error")).to_have_count(0)

        api_server.stop()
        page.reload()
        error = page.locator(".st-key-api-error")
        expect(error).to_be_visible(timeout=WAIT_MS)
        expect(error).to_contain_text(f"The API at {api_url} is not reachable")
        expect(error).to_contain_text("FRONTEND_API_URL")
        assert "Traceback" not in page.content()
        expect(page.locator(".st-key-untrained-banner")).to_have_count(0)
        page.screenshot(path=str(artifacts / "api-stopped.png"), full_page=True)
    finally:
        ui_server.stop()
        api_server.stop()
