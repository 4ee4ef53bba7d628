from .configuration_char_transformer import CharTransformerConfig
from .modeling_char_transformer import (
    CharTransformerForCausalLM,
    CharTransformerModel,
    CharTransformerPreTrainedModel,
)
from .tokenization_char_transformer import CharTokenizer

__all__ = [
    "CharTokenizer",
    "CharTransformerConfig",
    "CharTransformerForCausalLM",
    "CharTransformerModel",
    "CharTransformerPreTrainedModel",
]
