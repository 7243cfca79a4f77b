"""Operational routes: liveness, readiness, what is being served, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response

from recommender.errors import NotReady
from recommender.routes.deps import HolderDep, MetricsDep, SettingsDep
from recommender.schemas import EmbedderView, ErrorBody, Health, Info, Readiness

router = APIRouter(tags=["operations"])

UNTRAINED_WARNING = (
    "This deployment serves untrained (randomly initialised) CLIP weights: the similarity scores and "
    "rankings are not meaningful. Install pretrained weights and rebuild the index for real results."
)

# The manifest's checksum list and skip report are long and of no use to a client.
_MANIFEST_HIDDEN = ("files", "skipped")


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": ErrorBody, "description": "not loaded, or index and model disagree"}},
)
async def readyz(holder: HolderDep) -> Readiness:
    """Readiness: the index is loaded and agrees with the model (503 with the reason otherwise)."""
    snapshot = holder.current
    if snapshot is None:
        raise NotReady(holder.reason)
    return Readiness(model_id=snapshot.model.model_id, dim=snapshot.bundle.dim, items=len(snapshot.bundle))


@router.get("/info", response_model=Info)
async def info(holder: HolderDep, settings: SettingsDep) -> Info:
    """Describe the model and index being served, and warn when the weights are untrained."""
    bundle = holder.bundle
    index = None
    if bundle is not None:
        manifest = bundle.manifest
        index = {key: value for key, value in manifest.items() if key not in _MANIFEST_HIDDEN}
        index["skipped_count"] = len(manifest.get("skipped") or [])
    model = holder.model
    untrained = bool(
        (model is not None and model.untrained) or (bundle is not None and bundle.model.get("untrained"))
    )
    return Info(
        ready=holder.ready,
        reason=None if holder.ready else holder.reason,
        untrained=untrained,
        warning=UNTRAINED_WARNING if untrained else None,
        embedder=EmbedderView(backend=settings.embedder.backend, model_name=settings.embedder.model_name),
        model=model,
        index=index,
    )


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics: requests and latency per route, time per query stage."""
    return Response(metrics.render(), media_type=metrics.content_type)
