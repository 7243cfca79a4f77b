"""The on-disk layout of an installed model. No torch here: the API reads manifests too.

A model directory holds exactly what open_clip's `local-dir:` schema reads, plus our manifest:

    open_clip_config.json        {"model_cfg": {...}, "preprocess_cfg": {...}}
    open_clip_model.safetensors  the weights (never a pickle)
    manifest.json                who made these weights and how (see `ModelManifest`)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict

CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
MANIFEST_FILE = "manifest.json"


class ModelManifest(BaseModel):
    """What an index, the API and the UI need to know about the weights being served."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_name: str
    weights_source: str
    embed_dim: int
    weights_sha256: str
    untrained: bool
    open_clip_version: str
    created_at: str

    @property
    def model_id(self) -> str:
        """A short identity that changes whenever the weights do: `ViT-B-32@1a2b3c4d5e6f`."""
        return f"{self.model_name}@{self.weights_sha256[:12]}"


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(model_dir: Path) -> ModelManifest:
    path = Path(model_dir) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"No {MANIFEST_FILE} in {model_dir}: install a model with model-server/model_installer.py"
        )
    return ModelManifest.model_validate_json(path.read_text())


def read_config(model_dir: Path) -> dict:
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No {CONFIG_FILE} in {model_dir}")
    config = json.loads(path.read_text())
    if "model_cfg" not in config:
        raise ValueError(f"{path} has no 'model_cfg' section")
    return config
