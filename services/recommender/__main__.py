"""`python -m recommender`: validate the settings, then serve the API with uvicorn."""

from __future__ import annotations

import logging
import sys

import uvicorn

from recommender.app import create_app
from recommender.config import SettingsError, load_settings

logger = logging.getLogger("recommender")

# Kubernetes waits 30 s by default after SIGTERM; finish in-flight requests well within it.
GRACEFUL_SHUTDOWN_SECONDS = 20


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except SettingsError as exc:
        logger.error("%s", exc)
        sys.exit(2)
    logging.getLogger().setLevel(settings.log_level.upper())
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        limit_concurrency=settings.limit_concurrency or None,
        log_level=settings.log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        # Behind a Kubernetes Service / Cloud Run the peer is the proxy; its headers are trusted
        # only from the addresses in FORWARDED_ALLOW_IPS (uvicorn's default: 127.0.0.1).
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
