#!/usr/bin/env python
"""Install a CLIP model directory and package it as `model-store/clip.mar` for TorchServe.

    python model-server/model_installer.py             # ViT-B/32 pretrained `openai` (downloads)
    python model-server/model_installer.py --weights ckpt.safetensors   # a local checkpoint
    python model-server/model_installer.py --untrained # real ViT-B/32 architecture, seeded weights
    python model-server/model_installer.py --tiny      # a few-MB CLIP for tests and offline demos

The model directory follows open_clip's `local-dir:` layout (config + safetensors, never a pickle)
plus `manifest.json`, which records where the weights came from and whether they are untrained.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL_DIR = HERE / "model"
DEFAULT_MODEL_STORE = HERE / "model-store"
HANDLER = HERE / "handler.py"
MAR_NAME = "clip"

ARCH = "ViT-B-32"
PRETRAINED_TAG = "openai"

# A real CLIP (same code paths, same tokenizer and transform as ViT-B/32), small enough for tests.
# The text vocabulary must stay 49408: the tokenizer emits ids up to that.
TINY_MODEL_CFG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 32, "patch_size": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}

logger = logging.getLogger("model_installer")


class InstallError(Exception):
    """A failure we can explain in one sentence, without a traceback."""


def _openai_preprocess_cfg() -> dict:
    from dataclasses import asdict

    from open_clip.transform import PreprocessCfg

    return asdict(PreprocessCfg())


def _state_dict_for_save(model) -> dict:
    return {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}


def build_tiny(seed: int):
    import open_clip
    import torch

    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_MODEL_CFG)
    return "tiny-clip", f"seed:{seed}", dict(TINY_MODEL_CFG), True, model


def build_untrained(seed: int):
    import open_clip
    import torch

    torch.manual_seed(seed)
    model_cfg = dict(open_clip.get_model_config(ARCH))
    model_cfg["quick_gelu"] = True  # as the pretrained `openai` weights use
    model = open_clip.CLIP(**model_cfg)
    return ARCH, f"seed:{seed}", model_cfg, True, model


def build_pretrained(weights: str | None):
    """Download (or import) real ViT-B/32 weights through open_clip."""
    import open_clip

    model_cfg = dict(open_clip.get_model_config(ARCH))
    model_cfg["quick_gelu"] = True
    source = weights or PRETRAINED_TAG
    try:
        if weights and weights.endswith(".safetensors"):
            from safetensors.torch import load_file

            model = open_clip.CLIP(**model_cfg)
            model.load_state_dict(load_file(weights), strict=True)
        elif weights:
            # open_clip reads open_clip and OpenAI checkpoints with torch.load(weights_only=True),
            # and OpenAI's TorchScript archives through its own loader: no pickled code runs.
            try:
                model = open_clip.create_model(ARCH, pretrained=weights, force_quick_gelu=True)
            except RuntimeError:
                from open_clip.openai import load_openai_model

                model = load_openai_model(weights, device="cpu", jit=False)
        else:
            # open_clip fetches through huggingface_hub, which draws the progress bar.
            model = open_clip.create_model(ARCH, pretrained=PRETRAINED_TAG, force_quick_gelu=True)
    except (OSError, RuntimeError, ValueError) as exc:
        if weights:
            raise InstallError(f"Could not read the checkpoint {weights}: {exc}") from exc
        raise InstallError(
            "Could not download the pretrained ViT-B/32 weights (no network?): rerun with "
            "--weights PATH for a local checkpoint, --untrained for the real architecture with "
            "random weights, or --tiny for a small test model."
        ) from exc
    return ARCH, source, model_cfg, False, model


def write_model_dir(model_dir: Path, name: str, source: str, model_cfg: dict, untrained: bool, model) -> Path:
    """Write config, safetensors and manifest into a temporary folder, then move it into place."""
    import open_clip
    from safetensors.torch import save_file

    from fashion_clip.modeldir import (
        CONFIG_FILE,
        MANIFEST_FILE,
        WEIGHTS_FILE,
        ModelManifest,
        sha256_file,
    )

    model_dir = Path(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=model_dir.parent))
    try:
        config = {"model_cfg": model_cfg, "preprocess_cfg": _openai_preprocess_cfg()}
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        save_file(_state_dict_for_save(model), str(staging / WEIGHTS_FILE))
        manifest = ModelManifest(
            model_name=name,
            weights_source=source,
            embed_dim=int(model_cfg["embed_dim"]),
            weights_sha256=sha256_file(staging / WEIGHTS_FILE),
            untrained=untrained,
            open_clip_version=open_clip.__version__,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        (staging / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
        # mkdtemp makes a private folder; the model is read by a non-root server user.
        staging.chmod(0o755)
        for path in staging.iterdir():
            path.chmod(0o644)
        if model_dir.exists():
            shutil.rmtree(model_dir)
        staging.rename(model_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model_dir


def archive(model_dir: Path, model_store: Path, handler: Path = HANDLER) -> Path:
    """Package the model directory as `<model_store>/clip.mar` with torch-model-archiver."""
    from fashion_clip.modeldir import CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE

    model_store = Path(model_store)
    model_store.mkdir(parents=True, exist_ok=True)
    # The archiver installed beside this interpreter first: a `torch-model-archiver` elsewhere on
    # PATH may belong to another environment.
    beside = Path(sys.executable).parent / "torch-model-archiver"
    archiver = str(beside) if beside.is_file() else shutil.which("torch-model-archiver") or str(beside)
    # The archiver stages files in $TMPDIR/<model name> and deletes that folder afterwards, and it
    # leaves a partial .mar behind when it fails. Give it a private folder for both, and move the
    # finished archive into place, so parallel runs (test sessions, CI jobs) cannot trample each
    # other and the store never holds a broken clip.mar.
    staging = Path(tempfile.mkdtemp(prefix=".archive-", dir=model_store))
    (staging / "tmp").mkdir()
    command = [
        archiver,
        "--model-name", MAR_NAME,
        "--version", "1.0",
        "--handler", str(handler),
        "--serialized-file", str(model_dir / WEIGHTS_FILE),
        "--extra-files", f"{model_dir / CONFIG_FILE},{model_dir / MANIFEST_FILE}",
        "--export-path", str(staging),
        "--force",
    ]  # fmt: skip
    try:
        subprocess.run(
            command,
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "TMPDIR": str(staging / "tmp")},
        )
        os.replace(staging / f"{MAR_NAME}.mar", model_store / f"{MAR_NAME}.mar")
    except FileNotFoundError as exc:
        raise InstallError("torch-model-archiver is not installed: pip install '.[model-server]'") from exc
    except subprocess.CalledProcessError as exc:
        raise InstallError(f"torch-model-archiver failed: {exc.stderr.strip()}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return model_store / f"{MAR_NAME}.mar"


def install(
    kind: str = "pretrained",
    model_dir: Path = DEFAULT_MODEL_DIR,
    model_store: Path | None = DEFAULT_MODEL_STORE,
    weights: str | None = None,
    seed: int = 0,
) -> Path:
    """Install a model of `kind` (pretrained | untrained | tiny) and archive it unless no store."""
    if kind == "tiny":
        built = build_tiny(seed)
    elif kind == "untrained":
        built = build_untrained(seed)
    else:
        built = build_pretrained(weights)
    model_dir = write_model_dir(Path(model_dir), *built)
    if model_store is not None:
        archive(model_dir, Path(model_store))
    return model_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--weights", metavar="PATH", help="import a local checkpoint")
    kind.add_argument("--untrained", action="store_true", help="ViT-B/32 with seeded random weights")
    kind.add_argument("--tiny", action="store_true", help="a small seeded CLIP for tests and demos")
    parser.add_argument("--seed", type=int, default=0, help="seed for --untrained and --tiny")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--model-store", type=Path, default=DEFAULT_MODEL_STORE)
    parser.add_argument("--no-archive", action="store_true", help="write the model directory only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Progress (ours and open_clip's, which logs through the root logger) goes to stdout, so that
    # on failure stderr holds exactly the one sentence saying what to do.
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.captureWarnings(True)
    kind = "tiny" if args.tiny else "untrained" if args.untrained else "pretrained"
    try:
        model_dir = install(
            kind,
            model_dir=args.model_dir,
            model_store=None if args.no_archive else args.model_store,
            weights=args.weights,
            seed=args.seed,
        )
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from fashion_clip.modeldir import read_manifest

    manifest = read_manifest(model_dir)
    logger.info("installed %s (%s) in %s", manifest.model_id, manifest.weights_source, model_dir)
    if manifest.untrained:
        logger.warning("WARNING: these weights are UNTRAINED; similarity results are not meaningful.")
    if not args.no_archive:
        logger.info("archived %s", args.model_store / f"{MAR_NAME}.mar")
    return 0


if __name__ == "__main__":
    sys.exit(main())
