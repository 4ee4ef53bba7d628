from typing import Any

from ..spec import ModelSpec
from .configuration_latent_reasoner import LatentReasonerConfig
from .modeling_latent_reasoner import (
    LatentReasonerForConditionalGeneration,
    LatentReasonerModel,
    LatentReasonerPreTrainedModel,
    LatentReasonerSeq2SeqLMOutput,
    LatentReasonerSeq2SeqModelOutput,
)
from .pipeline_latent_reasoner import LatentReasonerSummarizationPipeline
from .processing_latent_reasoner import ENCODER_TOKENIZER_SUBFOLDER, LatentReasonerProcessor
from .tokenization_latent_reasoner import load_tokenizers, save_tokenizers

_DECODER_ATTENTION = "c_attn|qkv_proj|q_proj|k_proj|v_proj|o_proj|query_key_value"
DIALOGUE_EXAMPLE = (
    "#Person1#: Hello, I'd like to book a table for two tonight. #Person2#: Certainly. What time would you "
    "like? #Person1#: Around eight, please. #Person2#: Eight o'clock it is."
)


def size_summary(config: dict[str, Any]) -> list[str]:
    encoder, decoder = config.get("encoder") or {}, config.get("decoder") or {}
    return [
        f"encoder {encoder.get('model_type')} (width {encoder.get('hidden_size')})",
        f"decoder {decoder.get('model_type')} (width {decoder.get('hidden_size')})",
        f"idea vector {config.get('idea_size')}",
        f"{config.get('num_prefix_tokens')} prefix tokens",
    ]


def generation_limits(config: Any) -> tuple[int | None, int | None]:
    """The encoder reads what its tokenizer keeps (`model_max_length`, the run's `max_source_length`); the decoder
    writes after the prefix embeddings and the start token, within its own context."""
    decoder_context = getattr(config.decoder, "max_position_embeddings", None)
    return None, (decoder_context - config.num_prefix_tokens - 1 if decoder_context else None)


SPEC = ModelSpec(
    model_type="latent_reasoner",
    config_class=LatentReasonerConfig,
    model_class=LatentReasonerModel,
    head_class=LatentReasonerForConditionalGeneration,
    processor_class=LatentReasonerProcessor,
    tokenizer_class=None,  # it uses its backbones' own tokenizers
    task="summarization",
    prompt_style="answer",
    peft_task_type="SEQ_2_SEQ_LM",
    # In the head's `model` (or a bare LatentReasonerModel): the idea MLPs and the decoder's attention projections;
    # not the encoder or lm_head.
    lora_target_modules=(
        rf"(model\.)?((compression|middle)\.layers\.\d+|prefix_adapter\.proj|decoder\..*\.({_DECODER_ATTENTION}))"
    ),
    pipeline_tag="summarization",
    pipeline_class=LatentReasonerSummarizationPipeline,
    description="LatentReasoner: it reads a text into one idea vector and writes a summary from it.",
    prompt_label="Text to summarize",
    example_prompts=(DIALOGUE_EXAMPLE,),
    size_summary=size_summary,
    modes=("chat", "interpolate"),
    generation_limits=generation_limits,
)

__all__ = [
    "ENCODER_TOKENIZER_SUBFOLDER",
    "SPEC",
    "LatentReasonerConfig",
    "LatentReasonerForConditionalGeneration",
    "LatentReasonerModel",
    "LatentReasonerPreTrainedModel",
    "LatentReasonerProcessor",
    "LatentReasonerSeq2SeqLMOutput",
    "LatentReasonerSeq2SeqModelOutput",
    "load_tokenizers",
    "save_tokenizers",
]
