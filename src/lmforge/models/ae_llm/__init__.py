from typing import Any

from ..spec import ModelSpec
from .configuration_ae_llm import AELLMConfig
from .modeling_ae_llm import (
    AELLMForConditionalGeneration,
    AELLMModel,
    AELLMPreTrainedModel,
    AELLMRecurrentCache,
    AELLMSeq2SeqLMOutput,
    AELLMSeq2SeqModelOutput,
)
from .pipeline_ae_llm import AELLMText2TextGenerationPipeline
from .tokenization_ae_llm import AELLMTokenizer


def size_summary(config: dict[str, Any]) -> list[str]:
    return [
        f"embeddings {config.get('embedding_size')}",
        f"GRU width {config.get('hidden_size')}",
        f"latent {config.get('latent_size')}",
        f"{config.get('num_experts')} experts (top {config.get('num_experts_per_tok')})",
        f"{config.get('memory_slots')} memory slots",
        f"vocabulary {config.get('vocab_size')}",
    ]


SPEC = ModelSpec(
    model_type="ae_llm",
    config_class=AELLMConfig,
    model_class=AELLMModel,
    head_class=AELLMForConditionalGeneration,
    processor_class=AELLMTokenizer,
    tokenizer_class=AELLMTokenizer,
    train_tokenizer=lambda texts, vocab_size: AELLMTokenizer.train_from_texts(texts, vocab_size=vocab_size),
    task="question_answering",
    prompt_style="answer",
    peft_task_type="SEQ_2_SEQ_LM",
    # Of the head's `model` (or of a bare AELLMModel), as LoRA has no GRU layer: the token embedding (the encoder's
    # and the decoder's inputs; without it LoRA learns few new answers: on an unseen SQuAD article, r16 reached 24-46
    # EM of the pairs it was taught, 96 with it), the latent path (the encoder's projection to the
    # latent, the decoder's initial state, the Thinking Net's memory, expert and gated-block MLPs) and, when the config
    # has them, the encoder self-attention and the decoder's attention and copy gate; not the GRUs, the MoE router,
    # the hyper-adapter or lm_head (adding lm_head did not help). PEFT saves the embedding's weights with each adapter.
    lora_target_modules=(
        r"(model\.)?(encoder\.(embed_tokens|to_latent|self_attention\.(qkv|out_proj))"
        r"|decoder\.(latent_to_state|attention\.(query|follow|combine|copy_gate))|transition\.memory\.(query|out_proj)"
        r"|transition\.(moe\.experts\.\d+|blocks\.\d+\.mlp)\.(gate_proj|up_proj|down_proj))"
    ),
    pipeline_tag="text2text-generation",
    pipeline_class=AELLMText2TextGenerationPipeline,
    description="AE-LLM, a GRU autoencoder with a Thinking Net: it answers a short question.",
    prompt_label="Question",
    example_prompts=("What is the capital of France?",),
    default_data="squad",
    size_summary=size_summary,
)

__all__ = [
    "SPEC",
    "AELLMConfig",
    "AELLMForConditionalGeneration",
    "AELLMModel",
    "AELLMPreTrainedModel",
    "AELLMRecurrentCache",
    "AELLMSeq2SeqLMOutput",
    "AELLMSeq2SeqModelOutput",
    "AELLMTokenizer",
]
