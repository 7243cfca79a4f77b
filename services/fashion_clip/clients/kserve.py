"""KServe over the Open Inference Protocol v2: `POST {url}/v2/models/{model_name}/infer`.

One request per batch: a BYTES input `input` whose elements are base64 images or texts (input
parameter `content_type`), answered by one FP32 output `embedding` of shape [n, dim] and response
`parameters` naming the model (docs/contracts.md).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np

from fashion_clip.clients.base import ModelInfo
from fashion_clip.clients.http import HttpEmbedderClient, malformed
from fashion_clip.clients.torchserve import INFO_PROBE_TEXT

OUTPUT_NAME = "embedding"


class KServeClient(HttpEmbedderClient):
    backend = "kserve"

    @property
    def _path(self) -> str:
        return f"/v2/models/{self.settings.model_name}/infer"

    async def _infer(self, data: list[str], content_type: str) -> tuple[np.ndarray, dict]:
        payload = {
            "inputs": [
                {
                    "name": "input",
                    "shape": [len(data)],
                    "datatype": "BYTES",
                    "data": data,
                    "parameters": {"content_type": content_type},
                }
            ]
        }
        answer = await self._post(self._path, images=content_type == "image", json=payload)
        try:
            output = next(o for o in answer["outputs"] if o.get("name") == OUTPUT_NAME)
            shape = [int(n) for n in output["shape"]]
            vectors = np.asarray(output["data"], dtype=np.float32).reshape(shape)
        except (KeyError, TypeError, ValueError, StopIteration) as exc:
            raise malformed(self.base_url, f"no usable '{OUTPUT_NAME}' output ({exc!r})") from exc
        if vectors.ndim != 2 or vectors.shape[0] != len(data):
            raise malformed(self.base_url, f"output of shape {vectors.shape} for {len(data)} inputs")
        return vectors, answer.get("parameters") or {}

    async def embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        if not images:
            raise ValueError("embed_images needs at least one image")
        data = [base64.b64encode(image).decode("ascii") for image in images]
        vectors, _ = await self._infer(data, "image")
        return vectors

    async def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            raise ValueError("embed_texts needs at least one text")
        vectors, _ = await self._infer(list(texts), "text")
        return vectors

    async def info(self) -> ModelInfo:
        vectors, parameters = await self._infer([INFO_PROBE_TEXT], "text")
        try:
            return ModelInfo(
                model_name=parameters["model"],
                model_id=parameters["model_id"],
                dim=vectors.shape[1],
                untrained=parameters["untrained"],
            )
        except (KeyError, ValueError) as exc:
            raise malformed(self.base_url, f"no model identity in the response parameters ({exc})") from exc
