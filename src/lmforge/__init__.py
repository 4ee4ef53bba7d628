"""lmforge: Aksis, CharTransformer, AE-LLM and LatentReasoner as Hugging Face models.

Importing lmforge registers every architecture with the transformers Auto classes.
"""

from . import models
from .errors import LmforgeError

__version__ = "0.1.0"

__all__ = ["LmforgeError", "__version__", "models"]
