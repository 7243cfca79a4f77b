"""Settings of the model server (the TorchServe handler and the KServe predictor), from `MODEL_SERVER_*`.

TorchServe's own knobs (ports, batching, workers) live in `model-server/config.properties` and its
`TS_*` variables; these are the ones our code reads. No torch here: validating them is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fashion_clip.envsettings import SettingsError, load_settings

ENV_PREFIX = "MODEL_SERVER_"


class ModelServerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", protected_namespaces=()
    )

    model_dir: Path | None = Field(
        None,
        description="model directory; unset means the .mar's extracted dir (TorchServe) or "
        "/home/model-server/model (KServe)",
    )
    model_name: str = Field("clip", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    precision: Literal["auto", "fp32", "bf16", "int8"] = "auto"
    threads: int = Field(0, ge=0, description="torch intra-op threads per worker; 0 keeps torch's default")


def load_model_server_settings(**overrides: object) -> ModelServerSettings:
    """Read and validate `MODEL_SERVER_*` now, failing with a message that names each bad variable."""
    return load_settings(ModelServerSettings, "model server", **overrides)


__all__ = ["ModelServerSettings", "SettingsError", "load_model_server_settings"]
