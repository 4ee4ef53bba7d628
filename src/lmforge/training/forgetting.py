"""Deprecated: the forgetting study moved to `lmforge.studies.forgetting` (lmforge 0.1); this alias goes in the next
release."""

import importlib
import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    warnings.warn(
        f"lmforge.training.forgetting is deprecated and will be removed in the next release: use "
        f"lmforge.studies.forgetting.{name}",
        FutureWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module("lmforge.studies.forgetting"), name)
