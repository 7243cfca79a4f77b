"""Admin routes, behind `RECOMMENDER_ADMIN_TOKEN` (off when it is unset)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Body, Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from recommender.errors import Forbidden, Unauthorized
from recommender.routes.deps import HolderDep, SettingsDep
from recommender.schemas import ErrorBody, Reloaded, ReloadRequest

_bearer = HTTPBearer(auto_error=False, description="RECOMMENDER_ADMIN_TOKEN")


def require_admin(
    settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    if settings.admin_token is None:
        raise Forbidden("Admin routes are disabled: set RECOMMENDER_ADMIN_TOKEN to enable them.")
    expected = settings.admin_token.get_secret_value().encode()
    given = credentials.credentials.encode() if credentials is not None else b""
    if not hmac.compare_digest(given, expected):  # constant time: no timing oracle on the token
        raise Unauthorized("Send the admin token as `Authorization: Bearer <RECOMMENDER_ADMIN_TOKEN>`.")


router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin)],
    responses={
        401: {"model": ErrorBody, "description": "missing or wrong bearer token"},
        403: {"model": ErrorBody, "description": "admin routes disabled"},
    },
)


@router.post(
    "/reload",
    response_model=Reloaded,
    responses={
        409: {"model": ErrorBody, "description": "the new bundle is broken or disagrees with the model"},
        503: {"model": ErrorBody, "description": "the model server cannot confirm the new bundle"},
    },
)
async def reload_index(
    holder: HolderDep, request: Annotated[ReloadRequest | None, Body()] = None
) -> Reloaded:
    """Load an index bundle, check it against the model and swap it in without dropping a request."""
    snapshot = await holder.reload(request.index_dir if request else None)
    return Reloaded(
        index_dir=str(snapshot.path),
        model_id=snapshot.model.model_id,
        dim=snapshot.bundle.dim,
        items=len(snapshot.bundle),
    )
