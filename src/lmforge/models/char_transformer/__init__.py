from ..spec import ModelSpec, decoder_size_summary
from .configuration_char_transformer import CharTransformerConfig
from .modeling_char_transformer import (
    CharTransformerForCausalLM,
    CharTransformerModel,
    CharTransformerPreTrainedModel,
)
from .tokenization_char_transformer import CharTokenizer, CharTransformerTokenizer

SPEC = ModelSpec(
    model_type="char_transformer",
    config_class=CharTransformerConfig,
    model_class=CharTransformerModel,
    head_class=CharTransformerForCausalLM,
    processor_class=CharTransformerTokenizer,
    tokenizer_class=CharTransformerTokenizer,
    # One token per character of the training text: the vocabulary size follows from the text.
    train_tokenizer=lambda texts, vocab_size: CharTransformerTokenizer.from_text(texts),
    task="causal_lm",
    prompt_style="continue",
    peft_task_type="CAUSAL_LM",
    lora_target_modules=["qkv_proj", "o_proj", "up_proj", "down_proj"],
    pipeline_tag="text-generation",
    description="CharTransformer, a character-level decoder: it continues the text you give it.",
    example_prompts=("ROMEO:",),
    default_data="embedded",
    size_summary=decoder_size_summary,
)

__all__ = [
    "SPEC",
    "CharTokenizer",
    "CharTransformerConfig",
    "CharTransformerForCausalLM",
    "CharTransformerModel",
    "CharTransformerPreTrainedModel",
    "CharTransformerTokenizer",
]
