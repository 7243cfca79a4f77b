"""One catalog item as a pydantic model: the fields every component relies on, extras kept."""

from __future__ import annotations

import math
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Ids end up in URL paths (`/items/{id}/image`) and in file names inside the bundle (`images/<id>.jpg`),
# so they are restricted to characters that need no escaping in either place.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
ID_MAX_LENGTH = 128

REQUIRED_FIELDS = ("id", "title", "category", "color", "price", "image")
URL_SCHEMES = ("http", "https")


def is_url(image: str) -> bool:
    """True when a catalog's `image` is an absolute http(s) URL rather than a relative path."""
    parts = urlsplit(image)
    return parts.scheme in URL_SCHEMES and bool(parts.netloc)


class CatalogItem(BaseModel):
    """One row of a catalog's metadata file.

    `image` is a path relative to the metadata file's folder, or an absolute http(s) URL. Fields beyond
    the required ones (brand, pattern, sizes, ...) are kept as they are and travel into the index.
    """

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True, frozen=True)

    id: str = Field(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)
    title: str = Field(min_length=1)
    category: str = Field(min_length=1)
    color: str = Field(min_length=1)
    price: float = Field(ge=0)
    image: str = Field(min_length=1)

    @field_validator("price")
    @classmethod
    def _finite_price(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("price must be a finite number")
        return value

    @field_validator("image")
    @classmethod
    def _relative_path_or_url(cls, value: str) -> str:
        if is_url(value):
            return value
        if "://" in value:
            raise ValueError(f"only http and https image URLs are supported, got {value!r}")
        if "\\" in value:
            raise ValueError(f"use '/' as the path separator in image paths, got {value!r}")
        path = PurePosixPath(value)
        # A catalog must not be able to make the index builder read (and copy) files outside it.
        if path.is_absolute() or ".." in path.parts:
            raise ValueError(
                f"image must be a path inside the catalog folder or an http(s) URL, got {value!r}"
            )
        return value

    @property
    def image_is_url(self) -> bool:
        return is_url(self.image)

    def record(self) -> dict:
        """Every field, required and extra, as plain JSON-ready data."""
        return self.model_dump(mode="json")
