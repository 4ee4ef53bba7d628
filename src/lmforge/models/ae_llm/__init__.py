from .configuration_ae_llm import AELLMConfig
from .modeling_ae_llm import (
    AELLMForConditionalGeneration,
    AELLMPreTrainedModel,
    AELLMRecurrentCache,
    AELLMSeq2SeqLMOutput,
)
from .tokenization_ae_llm import AELLMTokenizer

__all__ = [
    "AELLMConfig",
    "AELLMForConditionalGeneration",
    "AELLMPreTrainedModel",
    "AELLMRecurrentCache",
    "AELLMSeq2SeqLMOutput",
    "AELLMTokenizer",
]
