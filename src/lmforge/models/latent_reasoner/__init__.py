from .configuration_latent_reasoner import LatentReasonerConfig
from .modeling_latent_reasoner import (
    LatentReasonerForConditionalGeneration,
    LatentReasonerModel,
    LatentReasonerPreTrainedModel,
    LatentReasonerSeq2SeqLMOutput,
    LatentReasonerSeq2SeqModelOutput,
)
from .tokenization_latent_reasoner import ENCODER_TOKENIZER_SUBFOLDER, load_tokenizers, save_tokenizers

__all__ = [
    "ENCODER_TOKENIZER_SUBFOLDER",
    "LatentReasonerConfig",
    "LatentReasonerForConditionalGeneration",
    "LatentReasonerModel",
    "LatentReasonerPreTrainedModel",
    "LatentReasonerSeq2SeqLMOutput",
    "LatentReasonerSeq2SeqModelOutput",
    "load_tokenizers",
    "save_tokenizers",
]
