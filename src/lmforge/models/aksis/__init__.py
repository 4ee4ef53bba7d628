from ..spec import ModelSpec, decoder_size_summary
from .configuration_aksis import AksisConfig
from .modeling_aksis import AksisForCausalLM, AksisModel, AksisPreTrainedModel
from .tokenization_aksis import AksisTokenizer

SPEC = ModelSpec(
    model_type="aksis",
    config_class=AksisConfig,
    model_class=AksisModel,
    head_class=AksisForCausalLM,
    processor_class=AksisTokenizer,
    tokenizer_class=AksisTokenizer,
    train_tokenizer=lambda texts, vocab_size: AksisTokenizer.train_from_texts(texts, vocab_size=vocab_size),
    task="causal_lm",
    prompt_style="continue",
    peft_task_type="CAUSAL_LM",
    lora_target_modules=["qkv_proj", "o_proj", "up_proj", "down_proj"],
    pipeline_tag="text-generation",
    description="Aksis, a GPT-style decoder: it continues the text you give it.",
    example_prompts=("ROMEO:",),
    default_data="embedded",
    size_summary=decoder_size_summary,
)

__all__ = ["SPEC", "AksisConfig", "AksisForCausalLM", "AksisModel", "AksisPreTrainedModel", "AksisTokenizer"]
