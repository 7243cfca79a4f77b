"""Query parameters and the search step shared by the routes that return ranked items."""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated

import numpy as np
from fastapi import Query
from starlette.concurrency import run_in_threadpool

from fashion_clip.errors import InvalidInput, ModelServerUnavailable
from recommender.index import Snapshot
from recommender.metrics import Metrics
from recommender.schemas import ItemResult, Results

MAX_K = 100

K = Annotated[int, Query(ge=1, le=MAX_K, description="how many items to return")]
CategoryFilter = Annotated[
    str | None, Query(min_length=1, max_length=200, description="only items of this category")
]


def require_category(snapshot: Snapshot, category: str | None) -> None:
    """An unknown category is a mistake worth telling, not an empty result."""
    if category is not None and category not in snapshot.bundle.categories():
        known = ", ".join(snapshot.bundle.categories())
        raise InvalidInput(f"Unknown category {category!r}; the index has: {known}.")


async def ranked(
    snapshot: Snapshot,
    metrics: Metrics,
    vector: np.ndarray,
    k: int,
    category: str | None = None,
    exclude: Collection[str] = (),
) -> Results:
    """Annoy's k nearest items (in a worker thread: a query walks the trees on the CPU)."""
    if vector.shape[-1] != snapshot.bundle.dim:
        # The model server was swapped under us for one with another dimension.
        raise ModelServerUnavailable(
            f"The model side now answers with {vector.shape[-1]}-dimensional vectors but the index holds "
            f"{snapshot.bundle.dim}-dimensional ones; the deployment is inconsistent."
        )
    with metrics.stage("search"):
        hits = await run_in_threadpool(snapshot.bundle.search, vector, k, category, tuple(exclude))
    return Results(
        items=[ItemResult.from_hit(item, score) for item, score in hits],
        k=k,
        model=snapshot.model.model_name,
        untrained=snapshot.model.untrained,
    )
