"""The embedder seam: one async interface over the in-process model and the model servers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict


class ModelInfo(BaseModel):
    """What the serving side says about its weights; the index's manifest must agree with it."""

    model_config = ConfigDict(protected_namespaces=())

    model_name: str
    model_id: str
    dim: int
    untrained: bool


class EmbedderClient(ABC):
    """Images (encoded bytes) and texts in, (n, dim) unit float32 vectors out.

    Raises `fashion_clip.errors.InvalidImage` / `UnsupportedMediaType` for a bad image and
    `ModelServerUnavailable` when the model cannot answer in time.
    """

    backend: str

    @abstractmethod
    async def embed_images(self, images: Sequence[bytes]) -> np.ndarray: ...

    @abstractmethod
    async def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    @abstractmethod
    async def info(self) -> ModelInfo:
        """Ask the model side who it is (loads the model on first use for `local`)."""

    async def aclose(self) -> None:  # noqa: B027 - optional for clients holding nothing
        """Release connections or threads."""
