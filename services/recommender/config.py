"""Settings of the recommender API, from `RECOMMENDER_*` (nested with `__`, as the chart renders them)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fashion_clip.clients.config import EmbedderSettings
from fashion_clip.envsettings import SettingsError
from fashion_clip.envsettings import load_settings as _load_settings

ENV_PREFIX = "RECOMMENDER_"

# Multipart framing (boundaries, part headers) on top of the file itself: the body limit is the
# upload limit plus this, and the file part is then checked against the upload limit exactly.
MULTIPART_OVERHEAD_BYTES = 64 * 1024

# Shorter bearer tokens are guessable; the chart generates 32 random characters.
MIN_ADMIN_TOKEN_LENGTH = 16
SECRET_FIELDS = frozenset({"admin_token"})


class RecommenderSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", protected_namespaces=()
    )

    host: str = "0.0.0.0"
    port: int = Field(8000, ge=1, le=65535)
    limit_concurrency: int = Field(0, ge=0, description="uvicorn's limit on concurrent connections; 0 = none")
    index_dir: Path = Field(Path("data/index"), description="the index bundle folder")
    max_upload_bytes: int = Field(10 * 1024 * 1024, gt=0, description="uploads above this answer 413")
    admin_token: SecretStr | None = Field(
        None, description="bearer token for POST /admin/reload; unset = off"
    )
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("index_dir")
    @classmethod
    def _index_dir_exists(cls, value: Path) -> Path:
        if not value.is_dir():
            raise ValueError(f"no index bundle folder at {value} (build one with `make index`)")
        return value

    @field_validator("admin_token")
    @classmethod
    def _admin_token_strong(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None  # an empty variable means "off", as unset does
        if len(value.get_secret_value()) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_ADMIN_TOKEN_LENGTH} characters (or unset to disable)")
        return value

    @model_validator(mode="after")
    def _local_backend_usable(self) -> RecommenderSettings:
        embedder = self.embedder
        if embedder.backend != "local":
            return self
        # The API image installs no torch: say so now rather than at the first request.
        if importlib.util.find_spec("torch") is None:
            raise ValueError(
                f"{ENV_PREFIX}EMBEDDER__BACKEND=local needs torch (install fashion-clip[model]); "
                "this install has none: use torchserve or kserve"
            )
        if not (embedder.model_dir / "manifest.json").is_file():
            raise ValueError(
                f"{ENV_PREFIX}EMBEDDER__MODEL_DIR: no installed model at {embedder.model_dir} "
                "(run `python model-server/model_installer.py --tiny` or set the variable)"
            )
        return self

    @property
    def max_body_bytes(self) -> int:
        return self.max_upload_bytes + MULTIPART_OVERHEAD_BYTES


def load_settings(**overrides: object) -> RecommenderSettings:
    """Read and validate `RECOMMENDER_*` now, failing with a message that names each bad variable."""
    return _load_settings(RecommenderSettings, "recommender", secret_fields=SECRET_FIELDS, **overrides)


__all__ = ["RecommenderSettings", "SettingsError", "load_settings"]
