"""open_clip without timm: the embedding core imports open_clip from here.

open_clip imports timm whenever it is installed (open_clip_torch requires it), to build image towers
from timm models. This project's towers are open_clip's own (model_installer.py installs ViT-B/32 or
the tiny config, and `build_model` refuses a timm tower), so timm stays out of every process that
embeds: 25 MiB less RSS in the model server's worker (docs/model-server.md). A process that imported
timm before this module keeps it.
"""

import sys

sys.modules.setdefault("timm", None)  # `import timm` now raises ImportError, which open_clip expects

import open_clip  # noqa: E402
from open_clip.model import convert_weights_to_lp  # noqa: E402
from open_clip.transform import PreprocessCfg, image_transform_v2  # noqa: E402

__all__ = ["PreprocessCfg", "convert_weights_to_lp", "image_transform_v2", "open_clip"]
