from .configuration_latent_reasoner import LatentReasonerConfig
from .modeling_latent_reasoner import (
    LatentReasonerForConditionalGeneration,
    LatentReasonerPreTrainedModel,
    LatentReasonerSeq2SeqLMOutput,
)
from .tokenization_latent_reasoner import ENCODER_TOKENIZER_SUBFOLDER, load_tokenizers, save_tokenizers

__all__ = [
    "ENCODER_TOKENIZER_SUBFOLDER",
    "LatentReasonerConfig",
    "LatentReasonerForConditionalGeneration",
    "LatentReasonerPreTrainedModel",
    "LatentReasonerSeq2SeqLMOutput",
    "load_tokenizers",
    "save_tokenizers",
]
