"""The embedding core on the tiny CLIP: open_clip's transform and model, unit vectors, precisions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from open_clip.model import convert_weights_to_lp
from PIL import Image

from fashion_clip.embedding import ClipEmbedder, build_model, resolve_precision
from fashion_clip.errors import InvalidInput
from fashion_clip.images import to_rgb


@pytest.fixture(scope="module")
def embedder(tiny_model: Path) -> ClipEmbedder:
    return ClipEmbedder(tiny_model, precision="fp32")


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    sizes = [(256, 256), (320, 200), (180, 400), (224, 224), (64, 90)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def test_preprocessing_is_open_clips_eval_transform(embedder: ClipEmbedder, tiny_model: Path, images):
    _, _, reference = open_clip.create_model_and_transforms(f"local-dir:{tiny_model}")
    expected = torch.stack([reference(image) for image in images])
    assert torch.equal(embedder.preprocess(images), expected)
    assert tuple(expected.shape) == (5, 3, 224, 224)


def test_vectors_equal_open_clips_own_model(embedder: ClipEmbedder, tiny_model: Path, images):
    """Loading on the meta device with assigned safetensors gives exactly open_clip's model."""
    reference = open_clip.create_model(f"local-dir:{tiny_model}").eval()
    with torch.no_grad():
        expected = reference.encode_image(embedder.preprocess(images))
    expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    np.testing.assert_allclose(embedder.encode_images(images), expected, atol=1e-6)


def test_image_vectors_are_unit_float32_of_model_dim(embedder: ClipEmbedder, images):
    vectors = embedder.encode_images(images)
    assert vectors.dtype == np.float32
    assert vectors.shape == (5, 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_text_vectors_are_unit_and_match_image_dim(embedder: ClipEmbedder):
    vectors = embedder.encode_texts(["red summer dress", "black leather boots"])
    assert vectors.shape == (2, embedder.dim) == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])


def test_a_batch_equals_the_same_images_one_by_one(embedder: ClipEmbedder, images):
    batch = embedder.encode_images(images)
    single = np.concatenate([embedder.encode_images([image]) for image in images])
    np.testing.assert_allclose(batch, single, atol=1e-5)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_low_precision_agrees_with_fp32(embedder, tiny_model: Path, images, precision: str):
    other = ClipEmbedder(tiny_model, precision=precision)
    assert other.precision == precision
    cosine = (embedder.encode_images(images) * other.encode_images(images)).sum(axis=1)
    assert cosine.min() >= 0.999, cosine
    texts = ["a striped shirt", "blue jeans"]
    text_cosine = (embedder.encode_texts(texts) * other.encode_texts(texts)).sum(axis=1)
    assert text_cosine.min() >= 0.999, text_cosine


def test_bf16_weights_are_open_clips_conversion_cast_while_loading(tiny_model: Path):
    """Casting each tensor as it is read (one copy in memory, not fp32 and bf16 side by side) gives
    exactly open_clip's `convert_weights_to_lp` of the fp32 model: same names, dtypes and values."""
    reference = build_model(tiny_model, "fp32")
    convert_weights_to_lp(reference, dtype=torch.bfloat16)
    expected = reference.state_dict()
    loaded = build_model(tiny_model, "bf16").state_dict()
    assert {n: t.dtype for n, t in loaded.items()} == {n: t.dtype for n, t in expected.items()}
    assert {t.dtype for t in loaded.values()} == {torch.bfloat16, torch.float32}
    for name, tensor in loaded.items():
        assert torch.equal(tensor, expected[name]), name


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "CMYK", "I;16", "L", "1"])
def test_every_image_mode_encodes(embedder: ClipEmbedder, mode: str):
    if mode == "I;16":
        image = Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype("<u2"))
    else:
        image = Image.new("RGB", (64, 64), (200, 30, 40)).convert(mode)
    vector = embedder.encode_images([to_rgb(image)])
    assert vector.shape == (1, 64)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_empty_text_is_refused(embedder: ClipEmbedder):
    with pytest.raises(InvalidInput, match="non-empty strings"):
        embedder.encode_texts(["  "])


def test_info_reports_the_manifest(embedder: ClipEmbedder):
    info = embedder.info()
    assert info["model"] == "tiny-clip"
    assert info["dim"] == 64
    assert info["untrained"] is True
    assert info["precision"] == "fp32"
    assert info["model_id"] == f"tiny-clip@{info['weights_sha256'][:12]}"


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8")
    assert resolve_precision("auto") in ("bf16", "fp32")


def test_a_timm_tower_is_refused(tiny_model: Path, tmp_path: Path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    config_file = model_dir / "open_clip_config.json"
    config = json.loads(config_file.read_text())
    config["model_cfg"]["vision_cfg"]["timm_model_name"] = "vit_base_patch32_224"
    config_file.write_text(json.dumps(config))
    with pytest.raises(ValueError) as refused:
        build_model(model_dir)
    assert str(refused.value) == f"{model_dir}: timm image towers are not supported, only open_clip's own"


def test_a_process_that_embeds_never_loads_timm(tiny_model: Path):
    """open_clip imports timm whenever it is installed; the embedding core keeps it out (25 MiB of
    RSS in the model server), and open_clip's own towers still encode."""
    script = (
        "import sys, numpy as np\n"
        "from PIL import Image\n"
        "from fashion_clip.embedding import ClipEmbedder\n"
        f"e = ClipEmbedder({str(tiny_model)!r}, precision='fp32')\n"
        "v = np.concatenate([e.encode_images([Image.new('RGB', (64, 48), 'red')]), e.encode_texts(['a dress'])])\n"
        "print(repr(sys.modules.get('timm', 'absent')), np.linalg.norm(v, axis=1).round(5).tolist())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["None", "[1.0,", "1.0]"]
