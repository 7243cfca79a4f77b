"""Domain errors shared by every component.

Each carries the HTTP status and the machine-readable code it maps to, so the API, the TorchServe
handler and the KServe predictor all answer the same way for the same fault.
"""


class FashionClipError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidImage(FashionClipError):
    """The bytes claim to be an image but cannot be decoded (truncated, corrupt, a decompression bomb)."""

    status = 400
    code = "invalid_image"


class UnsupportedMediaType(FashionClipError):
    """The bytes are not an image, or not one of the formats we accept."""

    status = 415
    code = "unsupported_media_type"


class InvalidInput(FashionClipError):
    """A request is malformed in a way that is not about image bytes (empty text, bad JSON...)."""

    status = 400
    code = "invalid_input"


class ModelServerUnavailable(FashionClipError):
    """The model server is down, slow past the timeout, or answered with a server error."""

    status = 503
    code = "model_server_unavailable"

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after
