"""Deprecated: `lmforge.hub.offline_backbones` is now `lmforge.backbones` (lmforge 0.1); this alias goes in the next
release."""

import warnings

from ..backbones import (
    OFFLINE_BACKBONES,
    PACKAGE_PREFIX,
    OfflineBackbone,
    load_causal_lm_from_gguf,
    offline_backbone_path,
    resolve_backbone,
)

warnings.warn(
    "lmforge.hub.offline_backbones is deprecated and will be removed in the next release: use lmforge.backbones",
    FutureWarning,
    stacklevel=2,
)

__all__ = [
    "OFFLINE_BACKBONES",
    "PACKAGE_PREFIX",
    "OfflineBackbone",
    "load_causal_lm_from_gguf",
    "offline_backbone_path",
    "resolve_backbone",
]
