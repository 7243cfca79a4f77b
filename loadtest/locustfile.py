"""Locust users for the recommender API: one class per endpoint, and one that mixes them.

Run it through `make loadtest` / `python loadtest/run.py` (which also draws the plots and applies the
SLO gate), or directly:

    locust -f loadtest/locustfile.py --headless -u 1 -r 1 -t 60s -H http://127.0.0.1:8000 MixedUser

With `-u 1` Locust starts exactly one user of one class, so to cover every endpoint at concurrency 1
(Cloud Run's `containerConcurrency: 1`) name `MixedUser`, which sends the three requests one after the
other; name `RecommendUser`, `SearchUser` or `SimilarUser` to load one endpoint alone. Tags
(`-T recommend search similar`) narrow `MixedUser` to some of its tasks.

What the users send is found once, at start, outside the measured traffic: item ids from `/search`,
and query photos from `--image-dir` or, by default, the catalog's own photos from `/items/{id}/image`.
"""

from __future__ import annotations

import csv
import logging
import mimetypes
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
import gevent.lock
import requests
from locust import HttpUser, events, tag
from locust.env import Environment
from locust.exception import StopUser
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

logger = logging.getLogger("loadtest")

# Queries a shopper types; a mix of category, colour and style so the text tower sees varied input.
SEARCH_QUERIES = (
    "red summer dress",
    "black leather jacket",
    "white sneakers",
    "blue denim jeans",
    "striped t-shirt",
    "wool winter coat",
    "floral skirt",
    "running shoes",
    "silk scarf",
    "grey hoodie",
    "high heels",
    "linen shirt",
    "handbag",
    "checked trousers",
    "knitted sweater",
    "sunglasses",
)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
# Discovery calls are not part of the measurement; generous because a cold Cloud Run instance may
# load the model first.
DISCOVERY_TIMEOUT_SECONDS = 60.0
# Exit code of the Locust process when the test could not even start (no ids, no images).
SETUP_FAILED_EXIT_CODE = 3
REQUEST_LOG_COLUMNS = ("timestamp", "name", "method", "response_time_ms", "ok", "status", "users")


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    # On the parser itself, not a group: Locust's own add_argument knows is_secret and shows these
    # options in its web UI.
    parser.add_argument(
        "--image-dir",
        env_var="LOADTEST_IMAGE_DIR",
        default="",
        help="Folder of query photos for /recommend (default: fetch catalog photos from the API)",
    )
    parser.add_argument(
        "--image-count",
        env_var="LOADTEST_IMAGE_COUNT",
        type=int,
        default=8,
        help="How many photos to use (from --image-dir, or fetched from the API)",
    )
    parser.add_argument(
        "--k", env_var="LOADTEST_K", type=int, default=10, help="Results asked for per request (k)"
    )
    parser.add_argument(
        "--max-requests",
        env_var="LOADTEST_MAX_REQUESTS",
        type=int,
        default=0,
        help="Stop after this many requests in total (0: only --run-time bounds the run)",
    )
    parser.add_argument(
        "--request-log",
        env_var="LOADTEST_REQUEST_LOG",
        default="",
        help="CSV file that receives one row per request (time, name, latency, users)",
    )
    parser.add_argument(
        "--think-time",
        env_var="LOADTEST_THINK_TIME",
        type=float,
        default=0.0,
        help="Seconds a user waits between requests (0: back to back, the worst case for concurrency 1)",
    )
    parser.add_argument(
        "--bearer-token",
        env_var="LOADTEST_BEARER_TOKEN",
        default="",
        is_secret=True,  # masked in Locust's web UI
        help="Sent as `Authorization: Bearer ...` (a private Cloud Run service: gcloud auth print-identity-token)",
    )
    parser.add_argument(
        "--step-seconds",
        env_var="LOADTEST_STEP_SECONDS",
        type=float,
        default=20.0,
        help="Seconds per stage of the step shape (loadtest/step_shape.py)",
    )
    parser.add_argument(
        "--step-users",
        env_var="LOADTEST_STEP_USERS",
        default="1,2,4",
        help="User counts of the step shape's stages, comma-separated",
    )


