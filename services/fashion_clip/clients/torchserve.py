"""TorchServe over REST: `POST {url}/predictions/{model_name}`, one request per image or text.

A batch is sent as concurrent requests, not one big body: TorchServe's dynamic batching then groups
them (with other callers' requests) into one forward pass, and a bad image fails only itself on the
server side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np

from fashion_clip.clients.base import ModelInfo
from fashion_clip.clients.http import HttpEmbedderClient, malformed
from fashion_clip.errors import FashionClipError

# A short text is the cheapest thing to embed; its answer carries the model's identity.
INFO_PROBE_TEXT = "a photo of a garment"


class TorchServeClient(HttpEmbedderClient):
    backend = "torchserve"

    @property
    def _path(self) -> str:
        return f"/predictions/{self.settings.model_name}"

    async def _predict(self, *, images: bool, **kwargs: Any) -> dict:
        answer = await self._post(self._path, images=images, **kwargs)
        if not isinstance(answer, dict) or "embedding" not in answer:
            raise malformed(self.base_url, f"expected an object with 'embedding', got {str(answer)[:120]}")
        return answer

    def _vector(self, answer: dict) -> np.ndarray:
        try:
            vector = np.asarray(answer["embedding"], dtype=np.float32)
            dim = int(answer["dim"])
        except (KeyError, TypeError, ValueError) as exc:
            raise malformed(self.base_url, f"bad embedding or dim ({exc})") from exc
        if vector.shape != (dim,):
            raise malformed(self.base_url, f"embedding of shape {vector.shape} but dim {dim}")
        return vector

    async def _gather(self, calls: list) -> list[dict]:
        if len(calls) == 1:  # the common query: no task to wrap it in, no gather to wait on
            return [await calls[0]]
        # Every request runs to its end (each is bounded by the timeout); then the first domain
        # error wins, so a bad image reports as 400/415 even if another request also failed.
        answers = await asyncio.gather(*calls, return_exceptions=True)
        errors = [a for a in answers if isinstance(a, BaseException)]
        if errors:
            raise next((e for e in errors if isinstance(e, FashionClipError)), errors[0])
        return answers

    def _stack(self, answers: list[dict]) -> np.ndarray:
        vectors = [self._vector(answer) for answer in answers]
        if len({v.shape for v in vectors}) > 1:
            raise malformed(self.base_url, "embeddings of different dimensions in one batch")
        return np.stack(vectors)

    async def embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        if not images:
            raise ValueError("embed_images needs at least one image")
        calls = [
            self._predict(images=True, content=data, headers={"Content-Type": "application/octet-stream"})
            for data in images
        ]
        return self._stack(await self._gather(calls))

    async def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            raise ValueError("embed_texts needs at least one text")
        calls = [self._predict(images=False, json={"text": text}) for text in texts]
        return self._stack(await self._gather(calls))

    async def info(self) -> ModelInfo:
        answer = await self._predict(images=False, json={"text": INFO_PROBE_TEXT})
        self._vector(answer)
        try:
            return ModelInfo(
                model_name=answer["model"],
                model_id=answer["model_id"],
                dim=answer["dim"],
                untrained=answer["untrained"],
            )
        except (KeyError, ValueError) as exc:
            raise malformed(self.base_url, f"no model identity in the answer ({exc})") from exc
