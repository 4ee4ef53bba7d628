"""lmforge: Aksis, CharTransformer, AE-LLM and LatentReasoner as Hugging Face models.

Importing lmforge registers every architecture with the transformers Auto classes, and each architecture's default
LoRA target modules with PEFT (see `lmforge.adapters`).
"""

from . import adapters, models
from .errors import LmforgeError

__version__ = "0.1.0"

adapters.register_lora_target_modules()

__all__ = ["LmforgeError", "__version__", "adapters", "models"]
