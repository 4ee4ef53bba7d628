"""The Hugging Face Hub both ways. Getting pretrained models: backbones shipped as pip packages (for machines without
the Hub), GGUF decoders. Sharing trained ones: model cards (cards.py), what a folder needs for trust_remote_code and
its pipeline (remote_code.py), and `lmforge push` (push.py)."""

from .offline_backbones import (
    OFFLINE_BACKBONES,
    PACKAGE_PREFIX,
    OfflineBackbone,
    load_causal_lm_from_gguf,
    offline_backbone_path,
    resolve_backbone,
)
from .remote_code import add_remote_code

__all__ = [
    "OFFLINE_BACKBONES",
    "PACKAGE_PREFIX",
    "OfflineBackbone",
    "add_remote_code",
    "load_causal_lm_from_gguf",
    "offline_backbone_path",
    "resolve_backbone",
]
