#!/usr/bin/env python
"""KServe predictor for CLIP embeddings: a `kserve.Model` over the same `ClipEmbedder` as TorchServe.

    python model-server/kserve_predictor.py --http_port 8080              # image default: 0.0.0.0
    python model-server/kserve_predictor.py --http_host 127.0.0.1 --http_port 8085

v1 `POST /v1/models/clip:predict` with `{"instances": [{"b64": ".."} | {"text": ".."}]}` answers
`{"predictions": [[..], ..]}`. v2 `POST /v2/models/clip/infer` takes one BYTES input `input` whose
parameter `content_type` is `image` (elements are base64 images) or `text`, and answers one FP32
output `embedding` of shape [n, dim] with `parameters` {model, model_id, untrained}. A bad input is
400 with `{"error": "<code>", "message": ".."}`. gRPC is off unless `--enable_grpc true`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import logging
import sys
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kserve
import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse
from kserve import InferOutput, InferRequest, InferResponse
from kserve import model_server as kserve_model_server

from fashion_clip.embedding import ClipEmbedder
from fashion_clip.errors import FashionClipError, InvalidInput
from fashion_clip.settings import SettingsError, load_model_server_settings

logger = logging.getLogger("fashion_clip.model_server")

DEFAULT_MODEL_DIR = Path("/home/model-server/model")
V2_INPUT = "input"
V2_OUTPUT = "embedding"
CONTENT_TYPES = ("image", "text")


def decode_b64_image(value: str | bytes, where: str, embedder: ClipEmbedder):
    """A base64 string -> RGB pixels via `embedder.load_image`, or an error naming which element was
    bad."""
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{where}: 'b64' is not valid base64: {exc}") from exc
    try:
        return embedder.load_image(data)
    except FashionClipError as exc:
        exc.message = f"{where}: {exc.message}"
        raise


class ClipModel(kserve.Model):
    """Embeds images and texts; both protocols share one embedder and one encoding thread."""

    def __init__(self, name: str, model_dir: Path, precision: str = "auto", threads: int = 0) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.precision = precision
        self.threads = threads
        self.embedder: ClipEmbedder | None = None
        # One thread: a forward pass already uses every core torch has, and encoding off the event
        # loop keeps health checks answering while a batch runs.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode")

    def load(self) -> bool:
        self.embedder = ClipEmbedder(self.model_dir, precision=self.precision, threads=self.threads or None)
        self.ready = True
        return self.ready

    @property
    def answer_parameters(self) -> dict[str, Any]:
        info = self.embedder.info()
        return {"model": info["model"], "model_id": info["model_id"], "untrained": info["untrained"]}

    def get_input_types(self) -> list[dict]:
        return [{"name": V2_INPUT, "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict]:
        return [{"name": V2_OUTPUT, "datatype": "FP32", "shape": [-1, self.embedder.dim]}]

    async def predict(
        self,
        payload: dict | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict | InferResponse:
        if isinstance(payload, InferRequest):
            return await self._run(self._predict_v2, payload)
        if isinstance(payload, dict):
            return await self._run(self._predict_v1, payload)
        raise InvalidInput("Send the request as JSON with Content-Type: application/json.")

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _encode(
        self, images: list, image_rows: list[int], texts: list[str], text_rows: list[int]
    ) -> np.ndarray:
        """Images and texts in one call each, reassembled in request order."""
        vectors = np.zeros((len(images) + len(texts), self.embedder.dim), dtype=np.float32)
        if images:
            vectors[image_rows] = self.embedder.encode_images(images)
        if texts:
            vectors[text_rows] = self.embedder.encode_texts(texts)
        return vectors

    def _predict_v1(self, payload: dict) -> dict:
        instances = payload.get("instances")
        if not isinstance(instances, list) or not instances:
            raise InvalidInput('Expected {"instances": [{"b64": ...} | {"text": ...}, ...]}.')
        images, image_rows, texts, text_rows = [], [], [], []
        for row, instance in enumerate(instances):
            where = f"instances[{row}]"
            if isinstance(instance, dict) and isinstance(instance.get("b64"), str):
                images.append(decode_b64_image(instance["b64"], where, self.embedder))
                image_rows.append(row)
            elif isinstance(instance, dict) and isinstance(instance.get("text"), str):
                if not instance["text"].strip():
                    raise InvalidInput(f"{where}: 'text' must be a non-empty string.")
                texts.append(instance["text"])
                text_rows.append(row)
            else:
                raise InvalidInput(f'{where}: expected {{"b64": "<base64 image>"}} or {{"text": "..."}}.')
        return {"predictions": self._encode(images, image_rows, texts, text_rows).tolist()}

    def _predict_v2(self, request: InferRequest) -> InferResponse:
        inputs = {infer_input.name: infer_input for infer_input in request.inputs}
        if V2_INPUT not in inputs:
            raise InvalidInput(f"Expected one BYTES input named '{V2_INPUT}', got {sorted(inputs)}.")
        infer_input = inputs[V2_INPUT]
        if infer_input.datatype != "BYTES":
            raise InvalidInput(f"Input '{V2_INPUT}' must be BYTES, got {infer_input.datatype}.")
        content_type = (infer_input.parameters or {}).get("content_type")
        content_type = getattr(content_type, "string_param", content_type)  # gRPC wraps parameters
        if content_type not in CONTENT_TYPES:
            raise InvalidInput(
                f"Input '{V2_INPUT}' needs parameter content_type 'image' or 'text', got {content_type!r}."
            )
        elements = list(_flatten(infer_input.data))
        if not elements:
            raise InvalidInput(f"Input '{V2_INPUT}' is empty.")
        rows = list(range(len(elements)))
        if content_type == "image":
            images = [
                decode_b64_image(value, f"{V2_INPUT}[{row}]", self.embedder)
                for row, value in enumerate(elements)
            ]
            vectors = self._encode(images, rows, [], [])
        else:
            texts = [value.decode("utf-8") if isinstance(value, bytes) else value for value in elements]
            for row, text in enumerate(texts):
                if not isinstance(text, str) or not text.strip():
                    raise InvalidInput(f"{V2_INPUT}[{row}]: texts must be non-empty strings.")
            vectors = self._encode([], [], texts, rows)
        output = InferOutput(name=V2_OUTPUT, shape=list(vectors.shape), datatype="FP32")
        output.set_data_from_numpy(vectors, binary_data=False)
        return InferResponse(
            response_id=request.id or "",
            model_name=self.name,
            infer_outputs=[output],
            parameters=self.answer_parameters,
        )


def _flatten(data: Any):
    if isinstance(data, (list, tuple)):
        for item in data:
            yield from _flatten(item)
    else:
        yield data


async def domain_error_handler(_: Request, exc: FashionClipError) -> JSONResponse:
    """Bad input answers 400 with the project's error shape, as the TorchServe handler does."""
    status = 400 if exc.status < 500 else exc.status
    return JSONResponse(status_code=status, content={"error": exc.code, "message": exc.message})


