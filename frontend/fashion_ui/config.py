"""Frontend settings: one pydantic-settings object, env prefix `FRONTEND_`."""

from __future__ import annotations

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fashion_clip.envsettings import describe


class FrontendSettings(BaseSettings):
    """Where the API is and how long to wait for it."""

    model_config = SettingsConfigDict(env_prefix="FRONTEND_", env_nested_delimiter="__", extra="ignore")

    api_url: str = Field(default="http://127.0.0.1:8000", description="base URL of the recommender API")
    timeout_seconds: float = Field(default=30.0, gt=0, description="per API call")
    default_k: int = Field(default=8, ge=1, le=100, description="results shown before the user changes it")
    max_upload_mb: int = Field(
        default=10, ge=1, description="largest upload the page accepts (the API's limit)"
    )

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value


def settings_error_message(exc: Exception) -> str:
    """One sentence per invalid variable, named as the user sets it (FRONTEND_...)."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    return "; ".join(describe(FrontendSettings, exc, show_input=False))
