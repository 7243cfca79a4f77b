"""Fixtures for the UI: a real sample index for the tiny model, a real API (local embedder) and a real
Streamlit server on loopback ports, and a headless Chromium driven by Playwright."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from procs import LOOPBACK, Server, free_port, local_api_env
from procs import start_api as start_api_process

ROOT = Path(__file__).resolve().parents[2]
FRONTEND_DIR = ROOT / "frontend"
APP = FRONTEND_DIR / "app.py"
ARTIFACTS = ROOT / "artifacts" / "frontend"
# `streamlit run frontend/app.py` puts frontend/ on sys.path; the tests import the same modules.
sys.path.insert(0, str(FRONTEND_DIR))

CATALOG_SIZE = 360  # the sample generator's full grid: every category, colour and pattern once
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def sample_index(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory, venv_bin: Path) -> Path:
    """The sample catalog indexed with the tiny model, by the project's own command-line tools."""
    base = tmp_path_factory.mktemp("frontend-index")
    catalog, index = base / "catalog", base / "index"
    for command in (
        [venv_bin / "fashion-clip-sample-catalog", catalog, "--count", str(CATALOG_SIZE)],
        [venv_bin / "fashion-clip-build-index", catalog, "--out", index, "--backend", "local"]
        + ["--model-dir", tiny_model, "--precision", "fp32", "--no-progress"],
    ):
        subprocess.run([str(part) for part in command], check=True, capture_output=True, cwd=ROOT)
    return index


def start_api(index: Path, model_dir: Path, log_path: Path, ready: bool = True) -> tuple[Server, str]:
    """A real API on a free loopback port; waits for /readyz (or only /healthz when `ready` is False)."""
    server, url = start_api_process(local_api_env(index, model_dir), log_path, ready=ready)
    if not ready:
        try:
            # Settled once the model side has answered: then the API is ready or says why not.
            server.wait_until(
                lambda: httpx.get(f"{url}/info", timeout=5).json()["model"] is not None,
                timeout=180,
                what=f"GET {url}/info",
            )
        except BaseException:
            server.stop()
            raise
    return server, url


def start_ui(api_url: str, log_path: Path) -> tuple[Server, str]:
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(APP)]
    command += [
        "--server.headless=true",
        f"--server.address={LOOPBACK}",
        f"--server.port={port}",
        "--server.fileWatcherType=none",
        "--browser.gatherUsageStats=false",
        "--client.toolbarMode=viewer",
    ]
    server = Server(command, log_path, env={"FRONTEND_API_URL": api_url}, cwd=ROOT)
    url = f"http://{LOOPBACK}:{port}"
    try:
        server.wait_http(f"{url}/_stcore/health", timeout=120)
    except BaseException:
        server.stop()
        raise
    return server, url


@pytest.fixture(scope="session")
def api_url(sample_index: Path, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real recommender API (in-process tiny model) over the sample index."""
    server, url = start_api(sample_index, tiny_model, tmp_path_factory.mktemp("logs") / "api.log")
    yield url
    server.stop()


@pytest.fixture(scope="session")
def api(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def ui_url(api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server, url = start_ui(api_url, tmp_path_factory.mktemp("logs") / "ui.log")
    yield url
    server.stop()


@pytest.fixture(scope="session")
def launch_api(sample_index: Path, tiny_model: Path):
    """Start one more API over the sample index: `launch_api(log_path, model_dir=..., ready=...)`."""

    def launch(log_path: Path, model_dir: Path = tiny_model, ready: bool = True) -> tuple[Server, str]:
        return start_api(sample_index, model_dir, log_path, ready=ready)

    return launch


@pytest.fixture(scope="session")
def launch_ui():
    """Start one more Streamlit server: `launch_ui(api_url, log_path)`."""
    return start_ui


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Module-scoped: Playwright's sync API keeps an asyncio loop marked running in this thread
    while it is open, which breaks `asyncio.run` in every later test of the session."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Chromium (run `make system-deps`)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request: pytest.FixtureRequest) -> Iterator[object]:
    """A fresh page (fresh Streamlit session); a full-page screenshot lands in artifacts/frontend/."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    finally:
        context.close()
