"""Embedder clients: `make_client(settings)` picks local, TorchServe (REST) or KServe (OIP v2)."""

from __future__ import annotations

from fashion_clip.clients.base import EmbedderClient, ModelInfo
from fashion_clip.clients.config import EmbedderSettings


def make_client(settings: EmbedderSettings) -> EmbedderClient:
    if settings.backend == "local":
        from fashion_clip.clients.local import LocalEmbedderClient

        return LocalEmbedderClient(settings)
    if settings.backend == "torchserve":
        from fashion_clip.clients.torchserve import TorchServeClient

        return TorchServeClient(settings)
    from fashion_clip.clients.kserve import KServeClient

    return KServeClient(settings)


__all__ = ["EmbedderClient", "EmbedderSettings", "ModelInfo", "make_client"]