class ClipModelServer(kserve.ModelServer):
    """`kserve.ModelServer` with a choice of listen address.

    kserve 0.21 binds its REST server to 0.0.0.0 unconditionally. That is right in a pod, but a
    developer machine or a test should listen on loopback only. `start()` builds the REST server's
    uvicorn config and then calls `setup_event_loop()` before serving, so the host is set there.
    """

    def __init__(self, http_host: str = "0.0.0.0", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.http_host = http_host

    def setup_event_loop(self) -> None:
        if self._rest_server is not None:
            self._rest_server.config.host = self.http_host
        super().setup_event_loop()


def parse_args(argv: Sequence[str] | None, default_model_name: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(parents=[kserve_model_server.parser], description=__doc__)
    parser.add_argument("--http_host", default="0.0.0.0", help="address the REST server listens on")
    # gRPC off unless asked for: clients use REST, and an unused listener is attack surface.
    parser.set_defaults(enable_grpc=False, model_name=default_model_name)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = load_model_server_settings()
    except SettingsError as exc:
        sys.exit(f"error: {exc}")
    args = parse_args(argv, settings.model_name)
    if args.workers != 1:
        sys.exit("error: --workers must be 1: one process holds the model; scale with replicas.")
    model_dir = settings.model_dir or DEFAULT_MODEL_DIR
    model = ClipModel(args.model_name, model_dir, precision=settings.precision, threads=settings.threads)
    try:
        model.load()
    except (FileNotFoundError, ValueError) as exc:
        sys.exit(f"error: cannot load the model from {model_dir} (set MODEL_SERVER_MODEL_DIR): {exc}")
    kserve_model_server.app.add_exception_handler(FashionClipError, domain_error_handler)
    # kserve 0.21's own app uses FastAPI's deprecated ORJSONResponse; the warning is about kserve's
    # code and would repeat on every request.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    ClipModelServer(
        http_host=args.http_host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        enable_grpc=args.enable_grpc,
        workers=1,
    ).start([model])
    return 0


if __name__ == "__main__":
    sys.exit(main())
