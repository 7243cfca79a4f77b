"""Routes over the catalog items in the index: one item, its image, its neighbours, the categories."""

from __future__ import annotations

import mimetypes
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import FileResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from recommender.errors import NotFound
from recommender.routes.common import CategoryFilter, K, ranked, require_category
from recommender.routes.deps import HolderDep, MetricsDep
from recommender.schemas import Categories, ErrorBody, Item, Results

router = APIRouter(tags=["items"], responses={503: {"model": ErrorBody, "description": "not ready"}})

ItemId = Annotated[str, Path(min_length=1, max_length=200, description="the item's catalog id")]
NOT_FOUND = {404: {"model": ErrorBody, "description": "no item with this id"}}


def _unknown(item_id: str) -> NotFound:
    return NotFound(f"No item with id {item_id!r} in the index.")


@router.get("/items/{item_id}", response_model=Item, responses=NOT_FOUND)
async def get_item(item_id: ItemId, holder: HolderDep) -> Item:
    """Return one catalog item by id."""
    async with holder.lease() as snapshot:
        try:
            return Item.from_record(snapshot.bundle.item(item_id))
        except KeyError:
            raise _unknown(item_id) from None


@router.get(
    "/items/{item_id}/image",
    response_class=FileResponse,
    response_model=None,
    responses={**NOT_FOUND, 200: {"content": {"image/*": {}}}, 307: {"description": "the image's URL"}},
)
async def get_item_image(item_id: ItemId, holder: HolderDep) -> FileResponse | RedirectResponse:
    """Return an item's image from the index bundle, or redirect to its URL."""
    async with holder.lease() as snapshot:
        try:
            path = snapshot.bundle.image_path(item_id)
            record = snapshot.bundle.item(item_id)
        except KeyError:
            raise _unknown(item_id) from None
    if path is None:
        location = str(record.get("image") or "")
        if location.startswith(("https://", "http://")):
            return RedirectResponse(location, status_code=307)
        raise NotFound(f"Item {item_id!r} has no image.")
    # The file stays on disk after a swap (closing a bundle only unmaps its index), so serving it
    # after the lease is released is safe.
    if not await run_in_threadpool(path.is_file):
        raise NotFound(f"The image of item {item_id!r} is missing from the index bundle.")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(path, media_type=media_type)


@router.get("/items/{item_id}/similar", response_model=Results, responses=NOT_FOUND)
async def similar_items(
    item_id: ItemId, holder: HolderDep, metrics: MetricsDep, k: K = 10, category: CategoryFilter = None
) -> Results:
    """Find the items most like a catalog item, from its stored vector (no re-embedding)."""
    async with holder.lease() as snapshot:
        require_category(snapshot, category)
        try:
            vector = await run_in_threadpool(snapshot.bundle.vector, item_id)
        except KeyError:
            raise _unknown(item_id) from None
        return await ranked(snapshot, metrics, vector, k, category, exclude=(item_id,))


@router.get("/categories", response_model=Categories)
async def categories(holder: HolderDep) -> Categories:
    """List the categories of the items in the index."""
    async with holder.lease() as snapshot:
        return Categories(categories=snapshot.bundle.categories())
