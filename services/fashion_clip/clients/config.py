"""Which embedder the API and the index builder talk to, and how."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, HttpUrl


class EmbedderSettings(BaseModel):
    """Nested under the API's settings as `RECOMMENDER_EMBEDDER__*`."""

    backend: Literal["local", "torchserve", "kserve"] = "local"
    url: HttpUrl = HttpUrl("http://127.0.0.1:8080")
    model_name: str = "clip"
    timeout_seconds: float = Field(10.0, gt=0)
    model_dir: Path = Path("model-server/model")
    precision: Literal["auto", "fp32", "bf16", "int8"] = "auto"
    threads: int = Field(0, ge=0, description="torch threads for `local`; 0 keeps torch's default")
    id_token: bool = False
    id_token_audience: str | None = None
