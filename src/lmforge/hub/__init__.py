"""Sharing trained models on the Hugging Face Hub: model cards (cards.py), what a folder needs to load with
trust_remote_code and its pipeline (remote_code.py), and `lmforge push` (push.py). Getting pretrained backbones
without the Hub (pip packages, GGUF files) is `lmforge.backbones`."""

import importlib
import warnings
from typing import Any

from .remote_code import add_remote_code

# lmforge 0.1 exported the backbone helpers here; they moved to lmforge.backbones (kept for one release).
_MOVED = (
    "OFFLINE_BACKBONES",
    "PACKAGE_PREFIX",
    "OfflineBackbone",
    "load_causal_lm_from_gguf",
    "offline_backbone_path",
    "resolve_backbone",
)


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        warnings.warn(
            f"lmforge.hub.{name} is deprecated and will be removed in the next release: use lmforge.backbones.{name}",
            FutureWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module("lmforge.backbones"), name)
    raise AttributeError(f"module 'lmforge.hub' has no attribute {name!r}")


__all__ = ["add_remote_code"]
