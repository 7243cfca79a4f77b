"""The installer: a pickle-free .mar, the offline failure, untrained and imported weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import model_installer
import pytest
from safetensors import safe_open

from fashion_clip.modeldir import CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE, read_manifest, sha256_file

# Pickle protocols 2-5 open with PROTO (0x80) and the protocol number.
PICKLE_HEADERS = tuple(bytes([0x80, protocol]) for protocol in range(2, 6))
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")


def test_tiny_mar_holds_safetensors_config_manifest_and_handler(tiny_mar: Path, tiny_model: Path):
    # The archiver's staging folder is gone; the store holds the archive only.
    assert [path.name for path in tiny_mar.parent.iterdir()] == ["clip.mar"]
    with zipfile.ZipFile(tiny_mar) as archive:
        names = set(archive.namelist())
        assert names == {
            WEIGHTS_FILE,
            CONFIG_FILE,
            MANIFEST_FILE,
            "handler.py",
            "MAR-INF/MANIFEST.json",
        }
        for name in names:
            assert not name.endswith(PICKLE_SUFFIXES), name
            with archive.open(name) as member:
                assert not member.read(2).startswith(PICKLE_HEADERS), name
        mar_manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
        assert mar_manifest["model"]["modelName"] == "clip"
        assert mar_manifest["model"]["handler"] == "handler.py"
        assert mar_manifest["model"]["serializedFile"] == WEIGHTS_FILE
        # The archive carries exactly the installed files.
        for name in (WEIGHTS_FILE, CONFIG_FILE, MANIFEST_FILE):
            assert archive.read(name) == (tiny_model / name).read_bytes(), name
        handler_source = (Path(model_installer.__file__).parent / "handler.py").read_bytes()
        assert archive.read("handler.py") == handler_source


def test_tiny_manifest_describes_the_weights(tiny_model: Path):
    manifest = read_manifest(tiny_model)
    assert (manifest.model_name, manifest.embed_dim, manifest.untrained) == ("tiny-clip", 64, True)
    assert manifest.weights_source == "seed:0"
    assert manifest.weights_sha256 == sha256_file(tiny_model / WEIGHTS_FILE)


def test_offline_without_a_choice_fails_in_one_sentence(tmp_path: Path):
    """No network, no flags: exit 2 and one sentence that names the three ways forward."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),  # an empty cache, whatever this machine has downloaded
    }
    result = subprocess.run(
        [
            sys.executable,
            model_installer.__file__,
            "--model-dir",
            str(tmp_path / "model"),
            "--model-store",
            str(tmp_path / "store"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    stderr = result.stderr.strip()
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("error: ") and stderr.endswith(".")
    assert stderr.count(". ") == 0, "more than one sentence"
    for flag in ("--weights", "--untrained", "--tiny"):
        assert flag in stderr
    assert not (tmp_path / "model").exists()
    assert not (tmp_path / "store").exists()


@pytest.mark.slow
def test_untrained_then_imported_weights_round_trip(tmp_path: Path):
    """--untrained writes real ViT-B/32 (~600 MB) marked untrained; --weights re-imports that file
    bit for bit. Both without an archive, in tmp, removed afterwards."""
    try:
        untrained = model_installer.install("untrained", model_dir=tmp_path / "untrained", model_store=None)
        manifest = read_manifest(untrained)
        assert (manifest.model_name, manifest.untrained, manifest.embed_dim) == ("ViT-B-32", True, 512)
        assert manifest.weights_source == "seed:0"
        config = json.loads((untrained / CONFIG_FILE).read_text())
        assert config["model_cfg"]["quick_gelu"] is True
        with safe_open(str(untrained / WEIGHTS_FILE), "pt") as weights:
            assert weights.get_slice("visual.conv1.weight").get_shape() == [768, 3, 32, 32]

        weights_path = untrained / WEIGHTS_FILE
        imported = model_installer.install(
            "pretrained", model_dir=tmp_path / "imported", model_store=None, weights=str(weights_path)
        )
        imported_manifest = read_manifest(imported)
        assert imported_manifest.weights_source == str(weights_path)
        assert imported_manifest.untrained is False
        assert imported_manifest.weights_sha256 == manifest.weights_sha256
        assert sorted(p.name for p in imported.iterdir()) == sorted(
            [CONFIG_FILE, MANIFEST_FILE, WEIGHTS_FILE]
        )
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_missing_checkpoint_fails_in_one_sentence(tmp_path: Path):
    result = subprocess.run(
        [
            sys.executable,
            model_installer.__file__,
            "--weights",
            str(tmp_path / "nope.safetensors"),
            "--model-dir",
            str(tmp_path / "model"),
            "--no-archive",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: Could not read the checkpoint {tmp_path / 'nope.safetensors'}: ")
