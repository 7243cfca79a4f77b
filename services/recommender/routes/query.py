"""Routes that embed a query (an uploaded photo or a text) and search the index with it."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Query, UploadFile

from fashion_clip.errors import InvalidInput
from fashion_clip.images import check_image_header
from recommender.errors import PayloadTooLarge
from recommender.routes.common import CategoryFilter, K, ranked, require_category
from recommender.routes.deps import ClientDep, HolderDep, MetricsDep, SettingsDep
from recommender.schemas import ErrorBody, Prediction, Results

MAX_QUERY_CHARS = 1000
MAX_EXCLUDE = 1000

UPLOAD_ERRORS = {
    400: {"model": ErrorBody, "description": "truncated or corrupt image, or a decompression bomb"},
    413: {"model": ErrorBody, "description": "upload over RECOMMENDER_MAX_UPLOAD_BYTES"},
    415: {"model": ErrorBody, "description": "not an image, or an unsupported format"},
    503: {"model": ErrorBody, "description": "not ready, or the model server is down or slow"},
}

# Every route here reads a body only through this router, so the byte limit applies to uploads.
router = APIRouter(tags=["query"], responses=UPLOAD_ERRORS)

Upload = Annotated[UploadFile, File(description="a photo: JPEG, PNG, WebP, GIF, BMP or TIFF")]


async def _read_image(file: UploadFile, settings: SettingsDep, metrics: MetricsDep) -> bytes:
    limit = settings.max_upload_bytes
    # The body limit already stopped anything far over; the file itself is held to the exact limit.
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise PayloadTooLarge(f"The upload is larger than the limit of {limit} bytes.")
    with metrics.stage("decode"):  # the header check; the model side decodes the pixels
        check_image_header(data)
    return data


async def _embed_image(data: bytes, client: ClientDep, metrics: MetricsDep) -> np.ndarray:
    with metrics.stage("embed"):
        return (await client.embed_images([data]))[0]


@router.post("/predict", response_model=Prediction)
async def predict(
    file: Upload, holder: HolderDep, client: ClientDep, settings: SettingsDep, metrics: MetricsDep
) -> Prediction:
    """Embed an uploaded photo and return its vector with the model's identity."""
    async with holder.lease() as snapshot:
        data = await _read_image(file, settings, metrics)
        vector = await _embed_image(data, client, metrics)
        model = snapshot.model
        return Prediction(
            dim=int(vector.shape[0]),
            model=model.model_name,
            model_id=model.model_id,
            untrained=model.untrained,
            embedding=vector.tolist(),
        )


@router.post("/recommend", response_model=Results)
async def recommend(
    file: Upload,
    holder: HolderDep,
    client: ClientDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    k: K = 10,
    category: CategoryFilter = None,
    exclude: Annotated[list[str], Query(max_length=MAX_EXCLUDE, description="item ids to leave out")] = [],  # noqa: B006 - FastAPI copies defaults
) -> Results:
    """Find the catalog items that look most like an uploaded photo."""
    async with holder.lease() as snapshot:
        require_category(snapshot, category)
        data = await _read_image(file, settings, metrics)
        vector = await _embed_image(data, client, metrics)
        return await ranked(snapshot, metrics, vector, k, category, exclude)


@router.get(
    "/search", response_model=Results, responses={400: {"model": ErrorBody}, 503: {"model": ErrorBody}}
)
async def search(
    holder: HolderDep,
    client: ClientDep,
    metrics: MetricsDep,
    q: Annotated[str, Query(min_length=1, max_length=MAX_QUERY_CHARS, description="what to look for")],
    k: K = 10,
    category: CategoryFilter = None,
) -> Results:
    """Find the catalog items that best match a text description."""
    text = q.strip()
    if not text:
        raise InvalidInput("The query text is empty.")
    async with holder.lease() as snapshot:
        require_category(snapshot, category)
        with metrics.stage("embed"):
            vector = (await client.embed_texts([text]))[0]
        return await ranked(snapshot, metrics, vector, k, category)
