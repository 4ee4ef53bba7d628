from .configuration_ae_llm import AELLMConfig
from .modeling_ae_llm import (
    AELLMForConditionalGeneration,
    AELLMModel,
    AELLMPreTrainedModel,
    AELLMRecurrentCache,
    AELLMSeq2SeqLMOutput,
    AELLMSeq2SeqModelOutput,
)
from .tokenization_ae_llm import AELLMTokenizer

__all__ = [
    "AELLMConfig",
    "AELLMForConditionalGeneration",
    "AELLMModel",
    "AELLMPreTrainedModel",
    "AELLMRecurrentCache",
    "AELLMSeq2SeqLMOutput",
    "AELLMSeq2SeqModelOutput",
    "AELLMTokenizer",
]
