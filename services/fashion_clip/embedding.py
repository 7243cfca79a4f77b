"""The one embedding core: load weights, preprocess, encode, normalise.

The TorchServe handler, the KServe predictor, the API's in-process embedder and the index builder
are thin adapters over `ClipEmbedder`, so index-time and query-time vectors always match.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from fashion_clip._openclip import PreprocessCfg, convert_weights_to_lp, image_transform_v2, open_clip
from fashion_clip.errors import InvalidInput
from fashion_clip.images import load_rgb
from fashion_clip.modeldir import WEIGHTS_FILE, ModelManifest, read_config, read_manifest

logger = logging.getLogger("fashion_clip.embedding")

Precision = Literal["auto", "fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "int8")


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX), where bf16 is a win."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str) -> str:
    """`auto` becomes bf16 where the CPU computes it natively, fp32 otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if cpu_supports_bf16() else "fp32"
    return precision


def build_model(model_dir: Path, precision: str = "fp32") -> torch.nn.Module:
    """Build the open_clip model from a model directory without a second copy of the weights.

    The architecture is created on the meta device (no memory, no random init) and the safetensors
    tensors are assigned into it, so the weights exist once in memory: for fp32 they stay the file's
    memory map (pages come in on the first forward); for bf16 each tensor is cast as it is assigned,
    to the dtype open_clip's `convert_weights_to_lp` gives it, and the few it keeps in fp32 are
    copied, so the map of the fp32 file is released and only the bf16 weights stay (measured: peak
    RSS of a bf16 load 1465 -> 1080 MiB with the venv's torch, see docs/model-server.md).
    """
    config = read_config(model_dir)
    model_cfg = dict(config["model_cfg"])
    if model_cfg.pop("custom_text", False):
        raise ValueError(f"{model_dir}: only standard CLIP configs are supported")
    if model_cfg.get("vision_cfg", {}).get("timm_model_name"):
        raise ValueError(f"{model_dir}: timm image towers are not supported, only open_clip's own")
    cast_dtype = torch.bfloat16 if precision == "bf16" else None
    with torch.device("meta"):
        model = open_clip.CLIP(**model_cfg, cast_dtype=cast_dtype)
    if precision == "bf16":
        convert_weights_to_lp(model, dtype=torch.bfloat16)  # on meta tensors: only the dtypes change
    dtypes = {name: tensor.dtype for name, tensor in model.state_dict(keep_vars=True).items()}
    weights = str(Path(model_dir) / WEIGHTS_FILE)
    if precision == "bf16":
        state = _load_cast(weights, dtypes)
    else:
        state = load_file(weights, device="cpu")
    model.load_state_dict(state, strict=True, assign=True)
    del state
    # The causal mask is a non-persistent buffer: it is not in the weights, so build it for real.
    model.attn_mask = (
        model.transformer.build_causal_mask()
        if hasattr(model.transformer, "build_causal_mask")
        else _causal_mask(model.context_length)
    )
    leftovers = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftovers:
        raise RuntimeError(f"{model_dir}: tensors missing from the weights file: {leftovers}")
    model.eval()
    model.requires_grad_(False)
    if precision == "int8":
        # Only the image tower: it is the hot path, and open_clip's text tower reads its cast dtype
        # from a Linear weight that dynamic quantisation replaces with a packed one.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's deprecation notice for qint8
            model.visual = torch.ao.quantization.quantize_dynamic(
                model.visual, {torch.nn.Linear}, dtype=torch.qint8
            )
    return model


def _load_cast(weights: str, dtypes: dict[str, torch.dtype]) -> dict[str, torch.Tensor]:
    """The file's tensors cast to `dtypes`, owning their memory. Each tensor is read through its own
    short-lived map: the pages read from the fp32 file leave our RSS as soon as the tensor is cast,
    so the peak is the cast weights plus one tensor, not the two copies side by side."""
    with safe_open(weights, framework="pt", device="cpu") as handle:
        names = list(handle.keys())
    state = {}
    for name in names:
        with safe_open(weights, framework="pt", device="cpu") as handle:
            tensor = handle.get_tensor(name)
            dtype = dtypes.get(name, tensor.dtype)
            state[name] = tensor.to(dtype) if tensor.dtype != dtype else tensor.clone()
            del tensor
    return state


def _causal_mask(size: int) -> torch.Tensor:
    return torch.full((size, size), float("-inf")).triu_(1)


class ClipEmbedder:
    """CLIP in process: images and texts in, L2-normalised float32 vectors out."""

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        precision: str = "auto",
        threads: int | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.manifest: ModelManifest = read_manifest(self.model_dir)
        self.precision = resolve_precision(precision)
        if threads:
            torch.set_num_threads(threads)
        config = read_config(self.model_dir)
        self.preprocess_cfg = PreprocessCfg(**config.get("preprocess_cfg", {}))
        # open_clip's own eval transform, never a copy of it.
        self.transform = image_transform_v2(self.preprocess_cfg, is_train=False)
        self.tokenizer = open_clip.get_tokenizer(f"local-dir:{self.model_dir}")
        self.model = build_model(self.model_dir, self.precision)
        self.input_dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        self.dim = int(config["model_cfg"]["embed_dim"])
        if self.dim != self.manifest.embed_dim:
            raise ValueError(
                f"{self.model_dir}: config embed_dim {self.dim} != manifest {self.manifest.embed_dim}"
            )
        logger.info(
            "loaded %s (%s, dim %d, precision %s, %d threads)%s",
            self.manifest.model_name,
            self.manifest.weights_source,
            self.dim,
            self.precision,
            torch.get_num_threads(),
            " - UNTRAINED weights, results are not meaningful" if self.manifest.untrained else "",
        )

    @property
    def input_size(self) -> int:
        """The side of the square the model sees."""
        size = self.preprocess_cfg.size
        return max(size) if isinstance(size, (tuple, list)) else int(size)

    def load_image(self, data: bytes) -> Image.Image:
        """Image bytes -> RGB pixels for this model: `load_rgb`, a JPEG decoded at `input_size`."""
        return load_rgb(data, min_size=self.input_size)

    @property
    def model_name(self) -> str:
        return self.manifest.model_name

    def info(self) -> dict:
        return {
            "model": self.manifest.model_name,
            "model_id": self.manifest.model_id,
            "weights_sha256": self.manifest.weights_sha256,
            "dim": self.dim,
            "untrained": self.manifest.untrained,
            "precision": self.precision,
            "preprocess": asdict(self.preprocess_cfg),
        }

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """RGB PIL images -> a batch tensor, by open_clip's eval transform for this model."""
        return torch.stack([self.transform(image) for image in images])

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        features = self.model.encode_image(pixels.to(self.input_dtype))
        return F.normalize(features.float(), dim=-1).numpy()

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """RGB PIL images (see `fashion_clip.images.load_rgb`) -> (n, dim) unit float32 vectors."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_pixels(self.preprocess(images))

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (n, dim) unit float32 vectors through the same model's text tower."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise InvalidInput("Text queries must be non-empty strings.")
        tokens = self.tokenizer(list(texts))
        features = self.model.encode_text(tokens)
        return F.normalize(features.float(), dim=-1).numpy()
