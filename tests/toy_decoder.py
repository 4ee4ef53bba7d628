"""A fifth architecture for tests/test_fifth_model.py: its own model_type, config and model classes (a tiny Aksis
underneath) and its spec, registered with `lmforge.models.register` like the four built-in ones."""

from pathlib import Path

from huggingface_hub.dataclasses import strict

from lmforge.models.aksis import AksisConfig, AksisForCausalLM, AksisModel, AksisTokenizer
from lmforge.models.spec import ModelSpec, decoder_size_summary

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

A toy decoder trained with lmforge. Size: {{ summary }}.

{{ results_section }}
"""


@strict
class ToyDecoderConfig(AksisConfig):
    model_type = "toy_decoder"


class ToyDecoderModel(AksisModel):
    config_class = ToyDecoderConfig


class ToyDecoderForCausalLM(AksisForCausalLM):
    config_class = ToyDecoderConfig

    def __init__(self, config: ToyDecoderConfig) -> None:
        super().__init__(config)
        self.model = ToyDecoderModel(config)
        self.post_init()


def toy_spec(card_template: Path) -> ModelSpec:
    card_template.write_text(CARD_TEMPLATE, encoding="utf-8")
    return ModelSpec(
        model_type="toy_decoder",
        config_class=ToyDecoderConfig,
        model_class=ToyDecoderModel,
        head_class=ToyDecoderForCausalLM,
        processor_class=AksisTokenizer,
        tokenizer_class=AksisTokenizer,
        train_tokenizer=lambda texts, vocab_size: AksisTokenizer.train_from_texts(texts, vocab_size=vocab_size),
        task="causal_lm",
        prompt_style="continue",
        peft_task_type="CAUSAL_LM",
        lora_target_modules=["qkv_proj", "o_proj"],
        pipeline_tag="text-generation",
        description="A toy decoder: it continues the text you give it.",
        example_prompts=("Once upon a time",),
        size_summary=decoder_size_summary,
        card_template=str(card_template),
    )
