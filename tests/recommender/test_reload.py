"""Hot reload on the real server: POST /admin/reload and SIGHUP swap bundles under load without a
single failed request; bundles that disagree with the model, or are broken, are refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from recommender.index import mismatch

from .conftest import ADMIN_TOKEN, IMAGE_URL, PER_CATEGORY, Api, api_env, start_api

pytestmark = pytest.mark.slow

ITEM = "t-shirt-red-solid"  # the first catalog item: in the full bundle and in every-other-item half
FULL = 9 * PER_CATEGORY
HALF = FULL // 2
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def point(link: Path, target: Path) -> None:
    """Repoint a symlink atomically (a new link renamed over the old), as a deploy would."""
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    os.replace(tmp, link)


@pytest.fixture(scope="module")
def current_link(tmp_path_factory: pytest.TempPathFactory, index_bundle: Path) -> Path:
    link = tmp_path_factory.mktemp("deploy") / "current"
    link.symlink_to(index_bundle)
    return link


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, current_link: Path, tiny_model: Path) -> Iterator[Api]:
    """RECOMMENDER_INDEX_DIR is a symlink a deploy repoints; the admin token is set."""
    api = start_api(
        tmp_path_factory.mktemp("reload-api"),
        api_env(current_link, tiny_model, RECOMMENDER_ADMIN_TOKEN=ADMIN_TOKEN),
    )
    yield api
    api.stop()


@pytest.fixture
def http(api: Api, current_link: Path, index_bundle: Path) -> Iterator[httpx.Client]:
    """Each test starts and ends on the full bundle."""
    with api.client() as client:
        yield client
        point(current_link, index_bundle)
        assert client.post("/admin/reload", headers=AUTH).status_code == 200


def items_served(http: httpx.Client) -> int:
    return http.get("/readyz").json()["items"]


def reload(http: httpx.Client, index_dir: Path | None = None) -> httpx.Response:
    body = {"index_dir": str(index_dir)} if index_dir else None
    return http.post("/admin/reload", headers=AUTH, json=body)


class Load:
    """Clients sending a mix of requests back to back, recording every status."""

    def __init__(self, url: str, photo: bytes, clients: int = 4) -> None:
        self.url = url
        self.photo = photo
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: Counter[int | str] = Counter()
        self.done = [0] * clients
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(clients)]

    def _request(self, client: httpx.Client, n: int) -> httpx.Response:
        kind = (n + self.done[n]) % 4
        if kind == 0:
            return client.post("/recommend", params={"k": 5}, files={"file": ("p.jpg", self.photo)})
        if kind == 1:
            return client.get(f"/items/{ITEM}/similar", params={"k": 5, "category": "dress"})
        if kind == 2:
            return client.get("/search", params={"q": "a red t-shirt", "k": 5})
        return client.get(f"/items/{ITEM}")

    def _run(self, n: int) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stop.is_set():
                try:
                    status: int | str = self._request(client, n).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with self.lock:
                    self.statuses[status] += 1
                    self.done[n] += 1

    def wait_for_progress(self, each: int = 2) -> None:
        """Block until every client has finished `each` more requests: the swaps interleave with load."""
        start = list(self.done)
        while any(now - then < each for now, then in zip(self.done, start, strict=True)):
            assert all(t.is_alive() for t in self.threads)
            time.sleep(0.01)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)


def test_hot_swap_under_load_fails_no_request(
    api: Api,
    http: httpx.Client,
    catalog: Path,
    index_bundle: Path,
    half_bundle: Path,
    current_link: Path,
    other_model_bundle: Path,
) -> None:
    photo = (catalog / "images" / f"{ITEM}.jpg").read_bytes()
    swaps = 0
    with Load(api.url, photo) as load:
        load.wait_for_progress()
        for _ in range(3):
            response = reload(http, half_bundle)
            assert (response.status_code, response.json()["items"]) == (200, HALF)
            load.wait_for_progress()
            assert reload(http, index_bundle).json()["items"] == FULL
            load.wait_for_progress()
            # A refused bundle in the middle of it changes nothing for the clients either.
            assert reload(http, other_model_bundle).status_code == 409
            load.wait_for_progress()
            # The deploy way: repoint the configured symlink, then SIGHUP.
            point(current_link, half_bundle)
            api.signal(signal.SIGHUP)
            while items_served(http) != HALF:
                time.sleep(0.05)
            load.wait_for_progress()
            point(current_link, index_bundle)
            api.signal(signal.SIGHUP)
            while items_served(http) != FULL:
                time.sleep(0.05)
            load.wait_for_progress()
            swaps += 4
    assert swaps == 12
    assert sum(load.statuses.values()) >= 4 * 2 * 13
    assert dict(load.statuses) == {200: sum(load.statuses.values())}


def test_reload_without_a_body_rereads_the_configured_folder(
    http: httpx.Client, current_link: Path, half_bundle: Path
) -> None:
    point(current_link, half_bundle)
    response = reload(http)
    body = response.json()
    assert response.status_code == 200
    assert (body["status"], body["index_dir"], body["dim"], body["items"]) == (
        "reloaded",
        str(half_bundle),
        64,
        HALF,
    )
    assert http.get("/info").json()["index"]["item_count"] == HALF


def _expected_mismatch(bundle_path: Path, served_model: dict) -> str:
    from fashion_clip.clients.base import ModelInfo
    from fashion_clip.index.bundle import IndexBundle

    bundle = IndexBundle.load(bundle_path)
    try:
        return mismatch(bundle, ModelInfo(**served_model)) + " The current index keeps serving."
    finally:
        bundle.close()


@pytest.mark.parametrize("variant", ["other_model_bundle", "other_dim_bundle"])
def test_reload_refuses_a_bundle_of_another_model(
    http: httpx.Client, variant: str, request: pytest.FixtureRequest
) -> None:
    path = request.getfixturevalue(variant)
    served_model = http.get("/info").json()["model"]
    response = reload(http, path)
    assert (response.status_code, response.json()) == (
        409,
        {"error": "index_rejected", "message": _expected_mismatch(path.resolve(), served_model)},
    )
    assert items_served(http) == FULL
    assert http.get(f"/items/{ITEM}/similar").status_code == 200


def test_reload_refuses_a_tampered_or_missing_bundle(
    http: httpx.Client, index_bundle: Path, tmp_path: Path
) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(index_bundle, tampered)
    lines = (tampered / "items.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    lines[0] = json.dumps({**first, "price": 0.01})
    (tampered / "items.jsonl").write_text("\n".join(lines) + "\n")
    response = reload(http, tampered)
    assert response.status_code == 409
    assert response.json()["error"] == "index_rejected"
    assert response.json()["message"].startswith(
        f"The index bundle at {tampered} was refused and the current one keeps serving: Index bundle {tampered}: "
        "items.jsonl has sha256 "
    )
    missing = reload(http, tmp_path / "nothing-here")
    assert missing.status_code == 409
    assert missing.json()["message"].startswith(
        f"The index bundle at {tmp_path / 'nothing-here'} was refused and the current one keeps serving: No index bundle at"
    )
    assert items_served(http) == FULL
    assert http.get(f"/items/{ITEM}").json()["price"] == first["price"]


def test_reloads_are_counted(http: httpx.Client, other_model_bundle: Path) -> None:
    def count(result: str) -> float:
        for line in http.get("/metrics").text.splitlines():
            if line.startswith(f'recommender_index_reloads_total{{result="{result}"}}'):
                return float(line.split()[-1])
        return 0.0

    refused, swapped = count("refused"), count("swapped")
    assert reload(http, other_model_bundle).status_code == 409
    assert reload(http).status_code == 200
    assert (count("refused") - refused, count("swapped") - swapped) == (1, 1)


def test_an_item_with_a_url_image_redirects_to_it(http: httpx.Client, url_image_bundle: Path) -> None:
    assert reload(http, url_image_bundle).status_code == 200
    image = http.get(f"/items/{ITEM}/image", follow_redirects=False)
    assert (image.status_code, image.headers["location"]) == (307, IMAGE_URL)
    assert http.get(f"/items/{ITEM}").json()["image_url"] == f"/items/{ITEM}/image"
    assert http.get("/items/dress-red-solid/image").headers["content-type"] == "image/jpeg"
