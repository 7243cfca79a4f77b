"""`create_app(settings)`: the FastAPI application and its lifespan.

Start-up loads the index bundle (a broken bundle stops the process with the reason), then confirms
it against the model side in the background: /readyz answers 503 with the reason until the model
answers with the same model_id and dimension. SIGHUP reloads the bundle, as POST /admin/reload does.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fashion_clip import __version__
from fashion_clip.clients import make_client
from fashion_clip.clients.base import EmbedderClient
from recommender.config import RecommenderSettings, load_settings
from recommender.errors import ContentLengthLimit, install_error_handlers
from recommender.index import IndexHolder
from recommender.metrics import Metrics, MetricsMiddleware
from recommender.routes import admin, items, ops, query

logger = logging.getLogger("recommender")


def _install_sighup(holder: IndexHolder) -> bool:
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, holder.reload_in_background, "SIGHUP")
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no SIGHUP here
        logger.info("SIGHUP reload unavailable in this process; use POST /admin/reload")
        return False
    return True


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: RecommenderSettings = app.state.settings
    holder: IndexHolder = app.state.holder
    client: EmbedderClient = app.state.client
    logger.info(
        "starting: index %s, embedder %s (%s), upload limit %d bytes, admin routes %s",
        settings.index_dir,
        settings.embedder.backend,
        settings.embedder.model_dir if settings.embedder.backend == "local" else settings.embedder.url,
        settings.max_upload_bytes,
        "on" if settings.admin_token else "off",
    )
    # Before the (possibly long) bundle load: SIGHUP's default action would end the process.
    sighup = _install_sighup(holder)
    try:
        await holder.start()
        yield
    finally:
        if sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        await holder.aclose()
        await client.aclose()


def create_app(settings: RecommenderSettings | None = None) -> FastAPI:
    """Build the app. Nothing here touches the network or loads the model; the lifespan does."""
    settings = settings or load_settings()
    client = make_client(settings.embedder)
    metrics = Metrics()
    app = FastAPI(
        title="fashion-clip recommender",
        version=__version__,
        summary="Visual and text similarity search over a fashion catalog with CLIP and Annoy.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.client = client
    app.state.metrics = metrics
    app.state.holder = IndexHolder(settings.index_dir, client, metrics)
    install_error_handlers(app)
    # Uploads are held to the limit: the declared length first, then the bytes as they stream in.
    app.add_middleware(
        ContentLengthLimit, max_body_bytes=settings.max_body_bytes, max_upload_bytes=settings.max_upload_bytes
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: it also counts the 413s above
    app.include_router(query.router, max_body_size=settings.max_body_bytes)
    app.include_router(items.router)
    app.include_router(ops.router)
    app.include_router(admin.router, max_body_size=settings.max_body_bytes)
    return app
