"""`ModelSpec`: everything lmforge knows about one architecture, in one place, next to its model folder.

Each model package (`lmforge/models/<name>/__init__.py`) defines its `SPEC`; `lmforge.models` registers every spec
with the transformers Auto classes and answers `get_spec(model_type)`. The rest of lmforge (training, LoRA defaults,
loading, generation, chat, the server, the demo, model cards) reads what it needs from the spec and never branches
on a model type. Adding an architecture is its folder (config, model, tokenizer, `SPEC`) plus one line in
`lmforge/models/__init__.py`.

The spec lives in the package `__init__`, not in the model files, because a saved model folder carries only the
configuration, modeling and tokenization files (they import nothing but torch and transformers), and those must load
with `trust_remote_code=True` where lmforge is absent.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

# What the model does with a text it is given: a decoder continues it; a sequence-to-sequence model answers it (the
# text is its input, the output is new text).
PromptStyle = Literal["continue", "answer"]


def context_limits(config: Any) -> tuple[int | None, int | None]:
    """(prompt tokens, new tokens) of a model whose config's `max_position_embeddings` bounds both (None if absent)."""
    context = getattr(config, "max_position_embeddings", None)
    return (int(context), int(context)) if context else (None, None)


@dataclass(frozen=True)
class ModelSpec:
    """One architecture, for every part of lmforge that is not the model code itself.

    Args:
        model_type: The config's `model_type`.
        config_class / model_class / head_class: The config, the base model (`AutoModel`) and the model with its
            language-modelling head (`AutoModelForCausalLM` or `AutoModelForSeq2SeqLM`), the one lmforge trains,
            loads and generates with.
        processor_class: What reads and writes the text of a saved folder (`from_pretrained` / `save_pretrained`): a
            tokenizer, or a processor holding several (LatentReasoner reads with its encoder's tokenizer and writes
            with its decoder's).
        tokenizer_class: The tokenizer class registered with `AutoTokenizer` for the config (None when the
            architecture has no tokenizer of its own).
        train_tokenizer: Builds a new tokenizer for a fresh model from training texts and a `vocab_size` (every
            token, the special ones included, as `config.vocab_size` counts them); None when the tokenizer always
            comes with the backbones.
        task: The training task (`lmforge.training.tasks`): "causal_lm", "question_answering" or "summarization".
        prompt_style: "continue" (a decoder goes on from the prompt) or "answer" (an encoder-decoder reads the prompt
            and writes new text).
        peft_task_type / lora_target_modules: PEFT's `TaskType` name and the default LoRA `target_modules` (module
            name suffixes, or one regular expression).
        pipeline_tag: The Hub's pipeline tag of the model card.
        pipeline_class: A custom pipeline class saved with the folder (`custom_pipelines` in `config.json`) when
            transformers has none for the task.
        description: One sentence for the model card and the demo page.
        prompt_label: What the demo calls the input box.
        example_prompts: Inputs of the kind the model was trained on (card widget, demo examples).
        default_data: What a recipe without data trains on ("embedded" corpus, "squad"...), for the card.
        size_summary: The card's one-line sizes, from the `config.json` dict.
        modes: What the command line, server and demo offer besides plain generation: "chat" (a chat template or the
            last user message), "interpolate" (decode from a mix of two texts' latent vectors: the head has
            `get_latent_vector(input_ids, attention_mask=...)` and `generate(idea_vectors=...)`).
        generation_limits: From a config, the most prompt tokens the model reads and the most new tokens one
            generation writes (`lmforge.inference` fits prompts and `max_new_tokens` to them); None where the model
            sets no limit (the tokenizer's `model_max_length` then bounds the prompt). A decoder shares one context
            between the two; the default reads both from `max_position_embeddings`.
        card_template: The model card template (a file path); by default `model_cards/<model_type>.md` of lmforge
            (installed as `lmforge.model_cards`).
    """

    model_type: str
    config_class: type[Any]
    model_class: type[Any]
    head_class: type[Any]
    processor_class: Any
    tokenizer_class: type[Any] | None
    task: str
    prompt_style: PromptStyle
    peft_task_type: str
    lora_target_modules: list[str] | str
    pipeline_tag: str
    description: str
    example_prompts: tuple[str, ...]
    size_summary: Callable[[dict[str, Any]], list[str]]
    train_tokenizer: Callable[[Iterable[str], int], Any] | None = None
    pipeline_class: type | None = None
    prompt_label: str = "Prompt"
    default_data: str | None = None
    modes: tuple[str, ...] = field(default=("chat",))
    generation_limits: Callable[[Any], tuple[int | None, int | None]] = context_limits
    card_template: str | None = None

    @property
    def is_encoder_decoder(self) -> bool:
        return self.prompt_style == "answer"

    @property
    def auto_class_name(self) -> str:
        """The Auto class of the head: `AutoModelForCausalLM` or `AutoModelForSeq2SeqLM`."""
        return "AutoModelForSeq2SeqLM" if self.is_encoder_decoder else "AutoModelForCausalLM"


def decoder_size_summary(config: dict[str, Any]) -> list[str]:
    """Sizes of a decoder-only transformer (Aksis, CharTransformer), from its `config.json`."""
    return [
        f"{config.get('num_hidden_layers')} layers",
        f"width {config.get('hidden_size')}",
        f"{config.get('num_attention_heads')} attention heads",
        f"context {config.get('max_position_embeddings')} tokens",
        f"vocabulary {config.get('vocab_size')}",
    ]


__all__ = ["ModelSpec", "PromptStyle", "context_limits", "decoder_size_summary"]
