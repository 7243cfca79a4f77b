"""The model in process, for the no-cluster default and for index builds without a server."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fashion_clip.clients.base import EmbedderClient, ModelInfo
from fashion_clip.clients.config import EmbedderSettings


class LocalEmbedderClient(EmbedderClient):
    backend = "local"

    def __init__(self, settings: EmbedderSettings) -> None:
        self.settings = settings
        # One thread: torch already uses every core for one forward, and a single worker keeps
        # encode calls from fighting over them (the in-process twin of TorchServe's one worker).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self._embedder = None

    def _model(self):
        if self._embedder is None:
            from fashion_clip.embedding import ClipEmbedder  # torch only when `local` is used

            self._embedder = ClipEmbedder(
                self.settings.model_dir,
                precision=self.settings.precision,
                threads=self.settings.threads or None,
            )
        return self._embedder

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        model = self._model()
        return model.encode_images([model.load_image(data) for data in images])

    async def embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        return await self._run(self._embed_images, list(images))

    async def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return await self._run(lambda: self._model().encode_texts(list(texts)))

    async def info(self) -> ModelInfo:
        info = await self._run(lambda: self._model().info())
        return ModelInfo(
            model_name=info["model"], model_id=info["model_id"], dim=info["dim"], untrained=info["untrained"]
        )

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
