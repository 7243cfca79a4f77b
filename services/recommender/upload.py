"""The API's check of an uploaded image: its header only, judged as `fashion_clip.images` judges it.

A full decode in the API cost ~0.5 ms plus a hop to a worker thread per upload, only to be done again
by the model side, which decodes every image through the same `decode_image`. The header (tens of
microseconds, so it runs on the event loop) already condemns most bad uploads: empty data, a
non-image, a format we do not take, a size over the pixel limit, a decompression bomb. Damage past the
header (a truncated or corrupt body) is found by the model side's decode and comes back as the same
400 `invalid_image` through every backend (the HTTP clients map the model server's error body back).
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from fashion_clip.errors import InvalidImage, UnsupportedMediaType
from fashion_clip.images import ALLOWED_FORMATS, MAX_IMAGE_PIXELS


def check_image_header(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> None:
    """Raise what `decode_image` would for anything its header shows; read no pixels.

    The messages are `decode_image`'s own, word for word (tests/recommender compare them), so a caller
    gets the same answer whether the API or the model server refused the image.
    """
    if not data:
        raise InvalidImage("The image is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:  # lazy: parses the header only
                if image.format not in ALLOWED_FORMATS:
                    raise UnsupportedMediaType(
                        f"Unsupported image format {image.format}; send one of "
                        f"{', '.join(sorted(ALLOWED_FORMATS))}."
                    )
                width, height = image.size
                if width * height > max_pixels:
                    raise InvalidImage(
                        f"The image is {width}x{height} pixels, over the limit of {max_pixels} pixels."
                    )
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaType("The data is not an image Pillow can identify.") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"The image is too large to decode safely: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"The image could not be decoded: {exc}") from exc
