"""Every error the API answers, and the one place exceptions become status codes.

The body is always `{"error": code, "message": sentence}`: domain errors (fashion_clip.errors and the
API's own below) carry their status and code; FastAPI's validation errors become 422
`validation_error`; Starlette's HTTP errors (unknown route, wrong method, body over the limit) keep
their status with our code; anything else is a logged 500 `internal_error`.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from fashion_clip.errors import FashionClipError, ModelServerUnavailable

logger = logging.getLogger("recommender")

DEFAULT_RETRY_AFTER = 5


class NotFound(FashionClipError):
    status = 404
    code = "not_found"


class NotReady(FashionClipError):
    """The index is not loaded, or does not agree with the model, or the model is not reachable yet."""

    status = 503
    code = "not_ready"

    def __init__(self, message: str, retry_after: int = DEFAULT_RETRY_AFTER) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PayloadTooLarge(FashionClipError):
    status = 413
    code = "payload_too_large"


class Unauthorized(FashionClipError):
    status = 401
    code = "unauthorized"


class Forbidden(FashionClipError):
    status = 403
    code = "forbidden"


class IndexRejected(FashionClipError):
    """A new index bundle failed to load or disagrees with the model; the old one keeps serving."""

    status = 409
    code = "index_rejected"


# Starlette raises bare HTTP errors for what happens before our code runs.
_HTTP_CODES = {
    400: "invalid_input",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    503: "not_ready",
}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


def _retry_headers(exc: Exception) -> dict[str, str] | None:
    if isinstance(exc, NotReady | ModelServerUnavailable):
        return {"Retry-After": str(exc.retry_after)}
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    return None


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FashionClipError)
    if exc.status >= 500:
        logger.warning(
            "%s %s -> %d %s: %s", request.method, request.url.path, exc.status, exc.code, exc.message
        )
    return error_response(exc.status, exc.code, exc.message, _retry_headers(exc))


def _describe(error: dict) -> str:
    where = {"query": "query parameter", "path": "path parameter", "body": "form field", "header": "header"}
    loc = list(error.get("loc", ()))
    kind = where.get(str(loc[0]), str(loc[0])) if loc else "request"
    name = ".".join(str(part) for part in loc[1:])
    return f"{kind} {name}: {error.get('msg', 'invalid')}".replace(" :", ":")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = "; ".join(_describe(error) for error in exc.errors())
    return error_response(422, "validation_error", f"Invalid request: {details}.")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 404:
        message = f"No route {request.method} {request.url.path}."
    elif status == 405:
        message = f"{request.method} is not allowed on {request.url.path}."
    elif status == 413:
        message = _too_large_message(request.app.state.settings.max_upload_bytes)
    else:
        message = exc.detail if isinstance(exc.detail, str) else "The request could not be processed."
    headers = dict(exc.headers or {})
    return error_response(status, _HTTP_CODES.get(status, "http_error"), message, headers or None)


def _too_large_message(limit: int) -> str:
    return f"The request body is larger than the upload limit of {limit} bytes."


class ContentLengthLimit:
    """Refuse a body whose declared Content-Length is over the limit before reading a byte of it.

    Starlette's per-route `max_body_size` (set on the upload routes) counts the bytes as they stream
    in, which covers chunked bodies; for a declared length it answers in plain text, so the
    declared case is answered here first, in our error shape.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = Headers(scope=scope).get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_body_bytes:
                response = error_response(413, "payload_too_large", _too_large_message(self.max_upload_bytes))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "An internal error occurred; it has been logged.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(FashionClipError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
