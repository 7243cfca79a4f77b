"""TorchServe handler for CLIP embeddings: a thin, batch-aware adapter over `ClipEmbedder`.

Each request in a batch is raw image bytes, JSON `{"b64": "<base64 image>"}` or JSON
`{"text": "..."}`; images and texts may share a batch. Each gets its own answer:
`{"embedding": [...], "dim", "model", "model_id", "untrained"}`, or, for a request that cannot be
encoded, status 400 and `{"error": "<code>", "message": "..."}` while the rest of the batch succeeds.

The worker imports the installed `fashion_clip` package: TorchServe starts workers with the
interpreter that ran `torchserve` (it passes `sys.executable` to the frontend as `--python`), so
starting TorchServe from the environment where the project is installed is all it takes.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ts.torch_handler.base_handler import BaseHandler

from fashion_clip.embedding import ClipEmbedder
from fashion_clip.errors import FashionClipError, InvalidInput
from fashion_clip.settings import load_model_server_settings

logger = logging.getLogger("fashion_clip.model_server")

# The contract answers every bad request with 400, whatever the code in the body says: for the
# caller, a non-image and a corrupt image are both "fix your input".
BAD_REQUEST = 400


def request_body(row: Any) -> Any:
    """The payload of one request as TorchServe hands it: `data` or `body`, else the only field."""
    if isinstance(row, dict):
        for key in ("data", "body"):
            if row.get(key) is not None:
                return row[key]
        if len(row) == 1:  # a multipart upload under another field name
            return next(iter(row.values()))
    raise InvalidInput("The request has no body: send image bytes, or JSON with 'b64' or 'text'.")


def parse_request(body: Any) -> tuple[str, Any]:
    """One request body -> ("image", bytes) or ("text", str), or a domain error saying what is wrong.

    TorchServe parses `application/json` bodies itself and decodes `text/*` ones to str; anything
    else arrives as bytes. An image never starts with `{`, so bytes that do are read as JSON.
    """
    if isinstance(body, str):
        # A `text/*` body that decoded as UTF-8: plain text is not an image, and a bare string is
        # not the text-query format either.
        if not body.lstrip().startswith("{"):
            raise InvalidInput('Send a text query as JSON {"text": "..."} and an image as raw bytes.')
        body = body.encode("utf-8")
    if isinstance(body, (bytes, bytearray)):
        body = bytes(body)
        if not body.lstrip()[:1] == b"{":
            return "image", body
        try:
            body = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidInput(f"The body looks like JSON but does not parse: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidInput("Send raw image bytes, or a JSON object with 'b64' or 'text'.")
    if "b64" in body:
        if not isinstance(body["b64"], str):
            raise InvalidInput("'b64' must be a base64 string.")
        try:
            return "image", base64.b64decode(body["b64"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput(f"'b64' is not valid base64: {exc}") from exc
    if "text" in body:
        text = body["text"]
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput("'text' must be a non-empty string.")
        return "text", text
    raise InvalidInput("The JSON object needs a 'b64' (image) or a 'text' field.")


class ClipHandler(BaseHandler):
    """One `ClipEmbedder` per worker, built from the files the .mar extracted into `model_dir`."""

    # Nested, not top level: TorchServe requires exactly one class defined at the handler module's top.
    @dataclass
    class Batch:
        """One TorchServe batch after decoding: which rows are images, which are texts, which failed."""

        size: int
        image_rows: list[int] = field(default_factory=list)
        pixels: torch.Tensor | None = None
        text_rows: list[int] = field(default_factory=list)
        texts: list[str] = field(default_factory=list)
        errors: dict[int, FashionClipError] = field(default_factory=dict)

    def initialize(self, context) -> None:
        settings = load_model_server_settings()
        model_dir = settings.model_dir or Path(context.system_properties["model_dir"])
        self.embedder = ClipEmbedder(
            model_dir, precision=settings.precision, threads=settings.threads or None
        )
        info = self.embedder.info()
        self.answer = {
            "dim": info["dim"],
            "model": info["model"],
            "model_id": info["model_id"],
            "untrained": info["untrained"],
        }
        if context.model_name != settings.model_name:
            # The route is TorchServe's registration (load_models in config.properties), not ours.
            logger.warning(
                "TorchServe serves this model as %r but MODEL_SERVER_MODEL_NAME is %r",
                context.model_name,
                settings.model_name,
            )
        self.context = context
        self.initialized = True
        logger.info(
            "clip handler ready: %s, dim %d, %s, %d threads",
            info["model_id"],
            info["dim"],
            info["precision"],
            torch.get_num_threads(),
        )

    def preprocess(self, data: list[Any]) -> ClipHandler.Batch:
        """Decode every request (`ClipEmbedder.load_image`: `load_rgb`, JPEGs at the model's input size)
        and run open_clip's transform; keep failures per row."""
        batch = self.Batch(size=len(data))
        images = []
        for row, request in enumerate(data):
            try:
                kind, value = parse_request(request_body(request))
                if kind == "image":
                    images.append(self.embedder.load_image(value))
                    batch.image_rows.append(row)
                else:
                    batch.texts.append(value)
                    batch.text_rows.append(row)
            except FashionClipError as exc:
                batch.errors[row] = exc
        if images:
            batch.pixels = self.embedder.preprocess(images)
        return batch

    def inference(
        self, batch: ClipHandler.Batch, *args: Any, **kwargs: Any
    ) -> tuple[ClipHandler.Batch, np.ndarray, np.ndarray]:
        """Both towers once per batch: every image in one forward, every text in another."""
        image_vectors = (
            self.embedder.encode_pixels(batch.pixels)
            if batch.pixels is not None
            else np.zeros((0, self.embedder.dim), np.float32)
        )
        text_vectors = self.embedder.encode_texts(batch.texts)
        return batch, image_vectors, text_vectors

    def postprocess(self, result: tuple[ClipHandler.Batch, np.ndarray, np.ndarray]) -> list[bytes]:
        """One JSON answer per request, in request order; failed rows get 400 and the error body.

        Serialised here, compactly, with the C encoder: handed a dict, TorchServe 0.12 dumps it with
        `indent=2`, which takes json's pure-Python encoder (~0.3 ms for 512 floats) and a body half
        as large again.
        """
        batch, image_vectors, text_vectors = result
        answers: list[dict | None] = [None] * batch.size
        for rows, vectors in ((batch.image_rows, image_vectors), (batch.text_rows, text_vectors)):
            for row, vector in zip(rows, vectors, strict=True):
                answers[row] = {"embedding": vector.tolist(), **self.answer}
        for row, exc in batch.errors.items():
            self.context.set_response_status(BAD_REQUEST, "Bad Request", idx=row)
            answers[row] = {"error": exc.code, "message": exc.message}
        for row in range(batch.size):
            self.context.set_response_content_type(row, "application/json")
        logger.info(
            "batch of %d: %d images, %d texts, %d rejected",
            batch.size,
            len(batch.image_rows),
            len(batch.text_rows),
            len(batch.errors),
        )
        return [json.dumps(answer, separators=(",", ":")).encode() for answer in answers]
