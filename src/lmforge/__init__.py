"""lmforge: Aksis, CharTransformer, AE-LLM and LatentReasoner as Hugging Face models.

Importing lmforge registers every architecture with the transformers Auto classes, and each architecture's default
LoRA target modules with PEFT (see `lmforge.adapters`). The model classes are exported at the top level, as
transformers exports its own: `from lmforge import AksisConfig, AksisForCausalLM`.
"""

from . import adapters, models
from .errors import LmforgeError
from .models.ae_llm import (
    AELLMConfig,
    AELLMForConditionalGeneration,
    AELLMModel,
    AELLMPreTrainedModel,
    AELLMTokenizer,
)
from .models.aksis import AksisConfig, AksisForCausalLM, AksisModel, AksisPreTrainedModel, AksisTokenizer
from .models.char_transformer import (
    CharTokenizer,
    CharTransformerConfig,
    CharTransformerForCausalLM,
    CharTransformerModel,
    CharTransformerPreTrainedModel,
)
from .models.latent_reasoner import (
    LatentReasonerConfig,
    LatentReasonerForConditionalGeneration,
    LatentReasonerModel,
    LatentReasonerPreTrainedModel,
)

__version__ = "0.1.0"

adapters.register_lora_target_modules()

__all__ = [
    "AELLMConfig",
    "AELLMForConditionalGeneration",
    "AELLMModel",
    "AELLMPreTrainedModel",
    "AELLMTokenizer",
    "AksisConfig",
    "AksisForCausalLM",
    "AksisModel",
    "AksisPreTrainedModel",
    "AksisTokenizer",
    "CharTokenizer",
    "CharTransformerConfig",
    "CharTransformerForCausalLM",
    "CharTransformerModel",
    "CharTransformerPreTrainedModel",
    "LatentReasonerConfig",
    "LatentReasonerForConditionalGeneration",
    "LatentReasonerModel",
    "LatentReasonerPreTrainedModel",
    "LmforgeError",
    "__version__",
    "adapters",
    "models",
]