@dataclass
class Corpus:
    """What the users send, discovered once per Locust process and shared by every user."""

    ids: list[str] = field(default_factory=list)
    images: list[tuple[str, bytes, str]] = field(default_factory=list)  # (file name, bytes, media type)
    lock: gevent.lock.Semaphore = field(default_factory=gevent.lock.Semaphore)


_corpus = Corpus()


class SetupError(RuntimeError):
    """The API did not give the load test what it needs to start (ids, photos)."""


def _discover_ids(host: str, headers: dict[str, str]) -> list[str]:
    # Any text query ranks the whole index, so one answer usually holds every id needed; a few more
    # queries only matter when a category filter or an empty answer gets in the way.
    ids: list[str] = []
    for query in SEARCH_QUERIES[:3]:
        response = requests.get(
            f"{host}/search", params={"q": query, "k": 50}, headers=headers, timeout=DISCOVERY_TIMEOUT_SECONDS
        )
        if response.status_code != 200:
            raise SetupError(f"GET /search answered {response.status_code}: {response.text[:300]}")
        ids.extend(str(item["id"]) for item in response.json()["items"] if str(item["id"]) not in ids)
        if ids:
            return ids
    raise SetupError("GET /search found no items: is the index empty?")


def _images_from_dir(folder: Path, count: int) -> list[tuple[str, bytes, str]]:
    if not folder.is_dir():
        raise SetupError(f"--image-dir {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SetupError(f"--image-dir {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return [
        (p.name, p.read_bytes(), mimetypes.guess_type(p.name)[0] or "application/octet-stream")
        for p in files[:count]
    ]


def _images_from_api(
    host: str, headers: dict[str, str], ids: list[str], count: int
) -> list[tuple[str, bytes, str]]:
    images: list[tuple[str, bytes, str]] = []
    for item_id in ids:
        response = requests.get(
            f"{host}/items/{item_id}/image", headers=headers, timeout=DISCOVERY_TIMEOUT_SECONDS
        )
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        # Catalogs may point at remote photos the API cannot serve; those items are skipped.
        if response.status_code == 200 and media_type.startswith("image/"):
            suffix = mimetypes.guess_extension(media_type) or ".img"
            images.append((f"{item_id}{suffix}", response.content, media_type))
        if len(images) >= count:
            break
    if not images:
        raise SetupError(f"GET /items/{{id}}/image gave no photo for the {len(ids)} ids found")
    return images


def auth_headers(options: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {options.bearer_token}"} if options.bearer_token else {}


def corpus(environment: Environment, *, need_images: bool) -> Corpus:
    """Fill the shared corpus on first use; later callers wait for the first and reuse it."""
    options = environment.parsed_options
    host = environment.host.rstrip("/")
    headers = auth_headers(options)
    with _corpus.lock:
        if not _corpus.ids:
            _corpus.ids = _discover_ids(host, headers)
            logger.info("found %d item ids through /search", len(_corpus.ids))
        if need_images and not _corpus.images:
            count = max(1, options.image_count)
            if options.image_dir:
                _corpus.images = _images_from_dir(Path(options.image_dir), count)
                source = options.image_dir
            else:
                _corpus.images = _images_from_api(host, headers, _corpus.ids, count)
                source = f"{host}/items/{{id}}/image"
            logger.info("using %d query photos from %s", len(_corpus.images), source)
    return _corpus


class ApiUser(HttpUser):
    """Shared setup: the corpus, k, think time. Not run by itself."""

    abstract = True

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.k = options.k
        self.client.headers.update(auth_headers(options))
        try:
            # After -T/-E filtering, so `-T search` never downloads photos it will not send.
            self.corpus = corpus(self.environment, need_images=recommend in self.tasks)
        except (SetupError, requests.RequestException, KeyError, ValueError) as exc:
            logger.error("load test setup failed: %s (host %s)", exc, self.environment.host)
            self.environment.process_exit_code = SETUP_FAILED_EXIT_CODE
            gevent.spawn(self.environment.runner.quit)
            raise StopUser() from exc

    def wait_time(self) -> float:
        think = self.environment.parsed_options.think_time
        return random.uniform(0.5 * think, 1.5 * think) if think > 0 else 0.0


@tag("recommend")
def recommend(user: ApiUser) -> None:
    """POST /recommend with one of the query photos (multipart `file`)."""
    name, data, media_type = random.choice(user.corpus.images)
    user.client.post(
        "/recommend", params={"k": user.k}, files={"file": (name, data, media_type)}, name="/recommend"
    )


@tag("search")
def search(user: ApiUser) -> None:
    """GET /search with a shopper's text query."""
    user.client.get("/search", params={"q": random.choice(SEARCH_QUERIES), "k": user.k}, name="/search")


@tag("similar")
def similar(user: ApiUser) -> None:
    """GET /items/{id}/similar for an item found at start."""
    item_id = random.choice(user.corpus.ids)
    user.client.get(f"/items/{item_id}/similar", params={"k": user.k}, name="/items/{id}/similar")


class RecommendUser(ApiUser):
    """Only photo queries: the heaviest endpoint (decode + image tower + Annoy)."""

    tasks = [recommend]


class SearchUser(ApiUser):
    """Only text queries (text tower + Annoy)."""

    tasks = [search]


class SimilarUser(ApiUser):
    """Only item-to-item queries (Annoy alone, no model call)."""

    tasks = [similar]


class MixedUser(ApiUser):
    """The three endpoints in equal share from one user: covers all of them at concurrency 1."""

    tasks = [recommend, search, similar]


# Per-request log and the request-count bound -------------------------------------------------------


@events.init.add_listener
def _watch_requests(environment: Environment, **_: Any) -> None:
    """Log every request to --request-log (for the plots) and stop at --max-requests."""
    options = environment.parsed_options
    if options is None:  # Environment made by a library caller, not the locust command
        return
    writer = None
    if options.request_log:
        path = Path(options.request_log)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "w", newline="")  # closed when Locust quits
        environment.events.quitting.add_listener(lambda **_: handle.close())
        writer = csv.writer(handle)
        writer.writerow(REQUEST_LOG_COLUMNS)
    stopping = False

    def on_request(
        request_type: str, name: str, response_time: float, exception: BaseException | None, **kwargs: Any
    ) -> None:
        nonlocal stopping
        if writer is not None:
            status = getattr(kwargs.get("response"), "status_code", 0) or 0
            users = environment.runner.user_count if environment.runner else 0
            ok = int(exception is None)
            writer.writerow(
                [f"{time.time():.3f}", name, request_type, f"{response_time:.3f}", ok, status, users]
            )
        limit = options.max_requests
        if limit and environment.stats.total.num_requests >= limit:
            if not stopping:
                stopping = True
                logger.info("--max-requests %d reached, shutting down", limit)
                # From a fresh greenlet: this hook runs inside a user greenlet, which quit() kills.
                gevent.spawn(environment.runner.quit)
            # Stop this user before it sends another request while the quit is under way.
            raise StopUser()

    environment.events.request.add_listener(on_request)


@events.quitting.add_listener
def _write_final_csv(environment: Environment, **_: Any) -> None:
    """Rewrite Locust's stats, failures and exceptions CSVs with the final numbers.

    Locust rewrites them once a second while running and not at exit, so the last second of a run
    is missing from them (locustio/locust#1806, #2299) while the HTML report has it.
    """
    options = environment.parsed_options
    if options is None or not options.csv_prefix:
        return
    stats_csv = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (
        ("_stats.csv", stats_csv.requests_csv),
        ("_failures.csv", stats_csv.failures_csv),
        ("_exceptions.csv", stats_csv.exceptions_csv),
    ):
        with open(f"{options.csv_prefix}{suffix}", "w", newline="") as handle:
            write(csv.writer(handle))
